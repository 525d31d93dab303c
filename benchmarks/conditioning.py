"""How well conditioned generation holds its conditions, printed as a table (issue 4).

    python benchmarks/conditioning.py --model runs/dit                 # the trained model, ~30 steps
    mkdir /tmp/debug && python -c "import pathlib, tests.conftest as c; c.make_debug_model(pathlib.Path('/tmp/debug'))"
    python benchmarks/conditioning.py --model /tmp/debug --steps 2     # the debug model: < 1 min on CPU

Rows, each from world scenes of the test split rendered at the model's size and fps:
- PSNR (dB) of the conditioned frames against the input: image-to-video frame 0 (the image latent is kept
  exactly, so this is the VAE's round trip), extension forward (the input frames are copied into the
  output: inf means bit-exact) and the re-decoded join frames the extension was conditioned on;
- continuity at each join: mean |pixel jump| from the last given to the first generated frame, divided by
  the median frame-to-frame change of the generated part (1 = as smooth as the video itself): image-to-
  video, extension forward and backward, the window joins of a long video, and the wrap of a loop;
- identity across hard cuts: metrics.score colour and shape of every named object in every shot, and the
  ratio of its largest to smallest median blob area over the shots (1 = same size);
- drift over a long video (--long-seconds): metrics.score of the first vs the last window;
- adherence (metrics.score colour / shape / motion / joint) at 1:1, 16:9, 9:16 and 4:3 sizes.

Random weights give meaningless quality numbers: on the debug model this checks that the script runs.
"""

from __future__ import annotations

import argparse
import math
import time
from pathlib import Path

import numpy as np

from kinema import metrics, world
from kinema.data import to_tensor, to_uint8
from kinema.evaluate import prompt_set
from kinema.pipeline import Pipeline, window_plan


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return math.inf if mse == 0 else 10 * math.log10(255.0**2 / mse)


def step_change(frames: np.ndarray) -> np.ndarray:
    """Mean absolute pixel change between consecutive frames, (T - 1,)."""
    f = frames.astype(np.float32)
    return np.abs(np.diff(f, axis=0)).mean(axis=(1, 2, 3))


def jump_ratio(frames: np.ndarray, join: int, typical: np.ndarray | None = None) -> float:
    """|frame[join] - frame[join - 1]| over the median step of the video (or of `typical` frames)."""
    jump = float(np.abs(frames[join].astype(np.float32) - frames[join - 1].astype(np.float32)).mean())
    base = float(np.median(step_change(frames if typical is None else typical)))
    return jump / max(base, 1e-3)


def roundtrip(pipe: Pipeline, frames: np.ndarray) -> np.ndarray:
    return to_uint8(pipe.vae.decode(pipe.vae.encode(to_tensor(frames)[None]))[0])


def scene_clip(seed: int, size: tuple[int, int], fps: float, seconds: float) -> tuple[np.ndarray, world.Scene]:
    scene = world.sample_scene(seed, "test", aspect=size[0] / size[1], duration=seconds)
    return world.render(scene, size[0], size[1], fps), scene


