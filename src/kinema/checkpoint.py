"""Checkpoints: safetensors weights plus a JSON config, written atomically.

A model directory holds `<name>.safetensors` and `<name>.json` per component (vae, dit), so a shipped model
is two small files per network with stable parameter names. Training state (optimiser, EMA, RNG, step)
sits beside it in `train_state.pt`. Every write goes to a temporary file first and is renamed into place,
so a process killed mid-save leaves the previous checkpoint readable.
"""

from __future__ import annotations

import dataclasses
import json
import os
import random
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file


class CheckpointError(RuntimeError):
    """A checkpoint is missing, unreadable or does not match its config."""


def atomic_write(path: Path, write: Any) -> None:
    """Call write(tmp_path) then rename tmp_path to path (same folder, so the rename is atomic)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; outputs get the usual permissions
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def save_component(
    folder: Path,
    name: str,
    module: torch.nn.Module,
    config: Any,
    dtype: torch.dtype | None = None,
    extra: dict | None = None,
) -> None:
    """Write folder/name.safetensors (weights, optionally cast) and folder/name.json (the config)."""
    state = {
        k: (v.to(dtype) if dtype is not None and v.is_floating_point() else v).contiguous()
        for k, v in module.state_dict().items()
    }
    cfg = dataclasses.asdict(config) if dataclasses.is_dataclass(config) else dict(config)
    meta = {"config": cfg, **(extra or {})}
    atomic_write(Path(folder) / f"{name}.safetensors", lambda p: save_file(state, p))
    atomic_write(Path(folder) / f"{name}.json", lambda p: Path(p).write_text(json.dumps(meta, indent=2)))


def read_config(folder: Path, name: str) -> dict:
    path = Path(folder) / f"{name}.json"
    if not path.is_file():
        raise CheckpointError(f"missing checkpoint file {path}")
    try:
        return json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise CheckpointError(f"corrupt checkpoint config {path}: {e}") from None


def load_weights(folder: Path, name: str, module: torch.nn.Module) -> None:
    """Load folder/name.safetensors into module (cast to the module's dtype), strictly."""
    path = Path(folder) / f"{name}.safetensors"
    if not path.is_file():
        raise CheckpointError(f"missing checkpoint file {path}")
    try:
        state = load_file(path)
    except (SafetensorError, OSError, ValueError) as e:
        raise CheckpointError(f"corrupt checkpoint {path}: {e}") from None
    own = module.state_dict()
    state = {k: v.to(own[k].dtype) if k in own else v for k, v in state.items()}
    try:
        module.load_state_dict(state, strict=True)
    except RuntimeError as e:
        first = str(e).strip().splitlines()[0]
        raise CheckpointError(f"checkpoint {path} does not match its config: {first}") from None


def save_model_copy(src: Path, dest: Path, names: tuple[str, ...], dtype: torch.dtype) -> None:
    """Copy model.json and each component's config and weights from src to dest, casting float weights."""
    dest.mkdir(parents=True, exist_ok=True)
    for name in names:
        try:
            state = load_file(src / f"{name}.safetensors")
        except (SafetensorError, OSError) as e:
            raise CheckpointError(f"cannot read {src / name}.safetensors: {e}") from None
        state = {k: v.to(dtype) if v.is_floating_point() else v for k, v in state.items()}
        atomic_write(dest / f"{name}.safetensors", lambda p, s=state: save_file(s, p))
        text = (src / f"{name}.json").read_text()
        atomic_write(dest / f"{name}.json", lambda p, t=text: Path(p).write_text(t))
    text = (src / "model.json").read_text()
    atomic_write(dest / "model.json", lambda p: Path(p).write_text(text))


def save_train_state(folder: Path, state: dict) -> None:
    atomic_write(Path(folder) / "train_state.pt", lambda p: torch.save(state, p))


def load_train_state(folder: Path) -> dict | None:
    path = Path(folder) / "train_state.pt"
    if not path.is_file():
        return None
    return torch.load(path, weights_only=False)


def rng_state() -> dict:
    return {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate()}


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    np.random.set_state(state["numpy"])
    random.setstate(state["python"])
