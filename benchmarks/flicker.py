"""Where the frame-to-frame change of videos is: on background pixels (flicker) or on objects.

    python benchmarks/flicker.py [MODEL ...] [--n 16]

For the first n tuning prompts (test scenes 1000 onward), three sets per model: the ground-truth render,
its round trip through the model's VAE, and the model's own video (30 Euler steps, its guidance, seed =
prompt index). Printed per set: the mean |frame-to-frame change| (0-255 levels, mean over RGB) on
background pixels, on object pixels (saturated colour in either frame of a step), the background change
at latent-chunk boundaries (steps 0->1, 4->5, ...) and inside chunks, and the share of object pixels.
MODEL is a model folder or "shipped" (the default).
"""

from __future__ import annotations

import argparse

import numpy as np
import torch

from kinema.data import to_tensor, to_uint8
from kinema.evaluate import ground_truth, prompt_set
from kinema.pipeline import Pipeline


def change_stats(video: np.ndarray) -> list[float]:
    v = video.astype(np.float32)
    obj = (v.max(-1) - v.min(-1)) > 60  # saturated: an object
    obj = obj | np.roll(obj, 1, 0)
    step = np.abs(np.diff(v, axis=0)).mean(-1)  # (T-1, H, W)
    moving = obj[1:] | obj[:-1]
    bg = ~moving
    boundary = np.array([(f + 1) % 4 == 1 for f in range(len(step))])  # into a new latent chunk (4x VAE)
    return [
        step[bg].mean(),
        step[moving].mean() if moving.any() else 0.0,
        step[boundary][bg[boundary]].mean(),
        step[~boundary][bg[~boundary]].mean(),
        moving.mean(),
    ]


@torch.no_grad()
def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("models", nargs="*", default=["shipped"])
    ap.add_argument("--n", type=int, default=16)
    args = ap.parse_args()
    items = prompt_set("test", args.n, start=1000)
    print("| set | background change | object change | bg at chunk boundary | bg inside chunk | object share |")
    print("|---" * 6 + "|")
    gt_done = False
    for name in args.models:
        pipe = Pipeline.from_pretrained(None if name == "shipped" else name)
        rows: dict[str, list[list[float]]] = {"ground truth": [], f"{name}: VAE round trip": [], f"{name}: video": []}
        for i, it in enumerate(items):
            gt, _ = ground_truth(it)
            rows["ground truth"].append(change_stats(gt))
            rec = to_uint8(pipe.vae.decode(pipe.vae.encode(to_tensor(gt)[None]))[0])
            rows[f"{name}: VAE round trip"].append(change_stats(rec))
            rows[f"{name}: video"].append(change_stats(pipe(it["prompt"], seconds=2.0, seed=i).frames))
        for label, vals in rows.items():
            if label == "ground truth" and gt_done:
                continue
            print(f"| {label} | " + " | ".join(f"{v:.3f}" for v in np.mean(vals, 0)) + " |", flush=True)
        gt_done = True


if __name__ == "__main__":
    main()
