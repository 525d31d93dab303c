"""How well conditioned generation holds its conditions, printed as tables (issue 4).

    python benchmarks/conditioning.py --steps 20 --only shots --n 3 --save runs/shots   # the shipped model
    python benchmarks/conditioning.py --steps 20 --only long --long-n 1 --long-seconds 20
    python benchmarks/conditioning.py --steps 20 --only conditioned --n 2
    mkdir /tmp/debug && python -c "import pathlib, tests.conftest as c; c.make_debug_model(pathlib.Path('/tmp/debug'))"
    python benchmarks/conditioning.py --model /tmp/debug --steps 2 --n 1 --long-seconds 6   # debug: ~1 min

Sections (--only), each from world scenes of the test split rendered at the model's size and fps; the
README's "Conditioning, measured" has the shipped model's numbers:
- conditioned: PSNR (dB) of the conditioned frames against the input: image-to-video frame 0 (the image
  latent is kept exactly, so this is the VAE's round trip), extension forward (the input frames are
  copied into the output: inf means bit-exact) and the re-decoded join frames the extension was
  conditioned on; continuity at each join: mean |pixel jump| from the last given to the first generated
  frame, divided by the median frame-to-frame change of the generated part (1 = as smooth as the video
  itself): image-to-video, extension forward and backward, and the wrap of a loop; keyframe interpolation
  (the clip's first and last frames at 0 s and its end: PSNR of the output there, the jump into the last
  one) and infill (0.75-1.25 s regenerated: PSNR of the kept and of the regenerated frames, the jump at the
  fill's edges); the floor of every jump: the ground truth through the VAE, at each latent-frame boundary;
- shots: identity across a hard cut for each --contexts (generate's shot_context, "none/same" for it with
  shot_noise="same", and a ground-truth floor):
  colour, best-fit shape and area of every object named in both shots, before vs after the cut, the
  background colour, and where the largest frame-to-frame step falls (the cut placement);
- long: drift over a --long-seconds video in 2 s pieces: background, objects, metrics.score colour and
  shape, world-encoder feature distance to ground truth; the window seams;
- aspects: adherence (metrics.score colour / shape / motion / joint) at 1:1, 16:9, 9:16 and 4:3 sizes.
- aspect-tasks: image-to-video (adherence, the jump after the image) and forward extension (the jump at
  the join, the named objects in the new frames) at the same four sizes, from ground-truth scenes there;
- images: colour and shape of the named objects in one-frame generations (frames=1), beside frame 0 of the
  same prompts' videos and of the ground truth;
- edit: video-to-video at several strengths, asked to recolour a test clip's first object: the new
  prompt followed, the old hue gone, the input kept (PSNR, object centre).

Random weights give meaningless quality numbers: on the debug model this checks that the script runs.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import time
from pathlib import Path

import numpy as np

from kinema import fvd, metrics, world
from kinema.data import to_tensor, to_uint8
from kinema.evaluate import prompt_set, scene_item
from kinema.expand import expand_shots
from kinema.pipeline import Pipeline, frames_for, window_plan


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
    kw = kw_of(args, size, fps)
    i2v_psnr, fwd_psnr, join_psnr, i2v_jump, fwd_jump, bwd_jump, loop_jump = ([] for _ in range(7))
    key_psnr, key_jump, fill_psnr, fill_kept, fill_jump, vae_jump = ([] for _ in range(6))
    for i in range(args.n):
        clip, scene = scene_clip(i, size, fps, 2.0)
        prompt = world.short_caption(scene)
        rt = roundtrip(pipe, clip[: 1 + r * ((len(clip) - 1) // r)])  # the floor: no model, the VAE alone
        vae_jump.append(float(np.mean([jump_ratio(rt, j) for j in range(1, len(rt), r)])))
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
        # interpolation: the clip's first and last frames as keyframes at 0 s and at its end
        end = (len(given) - 1) / fps
        v = pipe(prompt, keyframes=[(given[0], 0.0), (given[-1], end)], seconds=end, seed=i, **kw).frames
        key_psnr.append((psnr(v[0], given[0]) + psnr(v[-1], given[-1])) / 2)
        key_jump.append(jump_ratio(v, len(v) - 1))
        # infill: the middle half second regenerated, the rest kept
        lo, hi = 0.75, 1.25
        v = pipe(prompt, fill=given, missing=(lo, hi), seed=i, **kw).frames
        gone = [f for f in range(len(given)) if lo <= f / fps < hi]
        kept = [f for f in range(len(given)) if f < gone[0] - 2 * r or f > gone[-1] + 2 * r]  # beyond the dissolve
        fill_kept.append(psnr(v[kept], given[kept]))
        fill_psnr.append(psnr(v[gone], given[gone]))
        fill_jump.append((jump_ratio(v, gone[0]) + jump_ratio(v, gone[-1] + 1)) / 2)
    mean = lambda xs: float(np.mean(xs))
    return [
        ("jump / typical step: ground truth through the VAE", mean(vae_jump), "the floor: frame 0 -> 1, 4 -> 5, ..."),
        ("PSNR image-to-video frame 0 vs image (dB)", mean(i2v_psnr), "inf = copied bit-exact"),
        ("PSNR extension: kept input frames (dB)", mean(fwd_psnr), "inf = copied bit-exact"),
        ("PSNR extension: re-decoded join frames (dB)", mean(join_psnr), "what the next window is given"),
        ("join jump / typical step: image-to-video", mean(i2v_jump), "frame 0 -> 1"),
        ("join jump / typical step: extend forward", mean(fwd_jump), "last input -> first new"),
        ("join jump / typical step: extend backward", mean(bwd_jump), "last new -> first input"),
        ("join jump / typical step: loop wrap", mean(loop_jump), "last frame -> first frame"),
        ("PSNR keyframes: output at 0 s and the end vs the images (dB)", mean(key_psnr), "first and last given"),
        ("join jump / typical step: into the last keyframe", mean(key_jump), "frame T-2 -> T-1"),
        ("PSNR infill: kept frames beyond the edge dissolve (dB)", mean(fill_kept), "inf = copied bit-exact"),
        ("PSNR infill: regenerated frames vs the original (dB)", mean(fill_psnr), "a plausible fill need not match"),
        ("join jump / typical step: infill edges", mean(fill_jump), "mean of entry and exit"),
    ]


def object_look(frames: np.ndarray) -> dict[str, tuple[np.ndarray, str, float]]:
    """Per detected colour track present in at least half the frames: (mean RGB of its pixels, the shape
    template that fits its blobs best most often (metrics.fit_shape, with no IoU floor: the model's ragged
    blobs rarely pass the detector's 0.7), median area in pixels)."""
    out = {}
    for color, tr in metrics.track(frames).items():
        if tr.n_present < len(frames) / 2:
            continue
        blobs = [(f, b) for f, b in zip(frames, tr.blobs, strict=True) if b is not None]
        pix = np.concatenate([f[b.slices][b.mask] for f, b in blobs]).astype(np.float64)
        votes = [metrics.fit_shape(b).shape for _, b in blobs]
        shape = max(set(votes), key=votes.count)
        out[color] = (pix.mean(0), shape, float(np.median(tr.area[tr.present])))
    return out


def background(frames: np.ndarray) -> np.ndarray:
    """The per-channel median colour over the frames: the background (objects are a small part of it)."""
    return np.median(frames.reshape(-1, 3), axis=0).astype(np.float64)


def shot_sequences(n: int) -> list[list[dict]]:
    """n two-shot stories on test scenes: the scene's own prompt, then a cut to a different action of the
    same objects (the first moves left, the others stay still)."""
    seqs = []
    for i in range(n):
        scene = world.sample_scene(300 + i, "test")
        first, *rest = scene.objects
        second = f"the {first.color} {first.shape} moves to the left"
        if rest:
            second += " and " + " and ".join(f"the {o.color} {o.shape} stays still" for o in rest)
        seqs.append([{"prompt": world.short_caption(scene), "seconds": 2}, {"prompt": second, "seconds": 2}])
    return seqs


def shot_rows(pipe: Pipeline, args: argparse.Namespace, size: tuple[int, int], fps: float) -> list[tuple]:
    """Identity across a hard cut, for each shot context: every object named in both shots, compared
    between the last 4 frames before the cut and the first 4 after it. The "ground truth" row measures a
    4 s world render of shot 1's scene at frame 25, where there is no cut: the metrics' floor."""
    rows = []
    for context in args.contexts.split(","):
        found, rgb, same_shape, area, bg, jump, placed, rgb_all, shape_all, area_all = ([] for _ in range(10))
        placed_moving: list[bool] = []  # only stories whose shot 1 moves: a cut after a still shot can be unseen
        for i, shots in list(enumerate(shot_sequences(args.shot_start + args.n)))[args.shot_start :]:
            if context == "ground truth":
                f, scene = scene_clip(300 + i, size, fps, 4.0)
                c, colors = 25, [o.color for o in scene.objects]
            else:
                saved = args.save / f"shots_{context.replace('/', '-')}_{i}.npy" if args.save else None
                if args.load_saved and saved is not None:
                    f = np.load(saved)
                else:
                    kw = kw_of(args, size, fps)
                    ctx, _, noise = context.partition("/")  # "none/same": shot_noise="same"
                    seed = args.seed + 10 * i
                    f = pipe(shots=shots, shot_context=ctx, shot_noise=noise or None, seed=seed, **kw).frames
                if saved is not None and not args.load_saved:
                    saved.parent.mkdir(parents=True, exist_ok=True)
                    np.save(saved, f)
                c = frames_for(shots[0]["seconds"], fps, pipe.vae.cfg.temporal_ratio)
                second = expand_shots([s["prompt"] for s in shots], size[0] / size[1], [2.0, 2.0])[1]
                scene = world.parse_prompt(second)
                colors = [o.color for o in scene.objects] if scene is not None else []
            before, after, whole = object_look(f[c - 4 : c]), object_look(f[c : c + 4]), object_look(f[:c])
            for color in colors:
                a, b, w = before.get(color), after.get(color), whole.get(color)
                found.append(a is not None and b is not None)
                for ref, r_, s_, a_ in ((a, rgb, same_shape, area), (w, rgb_all, shape_all, area_all)):
                    if ref is not None and b is not None:
                        r_.append(float(np.linalg.norm(ref[0] - b[0])))
                        s_.append(ref[1] == b[1])
                        a_.append(max(ref[2], b[2]) / max(1.0, min(ref[2], b[2])))
            bg.append(float(np.linalg.norm(background(f[c - 4 : c]) - background(f[c : c + 4]))))
            steps = step_change(f)  # steps[j]: frame j -> j + 1; the cut is steps[c - 1]
            jump.append(float(steps[c - 1] / max(1e-3, np.median(np.delete(steps, c - 1)))))
            placed.append(abs(int(np.argmax(steps)) - (c - 1)) <= 1)
            if shot_moves(shots[0]["prompt"], size):
                placed_moving.append(placed[-1])
        mean = lambda xs: float(np.mean(xs)) if xs else float("nan")
        rows += [
            (f"cut [{context}]: object found on both sides", mean(found), f"{len(found)} objects, {args.n} cuts"),
            (f"cut [{context}]: object RGB change (L2, 0-255)", mean(rgb), "same object, last 4 vs first 4 frames"),
            (f"cut [{context}]: same best-fit shape", mean(same_shape), "majority of metrics.fit_shape"),
            (f"cut [{context}]: object area ratio max/min", mean(area), "1 = same size"),
            (f"cut [{context}]: vs all of shot 1: object RGB change", mean(rgb_all), "first 4 frames after the cut"),
            (f"cut [{context}]: vs all of shot 1: same best-fit shape", mean(shape_all), ""),
            (f"cut [{context}]: vs all of shot 1: area ratio max/min", mean(area_all), ""),
            (f"cut [{context}]: background RGB change (L2)", mean(bg), "median colour: the style"),
            (f"cut [{context}]: step at the cut / median step", mean(jump), "the video's other steps"),
            (f"cut [{context}]: largest step at the cut +-1 frame", mean(placed), "the cut is where it should be"),
            (f"cut [{context}]: the same, shot 1 moving", mean(placed_moving), f"{len(placed_moving)} stories"),
        ]
        print_rows(rows[-11:])
    return rows


def shot_moves(prompt: str, size: tuple[int, int]) -> bool:
    """Whether a shot's prompt, parsed as the world grammar reads its expansion, has an object that moves.
    After a still shot, a shot continuing the same scene (`--shot-context first`) has no visible cut."""
    scene = world.parse_prompt(expand_shots([prompt], size[0] / size[1], [2.0])[0])
    return scene is not None and any(o.motion.kind != "static" for o in scene.objects)


def present_only(spec: dict) -> dict:
    """The spec with only its "present" facts (each named object in its colour and shape): what applies
    to one frame, or to frames that need not follow the prompt's motion from its start."""
    return {**spec, "facts": [f for f in spec["facts"] if f["check"] == "present"]}


def kw_of(args: argparse.Namespace, size: tuple[int, int], fps: float) -> dict:
    return dict(steps=args.steps, guidance=args.guidance, size=size, fps=fps, moderate=False)


def gt_features(size: tuple[int, int], fps: float, n: int = 64) -> tuple[np.ndarray, float] | None:
    """Encoder features of n ground-truth 2 s test renders, and their median distance to their mean."""
    if not fvd.encoder_available():
        return None
    enc = fvd.load_encoder()
    clips = [scene_clip(10_000 + i, size, fps, 2.0)[0] for i in range(n)]
    feats = fvd.features(enc, clips)
    return feats, float(np.median(np.linalg.norm(feats - feats.mean(0), axis=1)))


def long_rows(pipe: Pipeline, args: argparse.Namespace, size: tuple[int, int], fps: float) -> list[tuple]:
    """Drift over a long video: n test prompts, each generated for --long-seconds in overlapping windows,
    cut into 2 s pieces; each piece against the first piece (background and object colour, object count)
    and against the prompt (metrics.score colour and shape of the named objects) and the ground-truth
    distribution (distance of its world-encoder feature to the mean feature of 64 ground-truth test clips,
    in units of the ground-truth clips' own median distance: 1 = a typical real clip)."""
    r, piece = pipe.vae.cfg.temporal_ratio, round(2 * fps)
    ref = gt_features(size, fps)
    enc = fvd.load_encoder() if ref is not None else None
    per: dict[int, dict[str, list]] = {}
    walls, seams = [], []
    for it in prompt_set("test", args.long_n, start=500, duration=2.0):
        t0 = time.time()
        video = pipe(it["prompt"], seconds=args.long_seconds, seed=args.seed, **kw_of(args, size, fps))
        walls.append(time.time() - t0)
        frames = video.frames
        n = 1 + r * (pipe.window - 1)
        length = n
        for _, m in window_plan(n, (len(frames) - n) // r, pipe.window, max(1, (pipe.window - 1) // 2), r, False):
            seams.append(jump_ratio(frames, length))
            length += r * m
        spec = present_only(it["spec"])
        first_bg, first_look = None, None
        for k in range((len(frames) - 1) // piece):
            seg = frames[k * piece : (k + 1) * piece + 1]
            look, bg = object_look(seg), background(seg)
            if k == 0:
                first_bg, first_look = bg, look
            shared = [c for c in look if c in first_look]
            sc = metrics.score(seg, spec, fps)
            row = per.setdefault(k, {key: [] for key in ("bg", "obj", "count", "colour", "shape", "feat")})
            row["bg"].append(float(np.linalg.norm(bg - first_bg)))
            row["obj"] += [float(np.linalg.norm(look[c][0] - first_look[c][0])) for c in shared]
            row["count"].append(len(look))
            row["colour"].append(float(sc["color"]))
            row["shape"].append(float(sc["shape"]))
            if ref is not None:
                f = fvd.features(enc, [seg])[0]
                row["feat"].append(float(np.linalg.norm(f - ref[0].mean(0))) / ref[1])
    mean = lambda xs: float(np.mean(xs)) if xs else float("nan")
    print(f"drift: {args.long_n} prompts x {args.long_seconds:g} s, {mean(walls):.0f} s wall each, "
          f"{len(seams)} window seams, seam jump / typical step {mean(seams):.2f}")  # fmt: skip
    print(f"{'seconds':>9} {'bg shift':>8} {'obj RGB':>8} {'objects':>7} {'colour':>6} {'shape':>6} {'feat/GT':>7}")
    for k, row in per.items():
        cells = [mean(row[key]) for key in ("bg", "obj", "count", "colour", "shape", "feat")]
        widths = (8, 8, 7, 6, 6, 7)
        print(f"{2 * k:>4}-{2 * k + 2:<4} " + " ".join(f"{c:>{w}.2f}" for c, w in zip(cells, widths, strict=True)))
    blocks = max(1, min(5, len(per) // 2))  # 10 s of 2 s pieces
    head, tail = list(per.values())[:blocks], list(per.values())[-blocks:]
    rows = [("long: window seam jump / typical step", mean(seams), f"{len(seams)} seams; 1 = as smooth as inside")]
    names = {
        "bg": "background shift vs first 2 s",
        "obj": "object RGB shift vs first 2 s",
        "count": "objects detected",
        "colour": "colour right (metrics.score)",
        "shape": "shape right (metrics.score)",
        "feat": "feature distance to GT (GT = 1)",
    }
    for key, name in names.items():
        a, b = mean([v for row in head for v in row[key]]), mean([v for row in tail for v in row[key]])
        rows.append((f"long: {name}", f"{a:.2f}->{b:.2f}", f"first {2 * blocks} s -> last {2 * blocks} s"))
    return rows


ASPECT_SIZES = ((64, 64), (112, 64), (64, 112), (64, 48))  # 1:1, 16:9, 9:16, 4:3 (about)


def aspect_rows(pipe: Pipeline, args: argparse.Namespace, fps: float) -> list[tuple]:
    """Text-to-video adherence at four aspect ratios (same prompts), args.aspect_seconds long, and the
    median area in pixels of the objects drawn (metrics.object_areas) beside the ground truth renders' (the world's
    unit is the frame's short side, so objects keep their pixel size in portrait frames), and the ground
    truth's own joint score (every fact of its spec passing in its render)."""
    rows, seconds = [], args.aspect_seconds
    for size in ASPECT_SIZES:
        items = prompt_set("test", args.n, aspect=size[0] / size[1], duration=seconds)
        res, area, truth_area, truth_joint = [], [], [], []
        for i, it in enumerate(items):
            v = pipe(it["prompt"], seconds=seconds, seed=args.seed, **kw_of(args, size, fps))
            res.append(metrics.score(v.frames, it["spec"], fps))
            area += metrics.object_areas(v.frames)
            truth = scene_clip(i, size, fps, seconds)[0]
            truth_area += metrics.object_areas(truth)
            truth_joint.append(metrics.score(truth, it["spec"], fps)["joint"])
        s = metrics.summarize(res)
        cells = " ".join(f"{k}={s.get(k, float('nan')):.2f}" for k in ("color", "shape", "motion", "joint"))
        truth_cells = f"truth {np.median(truth_area):.0f}px, joint {np.mean(truth_joint):.2f}"
        cells += f" area={np.median(area):.0f}px ({truth_cells})"
        rows.append((f"adherence {size[0]}x{size[1]}", s.get("joint", float("nan")), cells))
    return rows


def aspect_task_rows(pipe: Pipeline, args: argparse.Namespace, fps: float) -> list[tuple]:
    """Image-to-video and forward extension at the four aspect sizes, from test scenes rendered there.
    Image-to-video: the ground truth's frame 0 animated for 2 s, scored against the scene's spec
    (metrics.score: colour, shape, motion, joint) and the jump from frame 0 to 1. Extension: the 2 s clip
    continued by 1 s: the jump at the join, and the named objects' colour and shape in the new frames
    alone (the "present" facts, as in images)."""
    rows = []
    r = pipe.vae.cfg.temporal_ratio
    for size in ASPECT_SIZES:
        i2v, i2v_jump, ext, ext_jump = [], [], [], []
        kw = kw_of(args, size, fps)
        for i in range(args.n):
            clip, scene = scene_clip(i, size, fps, 2.0)
            item = scene_item(scene, "test")
            v = pipe(item["prompt"], image=clip[0], seconds=2.0, seed=args.seed + i, **kw).frames
            i2v.append(metrics.score(v, item["spec"], fps))
            i2v_jump.append(jump_ratio(v, 1))
            given = clip[: 1 + r * ((len(clip) - 1) // r)]
            v = pipe(item["prompt"], video=given, seconds=1.0, seed=args.seed + i, **kw).frames
            ext_jump.append(jump_ratio(v, len(given), v[len(given) :]))
            ext.append(metrics.score(v[len(given) :], present_only(item["spec"]), fps))
        s, e = metrics.summarize(i2v), metrics.summarize(ext)
        cells = " ".join(f"{k}={s.get(k, math.nan):.2f}" for k in ("color", "shape", "motion"))
        tag = f"{size[0]}x{size[1]}"
        rows.append((f"image-to-video {tag}: joint", s.get("joint", math.nan), cells))
        rows.append((f"image-to-video {tag}: jump 0 -> 1 / typical step", float(np.mean(i2v_jump)), ""))
        cells = " ".join(f"{k}={e.get(k, math.nan):.2f}" for k in ("color", "shape"))
        rows.append((f"extend forward {tag}: named objects in the new 1 s", e.get("joint", math.nan), cells))
        rows.append((f"extend forward {tag}: join jump / typical step", float(np.mean(ext_jump)), ""))
    return rows


def image_rows(pipe: Pipeline, args: argparse.Namespace, size: tuple[int, int], fps: float) -> list[tuple]:
    """Images (frames=1) against the named objects of test prompts: metrics.score's colour and shape (the
    "present" facts; motion does not apply to one frame), beside frame 0 of the same prompt's 2 s video
    and of the ground-truth render (the floor of the detectors)."""
    results: dict[str, list] = {"ground truth, frame 0": [], "text-to-video, frame 0": [], "image (--frames 1)": []}
    for i, item in enumerate(prompt_set("test", args.n, aspect=size[0] / size[1])):
        spec = present_only(item["spec"])
        truth, _ = scene_clip(i, size, fps, 2.0)
        video = pipe(item["prompt"], seconds=2.0, seed=args.seed + i, **kw_of(args, size, fps)).frames
        image = pipe(item["prompt"], frames=1, seed=args.seed + i, **kw_of(args, size, fps)).frames
        for key, frames in zip(results, (truth[:1], video[:1], image), strict=True):
            results[key].append(metrics.score(frames, spec, fps))
    rows = []
    for key, res in results.items():
        s = metrics.summarize(res)
        rows += [(f"{key}: colour", s.get("color", math.nan), ""), (f"{key}: shape", s.get("shape", math.nan), "")]
    return rows


EDIT_STRENGTHS = (0.4, 0.6, 0.8, 1.0)


def recoloured(scene: world.Scene) -> world.Scene:
    """The scene with its first object in a hue no object of the scene has (the edit to ask for)."""
    used = {o.color for o in scene.objects}
    new = next(c for c in world.HUES if c not in used)
    return dataclasses.replace(scene, objects=[dataclasses.replace(scene.objects[0], color=new), *scene.objects[1:]])


def edit_rows(pipe: Pipeline, args: argparse.Namespace, size: tuple[int, int], fps: float) -> list[tuple]:
    """Video-to-video (edit + strength): a test clip with the prompt of the same scene with its first object
    recoloured. At each strength: how well the output follows the edited prompt (metrics.score against the
    recoloured scene: colour, shape, motion, joint), how often the old hue is gone (the detectors track it
    in under half the frames), and how much of the input is kept (PSNR, and the recoloured object's centre
    against the original object's, in pixels). The input itself scored against the new prompt is the
    row a no-op edit would get."""
    rows, per = [], {s: [] for s in ("input", *EDIT_STRENGTHS)}
    for i in range(args.n):
        clip, scene = scene_clip(i, size, fps, 2.0)
        edited = recoloured(scene)
        spec = scene_item(edited, "edit")["spec"]
        old, new = scene.objects[0].color, edited.objects[0].color
        src_track = metrics.track(clip).get(old)
        for s in per:
            if s == "input":
                out = clip
            else:
                kw = kw_of(args, size, fps)
                out = pipe(spec["short"], edit=clip, strength=s, seed=args.seed + i, **kw).frames
            tracks = metrics.track(out)
            gone = old not in tracks or tracks[old].n_present < len(out) / 2
            moved = math.nan
            if src_track is not None and new in tracks:
                both = src_track.present & tracks[new].present
                if both.any():
                    moved = float(np.linalg.norm(src_track.position[both] - tracks[new].position[both], axis=1).mean())
            per[s].append((metrics.score(out, spec, fps), gone, psnr(out, clip), moved))
    for s, res in per.items():
        summ = metrics.summarize([r[0] for r in res])
        cells = " ".join(f"{k}={summ.get(k, math.nan):.2f}" for k in ("color", "shape", "motion", "joint"))
        gone, kept = np.mean([r[1] for r in res]), np.mean([r[2] for r in res])
        moved = np.nanmean([r[3] for r in res]) if any(np.isfinite(r[3]) for r in res) else math.nan
        name = "input as given" if s == "input" else f"strength {s:g}"
        rows.append((f"edit [{name}]: follows the new prompt (joint)", summ.get("joint", math.nan), cells))
        rows.append((f"edit [{name}]: old hue gone", float(gone), ""))
        rows.append((f"edit [{name}]: PSNR vs the input (dB)", float(kept), ""))
        rows.append((f"edit [{name}]: object centre vs the input's (px)", float(moved), "where found"))
    return rows


def print_rows(rows: list[tuple]) -> None:
    for name, value, note in rows:
        cell = f"{value:8.2f}" if isinstance(value, float) else f"{value!s:>8}"
        print(f"{name:<62} {cell}  {note}", flush=True)


SECTIONS = ("conditioned", "shots", "long", "aspects", "aspect-tasks", "images", "edit")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", type=Path, default=None, help="model folder (default: the shipped model)")
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--guidance", type=float, default=None, help="default: the model's")
    ap.add_argument("--n", type=int, default=4, help="scenes per row (shot stories: cuts per context)")
    ap.add_argument("--long-n", type=int, default=2, help="prompts of the drift measurement")
    ap.add_argument("--long-seconds", type=float, default=60.0)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--aspect-seconds", type=float, default=2.0, help="clip length of the aspects section")
    ap.add_argument("--save", type=Path, default=None, help="folder for the shot videos (.npy)")
    ap.add_argument("--shot-start", type=int, default=0, help="first shot story (to add stories to --save)")
    ap.add_argument(
        "--contexts", default="ground truth,none,first,previous", help="shot contexts (CONTEXT/same: shot_noise same)"
    )
    ap.add_argument("--load-saved", action="store_true", help="score the shot videos in --save, generate none")
    ap.add_argument("--only", default=",".join(SECTIONS), help=f"comma-separated sections of {', '.join(SECTIONS)}")
    args = ap.parse_args()
    pipe = Pipeline.from_pretrained(args.model)
    size, fps = (pipe.meta["width"], pipe.meta["height"]), float(pipe.meta["fps"])
    t0 = time.time()
    print(f"model {args.model or 'shipped'}, {size[0]}x{size[1]} at {fps:g} fps, {args.steps} steps, n={args.n}")
    print(f"{'metric':<50} {'value':>8}  note", flush=True)
    sections = {
        "conditioned": lambda: conditioned_rows(pipe, args, size, fps),
        "shots": lambda: shot_rows(pipe, args, size, fps),
        "long": lambda: long_rows(pipe, args, size, fps),
        "aspects": lambda: aspect_rows(pipe, args, fps),
        "aspect-tasks": lambda: aspect_task_rows(pipe, args, fps),
        "images": lambda: image_rows(pipe, args, size, fps),
        "edit": lambda: edit_rows(pipe, args, size, fps),
    }
    for name in args.only.split(","):
        t = time.time()
        rows = sections[name]()
        if name != "shots":  # shot_rows prints as it goes
            print_rows(rows)
        print(f"[{name}: {time.time() - t:.0f} s]", flush=True)
    print(f"total {time.time() - t0:.0f} s")


if __name__ == "__main__":
    main()
