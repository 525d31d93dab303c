"""Flow-matching loss of one or more DiT checkpoints at fixed timesteps, on held-out world clips, in one table.

    python benchmarks/loss_by_t.py shipped shipped@1x2x2 runs/dit7 [--n 32] [--split test]

MODEL@TxHxW is that model re-cut to finer patches by dit.repatch, before any training.

The same clips (the split's first n scenes, 25 frames at 64x64, encoded with the shipped VAE and captioned
with their detailed captions), the same noise and the same timesteps for every model, so the columns are
directly comparable: low t is fine detail (edges, shape), high t is layout. The mean squared error to the
velocity (noise - x0), as in training, with bf16 autocast as in sampling.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from kinema.cli import parse_patch
from kinema.data import ClipShape, world_batch
from kinema.flow import add_noise
from kinema.text import TextEncoder
from kinema.train import TEXT_LEN, build_dit, encode_clips, load_vae, model_folder
from kinema.world import long_caption, short_caption

TIMES = (0.05, 0.2, 0.4, 0.6, 0.8, 0.95)


@torch.no_grad()
def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("models", nargs="+", help="'shipped' or model folders, optionally @TxHxW (dit.repatch)")
    ap.add_argument("--n", type=int, default=32)
    ap.add_argument("--split", default="test")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    torch.set_grad_enabled(False)
    x, scenes = world_batch(list(range(args.n)), ClipShape(25, 64, 64, 12.0), args.split)
    enc = TextEncoder.from_pretrained(max_length=TEXT_LEN)
    batch = [(x, [long_caption(s) for s in scenes], [short_caption(s) for s in scenes])]
    shard = encode_clips(batch, load_vae(model_folder("shipped")), enc)
    x0, text, mask = shard["latents"].float(), shard["text_long"].float(), shard["mask_long"]
    noise = torch.randn(x0.shape, generator=torch.Generator().manual_seed(args.seed))
    print(f"{args.split} split, n = {args.n}: mean squared velocity error at each timestep t\n")
    print("| model | patch | " + " | ".join(f"t = {t}" for t in TIMES) + " |")
    print("|---|---|" + "---|" * len(TIMES))
    for name in args.models:
        folder, _, patch = name.partition("@")
        _, model = build_dit("small", folder, x0.shape[1], parse_patch(patch or None))
        model.eval()
        row = []
        for t in TIMES:
            tt = torch.full((args.n,), t)
            with torch.autocast("cpu", dtype=torch.bfloat16):
                v = model(add_noise(x0, noise, tt), tt, text, mask)
            row.append((v.float() - (noise - x0)).pow(2).mean().item())
        patch = "x".join(map(str, model.cfg.patch))
        label = Path(folder).name + (f", re-cut to {patch}" if "@" in name else "")
        print(f"| {label} | {patch} | " + " | ".join(f"{r:.3f}" for r in row) + " |")


if __name__ == "__main__":
    main()