def conditioned_rows(pipe: Pipeline, args: argparse.Namespace, size: tuple[int, int], fps: float) -> list[tuple]:
    """PSNR and join continuity of image-to-video, extension forward/backward and loops."""
    r = pipe.vae.cfg.temporal_ratio
    kw = dict(steps=args.steps, guidance=args.guidance, size=size, fps=fps)
    i2v_psnr, fwd_psnr, join_psnr, i2v_jump, fwd_jump, bwd_jump, loop_jump = ([] for _ in range(7))
    for i in range(args.n):
        clip, scene = scene_clip(i, size, fps, 2.0)
        prompt = world.short_caption(scene)
        v = pipe(prompt, image=clip[0], seconds=2.0, seed=i, **kw).frames
        i2v_psnr.append(psnr(v[0], clip[0]))
        i2v_jump.append(jump_ratio(v, 1))
        given = clip[: 1 + r * ((len(clip) - 1) // r)]
        v = pipe(prompt, video=given, seconds=1.0, seed=i, **kw).frames
        fwd_psnr.append(psnr(v[: len(given)], given))
        k = min(max(1, (pipe.window - 1) // 2), 1 + (len(given) - 1) // r)
        tail = given[len(given) - 1 - r * (k - 1) :]
        join_psnr.append(psnr(roundtrip(pipe, tail), tail))
        fwd_jump.append(jump_ratio(v, len(given), v[len(given) :]))
        v = pipe(prompt, video=given, extend="backward", seconds=1.0, seed=i, **kw).frames
        new = len(v) - len(given)
        bwd_jump.append(jump_ratio(v, new, v[:new]))
        v = pipe(prompt, loop=True, seconds=2.0, seed=i, **kw).frames
        loop_jump.append(jump_ratio(np.concatenate([v, v[:1]]), len(v)))
    mean = lambda xs: float(np.mean(xs))
    return [
        ("PSNR image-to-video frame 0 vs image (dB)", mean(i2v_psnr), "VAE round trip: the latent is kept exactly"),
        ("PSNR extension: kept input frames (dB)", mean(fwd_psnr), "inf = copied bit-exact"),
        ("PSNR extension: re-decoded join frames (dB)", mean(join_psnr), "what the next window is given"),
        ("join jump / typical step: image-to-video", mean(i2v_jump), "frame 0 -> 1"),
        ("join jump / typical step: extend forward", mean(fwd_jump), "last input -> first new"),
        ("join jump / typical step: extend backward", mean(bwd_jump), "last new -> first input"),
        ("join jump / typical step: loop wrap", mean(loop_jump), "last frame -> first frame"),
    ]


def shot_rows(pipe: Pipeline, args: argparse.Namespace, size: tuple[int, int], fps: float) -> list[tuple]:
    """Identity of the objects named in several shots, per shot: colour, shape (metrics.score) and size."""
    shots = [
        {"prompt": "a small red circle falls and bounces, a large blue square right of the red circle", "seconds": 2},
        {"prompt": "the red circle moves to the left and the blue square spins", "seconds": 2},
        {"prompt": "the blue square moves up, the red circle stays still", "seconds": 2},
    ]
    video = pipe(shots=shots, steps=args.steps, guidance=args.guidance, size=size, fps=fps, seed=args.seed)
    cuts = [*video.info["cuts"], len(video.frames)]
    texts = video.expanded_prompt.split(" | ")
    colour, shape, areas = [], [], {}
    for s, text in enumerate(texts):
        seg = video.frames[cuts[s] : cuts[s + 1]]
        scene = world.parse_prompt(text, aspect=size[0] / size[1], duration=(len(seg) - 1) / fps)
        spec = world.scene_spec(scene)
        spec["facts"] = [f for f in spec["facts"] if f["check"] == "present"]
        sc = metrics.score(seg, spec, fps)
        colour.append(float(sc["color"]))
        shape.append(float(sc["shape"]))
        tracks = metrics.track(seg)
        for o in scene.objects:
            tr = tracks.get(o.color)
            area = float(np.median(tr.area[tr.present])) if tr is not None and tr.n_present else 0.0
            areas.setdefault((o.color, o.shape), []).append(area)
    ratios = [max(a) / min(a) if min(a) > 0 else math.inf for a in areas.values()]
    return [
        ("shots: colour found, mean over shots", float(np.mean(colour)), f"{len(texts)} shots, hard cuts"),
        ("shots: shape right, mean over shots", float(np.mean(shape)), "per named object (metrics.score)"),
        ("shots: size ratio max/min over shots", float(np.mean(ratios)), "1 = same size in every shot"),
    ]


def long_rows(pipe: Pipeline, args: argparse.Namespace, size: tuple[int, int], fps: float) -> list[tuple]:
    """Drift: score the first and the last window of a long video against the prompt; window seams."""
    prompt = "a red circle spins and a blue square stays still"
    t0 = time.time()
    video = pipe(prompt, seconds=args.long_seconds, steps=args.steps, guidance=args.guidance, size=size, fps=fps)
    wall = time.time() - t0
    frames, r = video.frames, pipe.vae.cfg.temporal_ratio
    n = 1 + r * (pipe.window - 1)
    scene = world.parse_prompt(video.expanded_prompt, aspect=size[0] / size[1], duration=(n - 1) / fps)
    spec = world.scene_spec(scene)
    first = metrics.score(frames[:n], spec, fps)
    last = metrics.score(frames[-n:], spec, fps)
    joins, length = [], n
    for _, m in window_plan(n, (len(frames) - n) // r, pipe.window, max(1, (pipe.window - 1) // 2), r, False):
        joins.append(length)
        length += r * m
    seam = float(np.mean([jump_ratio(frames, j) for j in joins])) if joins else float("nan")
    return [
        (f"long {len(frames)} frames: joint, first window", float(first["joint"]), f"{wall:.1f} s wall"),
        ("long: joint, last window", float(last["joint"]), "drift = first - last"),
        ("long: colour, first -> last window", f"{first['color']:.2f}->{last['color']:.2f}", "metrics.score"),
        ("long: shape, first -> last window", f"{first['shape']:.2f}->{last['shape']:.2f}", "metrics.score"),
        ("long: window seam jump / typical step", seam, f"{len(joins)} seams"),
    ]


def aspect_rows(pipe: Pipeline, args: argparse.Namespace, fps: float) -> list[tuple]:
    """Text-to-video adherence at four aspect ratios (same prompts)."""
    rows = []
    for size in ((64, 64), (112, 64), (64, 112), (64, 48)):
        items = prompt_set("test", args.n, duration=2.0)
        res = []
        for it in items:
            v = pipe(it["prompt"], seconds=2.0, size=size, fps=fps, steps=args.steps, guidance=args.guidance)
            res.append(metrics.score(v.frames, it["spec"], fps))
        s = metrics.summarize(res)
        cells = " ".join(f"{k}={s.get(k, float('nan')):.2f}" for k in ("color", "shape", "motion", "joint"))
        rows.append((f"adherence {size[0]}x{size[1]}", s.get("joint", float("nan")), cells))
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", type=Path, default=None, help="model folder (default: the shipped model)")
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--guidance", type=float, default=5.0)
    ap.add_argument("--n", type=int, default=4, help="scenes per row")
    ap.add_argument("--long-seconds", type=float, default=60.0)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    pipe = Pipeline.from_pretrained(args.model)
    size, fps = (pipe.meta["width"], pipe.meta["height"]), float(pipe.meta["fps"])
    t0 = time.time()
    rows = conditioned_rows(pipe, args, size, fps)
    rows += shot_rows(pipe, args, size, fps)
    rows += long_rows(pipe, args, size, fps)
    rows += aspect_rows(pipe, args, fps)
    print(f"model {args.model or 'shipped'}, {size[0]}x{size[1]} at {fps:g} fps, {args.steps} steps, n={args.n}")
    print(f"{'metric':<46} {'value':>8}  note")
    for name, value, note in rows:
        cell = f"{value:8.2f}" if isinstance(value, float) else f"{value!s:>8}"
        print(f"{name:<46} {cell}  {note}")
    print(f"total {time.time() - t0:.0f} s")


if __name__ == "__main__":
    main()
