"""Checkpoints: safetensors weights plus a JSON config, written atomically.

A model directory holds `<name>.safetensors` and `<name>.json` per component (vae, dit), so a shipped model
is two small files per network with stable parameter names. Every write goes to a temporary file first and
is renamed into place, so a process killed mid-save leaves the previous checkpoint readable.

Training state (model, optimiser, EMA, RNG, step) is a torch.distributed.checkpoint (DCP) folder per save,
`ckpt/step_N`, written by every rank into `ckpt/step_N.tmp` and renamed when all ranks are done; the text
file `ckpt/latest` names the last complete one and is replaced atomically after the rename. Older runs
wrote a single `train_state.pt`; it is still read (and converted on the next save).
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import json
import os
import random
import shutil
import tempfile
import warnings
from collections.abc import Iterator
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
    try:
        write(tmp)
        # mkstemp makes 0600 (and some writers, safetensors among them, recreate the file): outputs get the
        # usual permissions
        os.chmod(tmp, 0o666 & ~umask)
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
    save_state(folder, name, module.state_dict(), config, dtype, extra)


def save_state(
    folder: Path,
    name: str,
    state: dict[str, torch.Tensor],
    config: Any,
    dtype: torch.dtype | None = None,
    extra: dict | None = None,
) -> None:
    """save_component for a state dict (e.g. gathered from a sharded model)."""
    state = {
        k: (v.to(dtype) if dtype is not None and v.is_floating_point() else v).detach().cpu().contiguous()
        for k, v in state.items()
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


def read_weights(folder: Path, name: str) -> dict[str, torch.Tensor]:
    """folder/name.safetensors as a state dict, or a CheckpointError naming the file."""
    try:
        return load_file(Path(folder) / f"{name}.safetensors")
    except (SafetensorError, OSError) as e:
        raise CheckpointError(f"cannot read {Path(folder) / name}.safetensors: {e}") from None


def blend_weights(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor], w: float) -> dict[str, torch.Tensor]:
    """(1 - w) * a + w * b for every float tensor, in float32 (a weight-space average of two fine-tunes of one
    initialisation, as in WiSE-FT / model soups); other tensors are taken from a. Both states must hold the
    same keys and shapes."""
    if not 0.0 <= w <= 1.0:
        raise ValueError(f"blend weight must be in [0, 1], got {w:g}")
    if a.keys() != b.keys():
        extra = sorted(a.keys() ^ b.keys())
        raise CheckpointError(f"cannot blend models with different parameters (e.g. {extra[0]!r})")
    out = {}
    for k, x in a.items():
        y = b[k]
        if x.shape != y.shape:
            raise CheckpointError(f"cannot blend {k!r}: shapes {tuple(x.shape)} and {tuple(y.shape)} differ")
        out[k] = (1 - w) * x.float() + w * y.float() if x.is_floating_point() else x
    return out


def save_model_copy(
    src: Path,
    dest: Path,
    names: tuple[str, ...],
    dtype: torch.dtype,
    meta: dict | None = None,
    states: dict[str, dict[str, torch.Tensor]] | None = None,
) -> None:
    """Copy model.json (updated with `meta`) and each component's config and weights from src to dest,
    casting float weights; `states` replaces the weights of the components it names."""
    dest.mkdir(parents=True, exist_ok=True)
    for name in names:
        state = (states or {}).get(name)
        if state is None:
            state = read_weights(src, name)
        state = {k: v.to(dtype) if v.is_floating_point() else v for k, v in state.items()}
        atomic_write(dest / f"{name}.safetensors", lambda p, s=state: save_file(s, p))
        text = (src / f"{name}.json").read_text()
        atomic_write(dest / f"{name}.json", lambda p, t=text: Path(p).write_text(t))
    text = (src / "model.json").read_text()
    if meta:
        text = json.dumps(json.loads(text) | meta, indent=2)
    atomic_write(dest / "model.json", lambda p: Path(p).write_text(text))


def save_train_state(folder: Path, state: dict) -> None:
    atomic_write(Path(folder) / "train_state.pt", lambda p: torch.save(state, p))


def load_train_state(folder: Path, ckpt: Path | None = None) -> dict | None:
    """The newest training state of a run as one plain dict (model, ema, optimizer, rng, step), from its
    latest DCP checkpoint (or the checkpoint folder `ckpt`) or else a legacy train_state.pt; None if it has
    neither. Loads everything into this process: for inspection, tests and conversion, not for resuming a
    sharded run."""
    ckpt = ckpt or latest_checkpoint(folder)
    if ckpt is not None:
        from torch.distributed.checkpoint.state_dict_loader import _load_state_dict_from_keys

        with warnings.catch_warnings():  # "torch.distributed is unavailable": loading into one process is the point
            warnings.simplefilter("ignore", UserWarning)
            state = _load_state_dict_from_keys(checkpoint_id=str(ckpt))
        info = json.loads((ckpt / "train.json").read_text())
        rank0 = ckpt / "rank_0.pt"
        rng = torch.load(rank0, weights_only=False)["rng"] if rank0.is_file() else None
        return {"model": state["model"], "ema": state["ema"], "optimizer": state["optim"], "rng": rng, **info}
    path = Path(folder) / "train_state.pt"
    if not path.is_file():
        return None
    return torch.load(path, weights_only=False)


# ---- distributed checkpoints (torch.distributed.checkpoint) ------------------------------------------------


def latest_checkpoint(run: Path) -> Path | None:
    """The checkpoint folder `ckpt/latest` names, if it is complete; else the newest complete one."""
    ckpt = Path(run) / "ckpt"
    pointer = ckpt / "latest"
    if pointer.is_file():
        path = ckpt / pointer.read_text().strip()
        if _complete(path):
            return path
    done = sorted(p for p in ckpt.glob("step_*") if p.suffix != ".tmp" and _complete(p))
    return done[-1] if done else None


def _complete(path: Path) -> bool:
    return (path / ".metadata").is_file() and (path / "train.json").is_file()


def disk_full(e: BaseException) -> bool:
    """True for ENOSPC, raised directly or wrapped by DCP's per-rank CheckpointException."""
    if isinstance(e, OSError) and e.errno == errno.ENOSPC:
        return True
    return "No space left on device" in str(e) or "ENOSPC" in str(e)


