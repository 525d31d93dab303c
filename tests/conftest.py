"""Shared fixtures: the MiniLM text encoder (loaded once), a debug-preset model folder with random weights, and
a per-session KINEMA_HOME for the C2PA credentials."""

from __future__ import annotations

import json
import socket
import threading
import time
from pathlib import Path

import pytest
import torch

from kinema.checkpoint import save_component
from kinema.dit import DIT_PRESETS, DiT
from kinema.text import TextEncoder
from kinema.vae import VAE_PRESETS, VideoVAE

torch.set_num_threads(2)


@pytest.fixture(autouse=True)
def _kinema_home(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every saved video is C2PA-signed: keep the local CA that signing makes on first use out of the user's
    ~/.config/kinema (one per test session, shared by the tests)."""
    monkeypatch.setenv("KINEMA_HOME", str(tmp_path_factory.getbasetemp() / "kinema_home"))


@pytest.fixture(scope="session")
def text_encoder() -> TextEncoder:
    return TextEncoder.from_pretrained(max_length=128)


def make_debug_model(folder: Path, seed: int = 0) -> Path:
    """A complete model folder (model.json, vae.*, dit.*) on the debug presets with random weights."""
    torch.manual_seed(seed)
    vae = VideoVAE(VAE_PRESETS["debug"])
    dit = DiT(DIT_PRESETS["debug"])
    # adaLN-Zero starts as the identity; perturb the zero-initialised layers so outputs depend on inputs
    with torch.no_grad():
        for p in dit.parameters():
            if p.abs().sum() == 0:
                p.normal_(0, 0.02)
    save_component(folder, "vae", vae, vae.cfg)
    save_component(folder, "dit", dit, dit.cfg)
    meta = {"fps": 8, "width": 64, "height": 64, "frames": 9, "text_encoder": "all-MiniLM-L6-v2", "text_len": 128}
    (folder / "model.json").write_text(json.dumps(meta))
    return folder


@pytest.fixture(scope="session")
def debug_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_debug_model(tmp_path_factory.mktemp("debug_model"))


@pytest.fixture(scope="session")
def debug_pipe(debug_model: Path, text_encoder: TextEncoder):
    from kinema.pipeline import Pipeline

    return Pipeline.from_pretrained(debug_model, text_encoder=text_encoder)


def serve_in_thread(app):
    """Run an ASGI app with uvicorn in a thread on a free loopback port: (server, thread, base URL)."""
    import uvicorn

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    end = time.time() + 30
    while not server.started and time.time() < end:
        time.sleep(0.05)
    return server, thread, f"http://127.0.0.1:{port}"
