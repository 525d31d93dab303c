"""Where the jump at a conditioned join comes from, variants compared in one run on the same scenes and seeds.

python benchmarks/joins.py --only carry --spans 4,8 --n 12      # ~4 min here
python benchmarks/joins.py --only head --n 12                   # ~2 min here

carry: `pipeline.keep_frames` / `carry_residual` add the VAE's error at a kept input frame to the generated
frames next to it, fading over `pipeline.CARRY` frames. Each span is run on image-to-video, forward and
backward extension by 2 s, and loops, and the join is measured against a typical step taken 10 or more
frames from the join, where no span up to 9 reaches (benchmarks/conditioning.py divides by the median
step of the new frames, which a wide fade itself raises). Columns: the jump at the join, the largest and
the median step of the 9 generated steps next to it (a fade must not just spread the jump into a ramp),
each over that typical step.

head: backward extension gives the model the input's first frames as the LAST latent frames of a window,
encoded by the causal VAE after a made-up past (`conditioning.encode_head`: copies of the first frame).
Scenes are rendered 1 s longer at the start so that the real past exists: the window's given latents are
encoded after a still past (shipped), the real one (an oracle a user never has), or the input's next
frames mirrored.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from conditioning import jump_ratio, step_change

from kinema import Pipeline, world
from kinema import conditioning as cond
from kinema import pipeline as pl

TASKS = ("image-to-video", "extend forward", "extend backward", "loop wrap")


def join_steps(pipe: Pipeline, task: str, clip: np.ndarray, prompt: str, seed: int, kw: dict) -> np.ndarray:
    """Steps of one conditioned video into its generated part, ordered away from the join (index 0 = the
    join itself)."""
    if task == "image-to-video":
        return step_change(pipe(prompt, image=clip[0], seconds=2.0, seed=seed, **kw).frames)
    if task == "extend forward":
        return step_change(pipe(prompt, video=clip, seconds=2.0, seed=seed, **kw).frames)[len(clip) - 1 :]
    if task == "extend backward":
        v = pipe(prompt, video=clip, extend="backward", seconds=2.0, seed=seed, **kw).frames
        return step_change(v)[: len(v) - len(clip)][::-1]
    v = pipe(prompt, loop=True, seconds=2.0, seed=seed, **kw).frames
    return step_change(np.concatenate([v, v[:1]]))[::-1]


def carry_rows(pipe: Pipeline, spans: list[int], n: int, kw: dict) -> None:
    res: dict[tuple[str, int], list[tuple[float, float, float]]] = {}
    shipped = pl.CARRY
    for i in range(n):
        scene = world.sample_scene(i, "test", aspect=1.0, duration=2.0)
        clip = world.render(scene, 64, 64, 12)[:25]
        prompt = world.short_caption(scene)
        for span in spans:
            pl.CARRY = span
            for task in TASKS:
                s = join_steps(pipe, task, clip, prompt, i, kw)
                typical = float(np.median(s[10:]))
                near = s[1:10] / typical
                res.setdefault((task, span), []).append((s[0] / typical, float(near.max()), float(np.median(near))))
    pl.CARRY = shipped
    print(f"{n} test scenes, 64x64, 2 s, steps {kw['steps']}; steps over the typical step 10+ frames from the join")
    print(f"{'join':18} {'span':>4} {'jump':>6} {'largest near':>12} {'median near':>11}")
    for task in TASKS:
        for span in spans:
            a = np.mean(res[(task, span)], axis=0)
            print(f"{task:18} {span:>4} {a[0]:>6.2f} {a[1]:>12.2f} {a[2]:>11.2f}")


def head_rows(pipe: Pipeline, n: int, kw: dict) -> None:
    r = pipe.vae.cfg.temporal_ratio
    shipped = cond.encode_head

    def with_past(variant: str, past: np.ndarray):
        def encode_head(vae, frames: np.ndarray, k: int):
            head = frames[: r * k]
            before = past[-(1 + 2 * r) :] if variant == "the real past" else head[1 : 2 + 2 * r][::-1]
            return cond.encode(vae, np.concatenate([before, head]))[:, :, -k:]

        return shipped if variant == "a still past (shipped)" else encode_head

    variants = ("a still past (shipped)", "the real past", "mirrored frames")
    res: dict[str, list[float]] = {v: [] for v in variants}
    for i in range(n):
        scene = world.sample_scene(i, "test", aspect=1.0, duration=4.0)
        full = world.render(scene, 64, 64, 12)
        given, past = full[12:37], full[:12]  # the input starts 1 s into the scene
        prompt = world.short_caption(scene)
        for v in variants:
            pl.encode_head = with_past(v, past)
            out = pipe(prompt, video=given, extend="backward", seconds=1.0, seed=i, **kw).frames
            new = len(out) - len(given)
            res[v].append(jump_ratio(out, new, out[:new]))
    pl.encode_head = shipped
    print(f"{n} test scenes extended backward by 1 s, steps {kw['steps']}; jump as in benchmarks/conditioning.py")
    for v in variants:
        print(f"{v:24} {np.mean(res[v]):.2f}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", type=Path, default=None, help="model folder (default: the shipped model)")
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--n", type=int, default=12, help="test scenes")
    ap.add_argument("--spans", default="4,8", help="comma-separated CARRY spans to compare (at most 9)")
    ap.add_argument("--only", default="carry,head", help="comma-separated sections: carry, head")
    args = ap.parse_args()
    spans = [int(s) for s in args.spans.split(",")]
    if any(not 0 <= s <= 9 for s in spans):
        raise SystemExit("error: spans must be 0-9 (the typical step is taken 10 frames from the join)")
    pipe = Pipeline.from_pretrained(args.model)
    kw = dict(steps=args.steps, size=(64, 64), fps=12.0, moderate=False)
    sections = args.only.split(",")
    if "carry" in sections:
        carry_rows(pipe, spans, args.n, kw)
    if "head" in sections:
        head_rows(pipe, args.n, kw)


if __name__ == "__main__":
    main()
