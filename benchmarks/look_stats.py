"""Pixel statistics of a model's videos beside the ground truth's: how the videos look, not what they show.

    python benchmarks/look_stats.py shipped runs/dit8 runs/dit8@3 [--n 32]

A model may carry its guidance after '@', and a guidance interval after another (default: its own, 5 at
every step unless its model.json names them). For the
first n test prompts, each model's videos (sampled as `kinema eval` does: 30 Euler steps, the same seeds)
and the ground-truth renders are compared on: the median colour of the frame (the background), the share
of saturated pixels (max - min channel > 60: the objects, since the background is grey), of dark pixels
(the bar), of cyan-like and yellow-like pixels, the mean absolute Laplacian (edges and texture), the mean
absolute frame-to-frame change and each pixel's standard deviation over time (flicker and motion).
Written to find what part of the look raises the Frechet distance of suite G (benchmarks/fd_breakdown.py).
"""

from __future__ import annotations

import argparse

import numpy as np

from kinema.evaluate import from_model, ground_truth, model_spec, prompt_set, sample_videos


def look(videos: list[np.ndarray]) -> dict[str, str]:
    v = np.stack([x.astype(np.float32) for x in videos])  # (N, T, H, W, 3)
    r, g, b = v[..., 0], v[..., 1], v[..., 2]
    spread = v.max(-1) - v.min(-1)
    lap = 4 * v[:, :, 1:-1, 1:-1] - v[:, :, :-2, 1:-1] - v[:, :, 2:, 1:-1] - v[:, :, 1:-1, :-2] - v[:, :, 1:-1, 2:]
    median = np.median(v.reshape(len(v), -1, 3), axis=1).mean(0)
    return {
        "median colour (RGB)": ", ".join(f"{c:.0f}" for c in median),
        "saturated pixels": f"{(spread > 60).mean():.3f}",
        "dark pixels (max channel < 50)": f"{(v.max(-1) < 50).mean():.3f}",
        "cyan-like pixels": f"{((g > r + 60) & (b > r + 60)).mean():.4f}",
        "yellow-like pixels": f"{((r > b + 60) & (g > b + 60)).mean():.4f}",
        "mean abs Laplacian": f"{np.abs(lap).mean():.2f}",
        "mean abs frame-to-frame change": f"{np.abs(np.diff(v, axis=1)).mean():.2f}",
        "pixel std over time": f"{v.std(axis=1).mean():.2f}",
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("models", nargs="+", help="model folders or 'shipped', each optionally @GUIDANCE[@LO:HI]")
    ap.add_argument("--n", type=int, default=32)
    args = ap.parse_args()
    items = prompt_set("test", args.n)
    sets = {"ground truth": look([ground_truth(it)[0] for it in items])}
    for spec in args.models:
        pipe, g, interval, label = model_spec(spec)
        sets[label] = look(sample_videos(from_model(pipe, guidance=g, guidance_interval=interval), items))
    print(f"first {args.n} test prompts, 2 s at 64x64")
    print("| | " + " | ".join(sets) + " |")
    print("|---" * (len(sets) + 1) + "|")
    for key in sets["ground truth"]:
        print(f"| {key} | " + " | ".join(s[key] for s in sets.values()) + " |")


if __name__ == "__main__":
    main()