def save_checkpoint(
    run: Path, step: int, state: dict, info: dict, rank_state: dict, rank: int, barrier: Any, keep: int = 2
) -> Path:
    """Write `state` (tensors, possibly sharded DTensors) with DCP from every rank, plus this rank's
    `rank_state` and the run's `info`, to ckpt/step_N.tmp; then rank 0 renames it to ckpt/step_N, points
    ckpt/latest at it and deletes all but the newest `keep`. barrier() synchronises the ranks."""
    import torch.distributed.checkpoint as dcp

    ckpt = Path(run) / "ckpt"
    name = f"step_{step:08d}"
    final, tmp = ckpt / name, ckpt / f"{name}.tmp"
    previous = latest_checkpoint(run)
    if rank == 0:
        shutil.rmtree(tmp, ignore_errors=True)  # left by a run killed mid-save
        tmp.mkdir(parents=True)
    barrier()
    try:
        with _single_process_quiet():
            dcp.save(state, checkpoint_id=str(tmp), no_dist=not torch.distributed.is_initialized())
        torch.save(rank_state, tmp / f"rank_{rank}.pt")
        if rank == 0:
            (tmp / "train.json").write_text(json.dumps(info, indent=2))
        barrier()
        if rank == 0:
            commit_checkpoint(ckpt, tmp, final, keep)
        barrier()
    except BaseException as e:
        if rank == 0:
            shutil.rmtree(tmp, ignore_errors=True)
        kept = f"the last good one, {previous.name}, is kept" if previous else "there is no earlier checkpoint"
        if disk_full(e):
            raise CheckpointError(f"disk full while writing checkpoint {final}; {kept}") from None
        if isinstance(e, Exception):
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise CheckpointError(f"could not write checkpoint {final} ({first}); {kept}") from e
        raise
    return final


def commit_checkpoint(ckpt: Path, tmp: Path, final: Path, keep: int) -> None:
    """Rename a fully written checkpoint into place, move the `latest` pointer, prune old ones (rank 0)."""
    if final.exists():
        shutil.rmtree(final)
    os.replace(tmp, final)
    atomic_write(ckpt / "latest", lambda p: Path(p).write_text(final.name + "\n"))
    done = sorted(p for p in ckpt.glob("step_*") if p.suffix != ".tmp" and p != final)
    for old in done[: max(0, len(done) - (keep - 1))]:
        shutil.rmtree(old, ignore_errors=True)


def load_checkpoint(path: Path, state: dict, rank: int) -> tuple[dict, dict | None]:
    """Load DCP checkpoint `path` into `state` in place (each rank its own shards); returns the run info
    and this rank's saved extra state (None if the checkpoint was written by fewer ranks)."""
    import torch.distributed.checkpoint as dcp

    try:
        with _single_process_quiet():
            dcp.load(state, checkpoint_id=str(path), no_dist=not torch.distributed.is_initialized())
        info = json.loads((path / "train.json").read_text())
    except Exception as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise CheckpointError(f"cannot resume from {path}: {first}") from None
    own = path / f"rank_{rank}.pt"
    return info, torch.load(own, weights_only=False) if own.is_file() else None


@contextlib.contextmanager
def _single_process_quiet() -> Iterator[None]:
    """Silence DCP's "torch.distributed is disabled ... single process" warning: one process is the default."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="torch.distributed is disabled", category=UserWarning)
        yield


def rng_state() -> dict:
    return {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate()}


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    np.random.set_state(state["numpy"])
    random.setstate(state["python"])
