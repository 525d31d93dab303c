"""Training data: procedural world clips as tensors, and cached latents for the DiT.

World clips are addressed by an integer index, so a data position is one number and resuming a run
continues the exact same stream of clips.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
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


def object_mask(scene: world.Scene, shape: ClipShape, space: int = 4, time: int = 4) -> Tensor:
    """Where a scene's objects are visible, on the VAE's latent grid: (T_lat, h, w) bool.

    The scene is rendered at the latent grid's size with and without its objects (rendering is
    anti-aliased by pixel coverage, so a cell any object covers in part differs); latent frame 0 is pixel
    frame 0 alone and latent frame k covers frames time*(k-1)+1 .. time*k, as in the causal VAE. The mask
    is dilated by one latent cell, the reach of the VAE's receptive field."""
    w, h = shape.width // space, shape.height // space
    full = world.render(scene, w, h, shape.fps, frames=shape.frames)
    empty = world.render(replace(scene, objects=[]), w, h, shape.fps, frames=shape.frames)
    cells = torch.from_numpy((np.abs(full.astype(np.int16) - empty).max(-1) > 2).astype(np.float32))  # (T, h, w)
    rest = cells[1:].reshape(-1, time, h, w).amax(1)
    lat = torch.cat([cells[:1], rest])
    return torch.nn.functional.max_pool2d(lat[:, None], 3, stride=1, padding=1)[:, 0] > 0


def prepare_object_masks(folder: Path) -> list[Path]:
    """Write objmask.pt (N, T_lat, h, w) bool for a folder written by `kinema prepare-world` (world clips
    0..N-1 of the train split), so training can weight the loss on objects; with `--buckets`, one file in
    each bucket's sub-folder (clip i is in bucket i mod the set's size). Files already written are kept."""
    folder = Path(folder)
    meta = json.loads((folder / "meta.json").read_text())
    if "buckets" in meta:
        if meta.get("kind") != "world":
            raise ValueError(f"{folder} holds footage; object masks need the procedural world's scenes")
        every = len(meta["buckets"])
        jobs = [
            (folder / name, range(i, meta["n"], every), ClipShape(b["frames"], b["width"], b["height"], meta["fps"]))
            for i, (name, b) in enumerate(meta["buckets"].items())
        ]
    else:
        jobs = [(folder, range(meta["n"]), ClipShape(**meta["shape"]))]
    return [_write_object_masks(*job) for job in jobs]


def _write_object_masks(folder: Path, indices: range, shape: ClipShape) -> Path:
    path = folder / "objmask.pt"
    if path.is_file():
        return path
    first = torch.load(sorted(folder.glob("shard_*.pt"))[0], weights_only=True)["latents"]
    _, _, t, h, _ = first.shape  # the VAE's compression, from the latents it wrote
    space, time = shape.height // h, (shape.frames - 1) // max(1, t - 1)
    duration = (shape.frames - 1) / shape.fps
    masks = []
    for i in indices:
        scene = world.sample_scene(i, "train", aspect=shape.width / shape.height, duration=duration)
        masks.append(object_mask(scene, shape, space, time))
    tmp = folder / "objmask.pt.tmp"
    torch.save(torch.stack(masks), tmp)
    tmp.replace(path)
    return path


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
        masks = Path(folder) / "objmask.pt"  # optional: where objects are, on the latent grid (N, T, h, w)
        self.objects = torch.load(masks, weights_only=True) if masks.is_file() else None
        if self.objects is not None and self.objects.shape != self.latents[:, 0].shape:
            raise ValueError(f"{masks} has shape {tuple(self.objects.shape)}, the latents {tuple(self.latents.shape)}")

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
