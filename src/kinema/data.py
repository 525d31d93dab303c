"""Training data: procedural world clips as tensors, and cached latents for the DiT.

World clips are addressed by an integer index, so a data position is one number and resuming a run
continues the exact same stream of clips.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from kinema import world


def to_tensor(frames: np.ndarray) -> Tensor:
    """(T, H, W, 3) uint8 -> (3, T, H, W) float in [-1, 1]."""
    return torch.from_numpy(frames).permute(3, 0, 1, 2).float().div(127.5).sub(1.0)


def to_uint8(video: Tensor) -> np.ndarray:
    """(3, T, H, W) in [-1, 1] -> (T, H, W, 3) uint8."""
    return video.float().clamp(-1, 1).add(1).mul(127.5).round().byte().permute(1, 2, 3, 0).cpu().numpy()


@dataclass(frozen=True)
class ClipShape:
    frames: int
    width: int
    height: int
    fps: float


def world_batch(indices: list[int], shape: ClipShape, split: str = "train") -> tuple[Tensor, list[world.Scene]]:
    """Render world scenes `indices` of a split at one shape: (B, 3, T, H, W) in [-1, 1] and the scenes."""
    duration = (shape.frames - 1) / shape.fps
    scenes = [world.sample_scene(i, split, aspect=shape.width / shape.height, duration=duration) for i in indices]
    clips = [to_tensor(world.render(s, shape.width, shape.height, shape.fps)) for s in scenes]
    return torch.stack(clips), scenes


class LatentShards:
    """Cached (latent, text embedding, mask) triples written by `kinema prepare-world`, held in memory."""

    def __init__(self, folder: Path) -> None:
        files = sorted(Path(folder).glob("shard_*.pt"))
        if not files:
            raise FileNotFoundError(f"no shard_*.pt files in {folder}")
        parts = [torch.load(f, weights_only=True) for f in files]
        self.latents = torch.cat([p["latents"] for p in parts])  # (N, C, T, h, w)
        self.text_long = torch.cat([p["text_long"] for p in parts])  # (N, L, D) bf16
        self.mask_long = torch.cat([p["mask_long"] for p in parts])  # (N, L) bool
        self.text_short = torch.cat([p["text_short"] for p in parts])
        self.mask_short = torch.cat([p["mask_short"] for p in parts])

    def __len__(self) -> int:
        return len(self.latents)


@dataclass
class LatentSet:
    """One bucket of cached latents: every clip in it has the pixel shape `shape`."""

    name: str
    shards: LatentShards
    shape: ClipShape
    tokens: int = 0  # DiT tokens per clip, set once the model's patch is known


def open_latents(folder: Path) -> tuple[list[LatentSet], tuple[Tensor, Tensor] | None]:
    """The latent sets of a prepared folder and its empty-prompt embedding (None if not stored).

    Two layouts: one clip shape (`prepare-world`: shard_*.pt and meta.json with "shape") and buckets
    (`prepare`, or `prepare-world --buckets`: meta.json with "buckets" and one sub-folder of shards each)."""
    folder = Path(folder)
    meta_file = folder / "meta.json"
    if not meta_file.is_file():
        raise FileNotFoundError(f"no prepared data at {folder} (meta.json missing; run kinema prepare)")
    meta = json.loads(meta_file.read_text())
    if "buckets" in meta:
        sets = [
            LatentSet(name, LatentShards(folder / name), ClipShape(b["frames"], b["width"], b["height"], meta["fps"]))
            for name, b in meta["buckets"].items()
        ]
        if not sets:
            raise ValueError(f"{folder} holds no clips (every source was skipped; see skipped.jsonl)")
    else:
        sets = [LatentSet("world", LatentShards(folder), ClipShape(**meta["shape"]))]
    null = None
    if (folder / "null.pt").is_file():
        saved = torch.load(folder / "null.pt", weights_only=True)
        null = (saved["text"].float(), saved["mask"])
    return sets, null
