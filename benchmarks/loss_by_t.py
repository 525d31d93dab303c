"""Flow-matching loss of one or more DiT checkpoints at fixed timesteps, on held-out world clips, in one table.

    python benchmarks/loss_by_t.py shipped shipped@1x2x2 runs/dit7 [--n 32] [--split test]
    python benchmarks/loss_by_t.py shipped runs/dit13 --size 64x64 --size 96x64 --size 64x80 --n 12 --objects

MODEL@TxHxW is that model re-cut to finer patches by dit.repatch, before any training.

The same clips (the split's first n scenes, 25 frames at each --size (default 64x64), encoded with the
shipped VAE and captioned with their detailed captions), the same noise and the same timesteps for every
model, so the columns are directly comparable: low t is fine detail (edges, shape), high t is layout. The
mean squared error to the velocity (noise - x0), as in training, with bf16 autocast as in sampling.
Predicting zero scores about 2 (the variance of noise - x0), so a value near or above 2 is a model that
does not know the clip at all (as a DiT trained at one size does at a wider token grid).

--objects adds a row each for the latent cells the scene's objects cover (data.object_mask: dilated by one
cell) and for the rest, the background, so a loss driven by the background texture shows as such.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from kinema.cli import parse_patch, parse_size
from kinema.data import ClipShape, object_mask, world_batch
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
    ap.add_argument("--size", action="append", type=parse_size, help="WxH of the clips (repeatable; default 64x64)")
    ap.add_argument("--objects", action="store_true", help="also the error on object cells and on background cells")
    args = ap.parse_args()
    torch.set_grad_enabled(False)
    enc = TextEncoder.from_pretrained(max_length=TEXT_LEN)
    vae = load_vae(model_folder("shipped"))
    clips = {}
    for w, h in args.size or [(64, 64)]:
        shape = ClipShape(25, w, h, 12.0)
        x, scenes = world_batch(list(range(args.n)), shape, args.split)
        batch = [(x, [long_caption(s) for s in scenes], [short_caption(s) for s in scenes])]
        shard = encode_clips(batch, vae, enc)
        x0 = shard["latents"].float()
        noise = torch.randn(x0.shape, generator=torch.Generator().manual_seed(args.seed))
        cells = torch.stack([object_mask(s, shape) for s in scenes])[:, None].expand_as(x0) if args.objects else None
        clips[f"{w}x{h}"] = (x0, noise, shard["text_long"].float(), shard["mask_long"], cells)
    channels = x0.shape[1]
    print(f"{args.split} split, n = {args.n}: mean squared velocity error at each timestep t\n")
    print("| model | patch | size | cells | " + " | ".join(f"t = {t}" for t in TIMES) + " |")
    print("|---|---|---|---|" + "---|" * len(TIMES))
    for name in args.models:
        folder, _, patch = name.partition("@")
        _, model = build_dit("small", folder, channels, parse_patch(patch or None))
        model.eval()
        patch = "x".join(map(str, model.cfg.patch))
        label = Path(folder).name + (f", re-cut to {patch}" if "@" in name else "")
        for size, (x0, noise, text, mask, cells) in clips.items():
            kinds = ["all"] if cells is None else ["all", "objects", "background"]
            rows: dict[str, list[float]] = {kind: [] for kind in kinds}
            for t in TIMES:
                tt = torch.full((args.n,), t)
                with torch.autocast("cpu", dtype=torch.bfloat16):
                    v = model(add_noise(x0, noise, tt), tt, text, mask)
                err = (v.float() - (noise - x0)).pow(2)
                rows["all"].append(err.mean().item())
                if cells is not None:
                    rows["objects"].append(err[cells].mean().item())
                    rows["background"].append(err[~cells].mean().item())
            for kind in rows:
                cols = " | ".join(f"{r:.3f}" for r in rows[kind])
                print(f"| {label} | {patch} | {size} | {kind} | {cols} |", flush=True)


if __name__ == "__main__":
    main()
