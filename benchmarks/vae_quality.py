"""Reconstruction quality of one or more VAE checkpoints on held-out world clips, in one table.

    python benchmarks/vae_quality.py runs/vae runs/vae2 src/kinema/assets [--n 64]

Columns: PSNR over all pixels, PSNR over object pixels (saturated pixels and a 1-pixel border, where
shape lives), background flicker (the mean absolute frame-to-frame change, in 0-255 levels, of pixels
that are background in both frames of the ground truth: the ground truth's own row is what camera moves
give), and the colour and shape rates of the detectors (kinema.metrics) on the reconstructions, next to
the same rates on the ground-truth clips. Clips: "test" split, 25 frames, 64x64, 12 fps.
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import numpy as np
import torch

from kinema import metrics, world
from kinema.data import ClipShape, to_uint8, world_batch
from kinema.train import load_vae
from kinema.vae import object_weight


def psnr(err2: torch.Tensor, weight: torch.Tensor | None = None) -> float:
    mse = err2.mean() if weight is None else (err2 * weight).sum() / (weight.sum() * err2.shape[1])
    return 10 * math.log10(1.0 / max(mse.item(), 1e-12))


def background_flicker(video: torch.Tensor, still: torch.Tensor) -> float:
    """Mean |frame-to-frame change| in 0-255 levels of videos (B, 3, T, H, W) in [-1, 1], over the pixels
    where still (B, T - 1, H, W) is 1."""
    step = (video.float().diff(dim=2) * 127.5).abs().mean(1)
    return float((step * still).sum() / still.sum())


@torch.no_grad()
def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("folders", nargs="+", type=Path, help="folders holding vae.json + vae.safetensors")
    ap.add_argument("--n", type=int, default=64)
    args = ap.parse_args()
    shape = ClipShape(25, 64, 64, 12.0)
    x, scenes = world_batch(list(range(args.n)), shape, "test")
    specs = [world.scene_spec(s) for s in scenes]
    obj = (object_weight(x, 1.0) - 1.0).expand_as(x)  # 1 on object pixels, 0 elsewhere
    still = 1.0 - torch.maximum(obj[:, 0, :-1], obj[:, 0, 1:])  # background in both frames of a step
    gt = [metrics.score(to_uint8(v), sp, shape.fps) for v, sp in zip(x, specs, strict=True)]
    flicker = f"{background_flicker(x, still):.3f}"
    rows = [("ground truth", "", "", flicker, np.mean([r["color"] for r in gt]), np.mean([r["shape"] for r in gt]))]
    for folder in args.folders:
        vae = load_vae(folder)
        rec = torch.cat([vae.decode(vae.encode(x[i : i + 8])) for i in range(0, args.n, 8)])
        err2 = ((rec - x) / 2).pow(2)
        scores = [metrics.score(to_uint8(v), sp, shape.fps) for v, sp in zip(rec, specs, strict=True)]
        rows.append(
            (
                str(folder),
                f"{psnr(err2):.2f}",
                f"{psnr(err2, obj):.2f}",
                f"{background_flicker(rec, still):.3f}",
                np.mean([r["color"] for r in scores]),
                np.mean([r["shape"] for r in scores]),
            )
        )
    print(f"{args.n} held-out clips, {shape.frames} frames at {shape.width}x{shape.height}")
    print(f"| {'VAE':28} | {'PSNR dB':>8} | {'object PSNR':>11} | {'bg flicker':>10} | {'colour':>6} | {'shape':>6} |")
    print(f"|{'-' * 30}|{'-' * 10}|{'-' * 13}|{'-' * 12}|{'-' * 8}|{'-' * 8}|")
    for name, p, po, fl, c, s in rows:
        print(f"| {name:28} | {p:>8} | {po:>11} | {fl:>10} | {c:6.3f} | {s:6.3f} |")


if __name__ == "__main__":
    main()
