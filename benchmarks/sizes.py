"""Does the model draw the size it is asked for? The "sizes" set (evaluate.size_item: a small and a large
still object, both sizes named in the prompt) at four aspect ratios, the ground truth beside the model.

python benchmarks/sizes.py --n 24                 # ~6 min here for the shipped model
python benchmarks/sizes.py --n 24 --model runs/dit16x

Columns: the size facts passed (metrics.SIZE_TOL: drawn within 1.53x of the asked area either way), for the
small and the large objects apart, and the median of drawn area / asked area for each (1 = as asked;
objects never fully visible are left out of the median); colour and shape (metrics.score) and the joint
of every fact. The "truth" rows score the world's own renders of the same scenes.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from kinema import Pipeline, metrics, world
from kinema.evaluate import prompt_set

SIZES = ((64, 64), (112, 64), (64, 112), (64, 48))  # 1:1, 16:9, 9:16, 4:3 (about), as benchmarks/conditioning.py
FPS = 12.0


def rows(videos: list[np.ndarray], items: list[dict]) -> dict[str, float]:
    passed: dict[str, list[float]] = {"small": [], "large": []}
    ratio: dict[str, list[float]] = {"small": [], "large": []}
    colour, shape, joint = [], [], []
    for frames, item in zip(videos, items, strict=True):
        spec = item["spec"]
        got = metrics.score(frames, spec, FPS)
        colour.append(float(got["color"]))
        shape.append(float(got["shape"]))
        joint.append(float(got["joint"]))
        tracks = metrics.track(frames)
        unit = min(frames.shape[1:3])
        for i, o in enumerate(spec["scene"]["objects"]):
            passed[o["size"]].append(float(got[f"size:{i}"]))
            tr = tracks.get(o["color"])
            if tr is not None:
                r = metrics.size_ratio(tr, o["shape"], o["size"], "static", FPS, unit)
                if np.isfinite(r):
                    ratio[o["size"]].append(r)
    med = lambda xs: float(np.median(xs)) if xs else float("nan")
    return {
        "size small": float(np.mean(passed["small"])),
        "size large": float(np.mean(passed["large"])),
        "area small": med(ratio["small"]),
        "area large": med(ratio["large"]),
        "colour": float(np.mean(colour)),
        "shape": float(np.mean(shape)),
        "joint": float(np.mean(joint)),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", type=Path, default=None, help="model folder (default: the shipped model)")
    ap.add_argument("--n", type=int, default=24, help="items per aspect ratio")
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    pipe = Pipeline.from_pretrained(args.model)
    name = "shipped" if args.model is None else args.model.name
    cols = ("size small", "size large", "area small", "area large", "colour", "shape", "joint")
    print(f"{'size':>8} {'videos':>7} " + " ".join(f"{c:>10}" for c in cols))
    started = time.time()
    for w, h in SIZES:
        items = prompt_set("sizes", args.n, aspect=w / h)
        truth = [world.render(world.scene_from_dict(it["spec"]["scene"]), w, h, FPS) for it in items]
        made = [
            pipe(
                it["prompt"], seconds=2.0, size=(w, h), fps=FPS, steps=args.steps, seed=args.seed + k, moderate=False
            ).frames
            for k, it in enumerate(items)
        ]
        for label, videos in (("truth", truth), (name, made)):
            r = rows(videos, items)
            print(f"{w}x{h:<5} {label:>7} " + " ".join(f"{r[c]:>10.2f}" for c in cols), flush=True)
    print(f"{time.time() - started:.0f} s")


if __name__ == "__main__":
    main()
