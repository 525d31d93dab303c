"""Does the model draw the size it is asked for? The "sizes" set (evaluate.size_item: a small and a large
still object, both sizes named in the prompt) at four aspect ratios, the ground truth beside the model.

python benchmarks/sizes.py --n 24 --single 8                 # ~9 min here for the shipped model
python benchmarks/sizes.py --n 24 --single 8 --model runs/dit16x

A second table (--single N, 0 to skip) asks for ONE object at a time, "a small red circle" or "a large red
circle" (N prompts per size: hues and shapes in turn), and gives the median drawn / asked area of each size
(1 = as asked; the world's small object has 0.43 of the large one's area). If the model draws one named
size right but not two in one prompt, the failure is binding each size to its object, not the size words.

Columns of the first table: the size facts passed (metrics.SIZE_TOL: drawn within 1.53x of the asked area
either way), for the small and the large objects apart, and the median of drawn area / asked area for each
(1 = as asked; objects never fully visible are left out of the median); colour and shape (metrics.score)
and the joint of every fact. The "truth" rows score the world's own renders of the same scenes.
"""

from __future__ import annotations

import argparse
import math
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
    ap.add_argument("--n", type=int, default=24, help="items of the sizes set per aspect ratio (0: none)")
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--single", type=int, default=8, help="one-object prompts per size and shape of frame (0: none)")
    args = ap.parse_args()
    pipe = Pipeline.from_pretrained(args.model)
    name = "shipped" if args.model is None else args.model.name
    cols = ("size small", "size large", "area small", "area large", "colour", "shape", "joint")
    started = time.time()
    if args.n:
        print(f"{'size':<8} {'videos':>7} " + " ".join(f"{c:>10}" for c in cols))
    for w, h in SIZES if args.n else ():
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
            print(f"{f'{w}x{h}':<8} {label:>7} " + " ".join(f"{r[c]:>10.2f}" for c in cols), flush=True)
    if args.single:
        print(f"\none object a prompt, {args.single} prompts per size: median drawn / asked area (objects found)")
        print(f"{'size':<8} small, large")
        for w, h in SIZES:
            cells = []
            for label, made in (("truth", False), (name, True)):
                got = [single_ratio(pipe, size, args, (w, h), made) for size in ("small", "large")]
                cells.append(f"{label} " + ", ".join(f"{m:.2f} ({k}/{args.single})" for m, k in got))
            print(f"{f'{w}x{h}':<8} " + "   ".join(cells), flush=True)
    print(f"{time.time() - started:.0f} s")


def single_ratio(
    pipe: Pipeline, size: str, args: argparse.Namespace, wh: tuple[int, int], made: bool
) -> tuple[float, int]:
    """Median drawn / asked area over args.single one-object prompts of this size (generated, or the
    ground truth's render of the parsed prompt), and in how many of them the object was found fully
    visible at least once (the others are left out of the median)."""
    w, h = wh
    hues, shapes = list(world.HUES), list(world.SHAPES)
    ratios = []
    for k in range(args.single):
        color, shape = hues[k % len(hues)], shapes[k % len(shapes)]
        prompt = f"a {size} {color} {shape}"
        if made:
            frames = pipe(
                prompt, seconds=2.0, size=wh, fps=FPS, steps=args.steps, seed=args.seed + k, moderate=False
            ).frames
        else:
            scene = world.parse_prompt(prompt, aspect=w / h)
            assert scene is not None
            frames = world.render(scene, w, h, FPS)
        tr = metrics.track(frames).get(color)
        r = math.nan if tr is None else metrics.size_ratio(tr, shape, size, "static", FPS, min(w, h))
        if np.isfinite(r):
            ratios.append(r)
    return (float(np.median(ratios)) if ratios else math.nan), len(ratios)


if __name__ == "__main__":
    main()
