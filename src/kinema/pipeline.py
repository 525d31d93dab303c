"""The one inference core: `generate()` turns a prompt into a Video. The CLI, tests and benchmarks call it.

    pipe = Pipeline.from_pretrained()            # the model shipped in the package
    video = pipe("a red circle falls and bounces", seconds=2, size=(64, 64), seed=0)
    video.frames.shape                           # (25, 64, 64, 3) uint8
    video.save("out.mp4")

A model folder holds model.json (defaults: fps, size, text encoder), vae.{json,safetensors} and
dit.{json,safetensors}.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from kinema import flow
from kinema.checkpoint import CheckpointError, load_weights, read_config
from kinema.data import to_uint8
from kinema.dit import DiT, DiTConfig
from kinema.expand import expand_prompt
from kinema.text import TextEncoder
from kinema.vae import VAEConfig, VideoVAE
from kinema.video_io import write_video

MAX_SECONDS = 60.0
SHIPPED_MODEL = Path(__file__).parent / "assets"


class KinemaError(ValueError):
    """A bad request: the message is one line meant for the user."""


@dataclass
class Video:
    frames: np.ndarray  # (T, H, W, 3) uint8
    fps: float
    prompt: str
    expanded_prompt: str
    seed: int
    info: dict = field(default_factory=dict)

    def save(self, path: str | Path) -> Path:
        """Write .mp4 (H.264), .gif or .png (one frame); atomic, never a partial file."""
        return write_video(self.frames, path, self.fps)


class Pipeline:
    """Text encoder + DiT + VAE decoder, with the defaults the model was trained at."""

    def __init__(self, vae: VideoVAE, dit: DiT, text_encoder: TextEncoder, meta: dict, path: Path | None) -> None:
        self.vae, self.dit, self.text_encoder, self.meta, self.path = vae, dit, text_encoder, meta, path

    @classmethod
    def from_pretrained(cls, path: str | Path | None = None, text_encoder: TextEncoder | None = None) -> Pipeline:
        """Load a model folder; None loads the model shipped inside the package."""
        folder = Path(path) if path is not None else SHIPPED_MODEL
        if not folder.is_dir():
            raise CheckpointError(f"no model folder at {folder}")
        meta_file = folder / "model.json"
        if not meta_file.is_file():
            raise CheckpointError(f"missing checkpoint file {meta_file}")
        try:
            meta = json.loads(meta_file.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise CheckpointError(f"corrupt model config {meta_file}: {e}") from None
        try:
            vae = VideoVAE(VAEConfig(**read_config(folder, "vae")["config"]))
            dit = DiT(DiTConfig(**read_config(folder, "dit")["config"]))
        except TypeError as e:
            raise CheckpointError(f"checkpoint config in {folder} is not valid: {e}") from None
        load_weights(folder, "vae", vae)
        load_weights(folder, "dit", dit)
        enc = text_encoder or TextEncoder.from_pretrained(meta.get("text_encoder_path"), meta.get("text_len", 128))
        return cls(vae.eval().requires_grad_(False), dit.eval().requires_grad_(False), enc, meta, folder)

    @property
    def stride(self) -> int:
        """Pixel sizes must be multiples of this: the VAE's spatial ratio times the DiT's patch."""
        return self.vae.cfg.spatial_ratio * self.dit.cfg.patch[1]

    def __call__(self, prompt: str, **kwargs) -> Video:
        return generate(self, prompt, **kwargs)


def frames_for(seconds: float, fps: float, temporal_ratio: int) -> int:
    """The frame count 1 + r k closest to seconds * fps (at least one frame)."""
    return 1 + temporal_ratio * max(0, round(seconds * fps / temporal_ratio))


def check_request(
    pipe: Pipeline, prompt: str, seconds: float, size: tuple[int, int], fps: float, steps: int, guidance: float
) -> None:
    """Raise KinemaError with a one-line reason for a request that cannot be served."""
    if not isinstance(prompt, str) or not prompt.strip():
        raise KinemaError("the prompt is empty")
    if not (0 < seconds <= MAX_SECONDS) or not math.isfinite(seconds):
        raise KinemaError(f"seconds must be in (0, {MAX_SECONDS:g}], got {seconds:g}")
    if not (0 < fps <= 60):
        raise KinemaError(f"fps must be in (0, 60], got {fps:g}")
    w, h = size
    s = pipe.stride
    if w <= 0 or h <= 0 or w % s or h % s:
        raise KinemaError(f"size must be positive multiples of {s} (e.g. 64x64, 96x64), got {w}x{h}")
    if w * h > 1024 * 1024:
        raise KinemaError(f"size {w}x{h} is larger than 1024x1024 pixels")
    if not (1 <= steps <= 1000):
        raise KinemaError(f"steps must be in [1, 1000], got {steps}")
    if not (0 <= guidance <= 50):
        raise KinemaError(f"guidance must be in [0, 50], got {guidance:g}")


@torch.no_grad()
def generate(
    pipe: Pipeline,
    prompt: str,
    *,
    seconds: float | None = None,
    size: tuple[int, int] | None = None,
    fps: float | None = None,
    steps: int = 30,
    guidance: float = 5.0,
    seed: int = 0,
    sampler: str = "euler",
    expand: bool = True,
    negative_prompt: str = "",
    progress: Callable[[int, int], None] | None = None,
) -> Video:
    """Sample a video for a prompt. Deterministic given (model, prompt, options, seed)."""
    meta = pipe.meta
    fps = float(fps or meta.get("fps", 12))
    size = tuple(size or (meta.get("width", 64), meta.get("height", 64)))  # type: ignore[assignment]
    seconds = float(seconds if seconds is not None else (meta.get("frames", 25) - 1) / meta.get("fps", 12))
    check_request(pipe, prompt, seconds, size, fps, steps, guidance)
    if sampler not in flow.SAMPLERS:
        raise KinemaError(f"unknown sampler {sampler!r}; choose from {', '.join(flow.SAMPLERS)}")
    started = time.time()
    w, h = size
    frames = frames_for(seconds, fps, pipe.vae.cfg.temporal_ratio)
    text = expand_prompt(prompt, aspect=w / h, duration=(frames - 1) / fps) if expand else prompt
    T, lh, lw = pipe.vae.latent_shape(frames, h, w)
    g = torch.Generator().manual_seed(int(seed))
    x = torch.randn((1, pipe.vae.cfg.latent_channels, T, lh, lw), generator=g)
    emb, mask = pipe.text_encoder.encode([text, negative_prompt])
    use_cfg = guidance != 1.0
    if not use_cfg:
        emb, mask = emb[:1], mask[:1]
    with torch.autocast("cpu", dtype=torch.bfloat16):
        cache = pipe.dit.encode_text(emb, mask)

    def model_fn(xt: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        n = 2 if use_cfg else 1
        with torch.autocast("cpu", dtype=torch.bfloat16):
            v = pipe.dit(xt.repeat(n, 1, 1, 1, 1), t.repeat(n), emb, mask, text_cache=cache).float()
        return flow.guidance(v[:1], v[1:], guidance) if use_cfg else v

    tokens = T * lh * lw // math.prod(pipe.dit.cfg.patch)
    ts = flow.timestep_schedule(steps, flow.shift_for_tokens(tokens))
    z = flow.SAMPLERS[sampler](model_fn, x, ts, callback=progress)
    video = pipe.vae.decode(z, chunk=4 if T > 8 else None)
    info = {
        "steps": steps,
        "guidance": guidance,
        "sampler": sampler,
        "size": [w, h],
        "frames": frames,
        "seconds": (frames - 1) / fps,
        "latent": [T, lh, lw],
        "wall_s": round(time.time() - started, 3),
    }
    return Video(to_uint8(video[0]), fps, prompt, text, int(seed), info)
