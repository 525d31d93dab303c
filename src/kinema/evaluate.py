"""The World benchmark: score videos against machine-checkable specs of the procedural world.

    kinema eval --ground-truth --n 60 --out runs/bench-gt            # the ceiling: world renders
    kinema eval --baseline first-frame --n 60 --out runs/bench-ff    # trivial baselines
    kinema eval --model runs/dit --set holdout --n 200 --out runs/bench-holdout
    kinema eval --videos DIR --out runs/bench-other                  # any generator's MP4s

A prompt set (`prompt_set`) is a list of items {"id", "prompt", "spec"}; a source turns an item into a
video (the shipped or a named model, ground-truth renders, a baseline, or a folder of videos with
DIR/prompts.jsonl); `run_benchmark` scores every video with metrics.score, groups the per-fact checks
into suites A-F (`SUITES`), and writes report.json, report.html (inline SVG plots, the worst failures'
contact sheet), items.jsonl and run.json to the output folder. See docs/WORLD_BENCH.md.
"""

from __future__ import annotations

import base64
import dataclasses
import html
import io
import json
import math
import re
import sys
import zlib
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image, ImageDraw
from tqdm import tqdm

from kinema import metrics, world

if TYPE_CHECKING:
    from kinema.pipeline import Pipeline

# Suites as groupings of the per-fact check families (metrics._fact_key's prefix). A video's suite score is
# the mean of its checks in that suite; a suite's mean is over the videos that have at least one.
# A has few checks yet (colour + shape by re-rendering). "acausal" (an effect before its cause) is reported
# beside the suites, as a rate, not scored in one.
SUITES: dict[str, tuple[str, ...]] = {
    "A render fidelity": ("present",),
    "B temporal consistency": ("static", "moves", "smooth", "instances"),
    "C prompt adherence": ("present", "direction", "rotation", "relation", "cause", "size"),
    "D physics": ("gravity", "collision", "cause"),
    "E camera": ("camera",),
    "F object permanence": ("permanence", "return"),
}
PROBE_SETS: tuple[str, ...] = tuple(f"probe-{k}" for k in world.PROBES)
RANGE_SETS: tuple[str, ...] = ("range-speed", "range-count", "range-height")  # outside the trained ranges
SETS: tuple[str, ...] = ("test", "holdout", "mirror", "probes", *PROBE_SETS, *RANGE_SETS, "sizes")
BASELINES: tuple[str, ...] = ("first-frame", "random-drift")
SIZE, FPS = 64, 12.0  # ground-truth and baseline renders

Item = dict  # {"id": str, "prompt": str, "spec": dict, optional "video": Path, "fps": float}
Source = Callable[[Item, int], tuple[np.ndarray, float]]  # (item, sample index) -> (frames, fps)


# ---------------------------------------------------------------------------------------------------
# Prompt sets
# ---------------------------------------------------------------------------------------------------

_MOVING = ("direction", "gravity", "rotation")


def _generic(facts: list[dict]) -> list[dict]:
    """Checks every video gets, stated or not: each object that should move moves at all, smoothness,
    instance preservation."""
    moving = [{"check": "moves", "object": f["object"]} for f in facts if f["check"] in _MOVING]
    return [*moving, {"check": "smooth"}, {"check": "instances"}]


_RELATION_WORDS = re.compile(r"\b(left of|right of|above|below)\b")


def _stated(spec: dict) -> dict:
    """Keep the relation facts only when the prompt states a relation; add the smoothness and instance checks."""
    stated = bool(_RELATION_WORDS.search(spec["short"]))
    spec["facts"] = [f for f in spec["facts"] if f["check"] != "relation" or stated] + _generic(spec["facts"])
    return spec


def scene_item(scene: world.Scene, name: str, extra: Sequence[dict] = ()) -> Item:
    """The benchmark item of a scene: its short prompt, and the spec of the facts that prompt states."""
    spec = _stated(world.scene_spec(scene))
    spec["facts"] += list(extra)
    return {"id": f"{name}-{scene.seed}", "prompt": spec["short"], "spec": spec}


def mirror_scene(scene: world.Scene) -> world.Scene:
    """The left/right mirror image of a scene: x reflected, left and right swapped in directions and pans,
    spins reversed. Its captions and relations follow from the mirrored graph."""

    def flip(word: str) -> str:
        return "-".join({"left": "right", "right": "left"}.get(w, w) for w in word.split("-"))

    objects = []
    for o in scene.objects:
        m = dataclasses.replace(o.motion, direction=flip(o.motion.direction), clockwise=not o.motion.clockwise)
        objects.append(dataclasses.replace(o, x=scene.width - o.x, angle=-o.angle, motion=m))
    return dataclasses.replace(
        scene,
        objects=objects,
        camera=flip(scene.camera),
        occluders=[scene.width - x for x in scene.occluders],
        split=f"{scene.split}-mirror",
    )


def _mirror_pairs(n: int, start: int) -> list[Item]:
    """Test scenes whose prompt states a left/right relation, each followed by its mirror image; relation
    facts are doubled with an order-blind copy (passes if either sign matches, as VBench scores it)."""
    items: list[Item] = []
    seed = start
    while len(items) < n:
        scene = world.sample_scene(seed, "test")
        seed += 1
        if not re.search(r"\b(left of|right of)\b", world.short_caption(scene)):
            continue
        for sc, name in ((scene, "mirror-a"), (mirror_scene(scene), "mirror-b")):
            item = scene_item(sc, name)
            rels = [f for f in item["spec"]["facts"] if f["check"] == "relation"]
            item["spec"]["facts"] += [{**f, "order_blind": True} for f in rels]
            item["pair"] = scene.seed
            items.append(item)
    return items[:n]


def _probe(kind: str, seed: int) -> Item:
    scene = world.probe_scene(kind, seed)
    extra: list[dict] = []
    if kind == "occluder":
        extra = [{"check": "permanence", "object": i} for i in range(len(scene.objects))]
    elif kind == "offscreen":
        extra = [{"check": "return", "object": 0}]
    return scene_item(scene, f"probe-{kind}", extra)


def range_scene(name: str, seed: int) -> world.Scene:
    """A test scene pushed outside the ranges training samples. "range-speed": every mover goes "very
    slowly" or "very quickly" (half the slowest, 1.5x the fastest trained speed); "range-count": 4 or 5
    objects (training has 1-3); "range-height": one object dropped from lower (y 0.45-0.55) or higher (the
    top edge) than training's drops (y from 0.12 + r to 0.4)."""
    rng = np.random.default_rng([seed, 211 + RANGE_SETS.index(name), 7919])
    if name == "range-speed":
        scene = world.sample_scene(seed, "test")
        movers = [o for o in scene.objects if o.motion.kind == "move"] or scene.objects[:1]
        for o in movers:
            direction = o.motion.direction or str(rng.choice(list(world.DIRECTIONS)))
            o.motion = world.Motion("move", direction, str(rng.choice(list(world.RANGE_SPEEDS))))
            x, y = o.x, o.y
            if o.motion.speed == "very quickly":  # start further back, so the path still crosses the view
                world._place(rng, o, scene)
            if any(math.hypot(o.x - p.x, o.y - p.y) < o.radius + p.radius + 0.06 for p in scene.objects if p is not o):
                o.x, o.y = x, y
        return dataclasses.replace(scene, split=name, camera="static", occluders=[])
    template = int(rng.integers(world.N_TEMPLATES - 1))
    scene = world.Scene(objects=[], seed=seed, split=name, template=template)
    pairs = [(c, s) for c in world.HUES for s in world.SHAPES]
    picks = [pairs[i] for i in rng.permutation(len(pairs))]
    if name == "range-height":
        color, shape = picks[0]
        size = str(rng.choice(list(world.SIZES)))
        obj = world.Obj(shape, color, size, float(rng.uniform(0.25, 0.75)), 0.0, world.Motion("fall"))
        low = rng.random() < 0.5
        obj.y = float(rng.uniform(0.45, 0.55)) if low else float(rng.uniform(obj.radius + 0.01, 0.1 + obj.radius))
        scene.objects, scene.floor = [obj], True
        return scene
    count = int(rng.choice([4, 5]))
    xs = (np.arange(count) + 0.5) / count
    for (color, shape), x in zip(picks, xs, strict=False):
        kind = str(rng.choice(["static", "move", "rotate"] if shape != "circle" else ["static", "move"]))
        motion = world.Motion("move", str(rng.choice(["up", "down"])), "slowly") if kind == "move" else None
        motion = motion or world.Motion(kind, clockwise=bool(rng.integers(2)))
        y = 0.5 if kind != "move" else 0.5 - world.DIRECTIONS[motion.direction][1] * 0.15
        scene.objects.append(world.Obj(shape, color, "small", float(x), y, motion))
    return scene


def size_item(seed: int, aspect: float = 1.0) -> Item:
    """Two still objects of different hues and shapes side by side, one small and one large (in random
    order), and a prompt that names both sizes ("a small red circle and a large blue square"): the items
    of the "sizes" set, whose "size" facts check that each is drawn at the size asked (metrics.SIZE_TOL).
    Test prompts never name a size, so elsewhere the drawn size is free. Two hues, so that a colour
    names one object (benchmarks/sizes.py looks each up by colour)."""
    rng = np.random.default_rng([seed, 307, 7919])
    hues, shapes = rng.permutation(list(world.HUES))[:2], rng.permutation(list(world.SHAPES))[:2]
    first, second = ((str(c), str(s)) for c, s in zip(hues, shapes, strict=True))
    sizes = ("small", "large") if rng.random() < 0.5 else ("large", "small")
    scene = world.Scene(objects=[], aspect=aspect, seed=seed, split="sizes")
    for (color, shape), size, fx in zip((first, second), sizes, (0.3, 0.7), strict=True):
        scene.objects.append(world.Obj(shape, color, size, fx * scene.width, 0.5 * scene.height))
    item = scene_item(scene, "sizes", [{"check": "size", "object": i, "size": sz} for i, sz in enumerate(sizes)])
    item["prompt"] = item["spec"]["short"] = " and ".join(f"a {o.size} {o.color} {o.shape}" for o in scene.objects)
    item["spec"]["facts"] = [f for f in item["spec"]["facts"] if f["check"] != "relation"]  # not stated
    return item


def prompt_set(name: str, n: int, start: int = 0, aspect: float = 1.0, duration: float = 2.0) -> list[Item]:
    """n items of a named set: "test" (in-distribution, unseen seeds), "holdout" (compositional hold-outs),
    "mirror" (mirrored left/right pairs), "probe-KIND" (world.probe_scene), "probes" (all kinds in turn),
    one of RANGE_SETS (`range_scene`: speeds, counts and drop heights outside the trained ranges), or
    "sizes" (`size_item`: a small and a large object, sizes named). aspect (width / height) shapes the
    scenes of "test", "holdout" and "sizes"; duration (seconds) those of "test" and "holdout"."""
    if name in ("test", "holdout"):
        scenes = (world.sample_scene(s, name, aspect=aspect, duration=duration) for s in range(start, start + n))
        return [scene_item(sc, name) for sc in scenes]
    if name in RANGE_SETS:
        return [scene_item(range_scene(name, s), name) for s in range(start, start + n)]
    if name == "sizes":
        return [size_item(s, aspect) for s in range(start, start + n)]
    if name == "mirror":
        return _mirror_pairs(n, start)
    if name in PROBE_SETS:
        return [_probe(name[len("probe-") :], s) for s in range(start, start + n)]
    if name == "probes":
        k = len(world.PROBES)
        return [_probe(world.PROBES[i % k], start + i // k) for i in range(n)]
    raise ValueError(f"unknown prompt set {name!r}; choose from {', '.join(SETS)}")


def spec_from_prompt(prompt: str) -> dict | None:
    """A spec for a prompt in the world's vocabulary (world.parse_prompt), keeping only the facts the
    prompt states: objects, named motions, stated relations, camera moves. None if no object is named."""
    scene = world.parse_prompt(prompt)
    if scene is None:
        return None
    spec = world.scene_spec(scene)
    text = prompt.lower()
    still = bool(re.search(r"\b(still|motionless|static|at rest|does not move|doesn't move)\b", text))
    stated_rel = bool(_RELATION_WORDS.search(text))
    spec["facts"] = [
        f for f in spec["facts"] if (f["check"] != "static" or still) and (f["check"] != "relation" or stated_rel)
    ]
    spec["facts"] += _generic(spec["facts"])
    spec["short"] = prompt
    return spec


def folder_items(folder: Path) -> list[Item]:
    """Items of a folder of videos: DIR/prompts.jsonl (or captions.jsonl, as `kinema world` writes), one
    {"video": "a.mp4", "prompt": "...", "spec": {...} | "a.json" (optional), "fps": 12 (optional)} a line."""
    folder = Path(folder)
    index = next((folder / f for f in ("prompts.jsonl", "captions.jsonl") if (folder / f).is_file()), None)
    if index is None:
        raise FileNotFoundError(f"{folder} has no prompts.jsonl")
    items: list[Item] = []
    for k, line in enumerate(index.read_text().splitlines()):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            video, prompt = str(row["video"]), str(row["prompt"])
        except (json.JSONDecodeError, KeyError, TypeError):
            raise ValueError(f"{index.name} line {k + 1}: expected JSON with 'video' and 'prompt'") from None
        spec = row.get("spec")
        if isinstance(spec, str):
            spec = json.loads((folder / spec).read_text())
        if isinstance(spec, dict) and not any(f.get("check") == "smooth" for f in spec.get("facts", [])):
            spec["facts"] = [*spec.get("facts", []), *_generic(spec.get("facts", []))]
        item: Item = {"id": Path(video).stem, "prompt": prompt, "spec": spec or spec_from_prompt(prompt)}
        item["video"] = folder / video
        if "fps" in row:
            item["fps"] = float(row["fps"])
        items.append(item)
    if not items:
        raise ValueError(f"{index} lists no videos")
    return items


# ---------------------------------------------------------------------------------------------------
# Sources: an item (and a sample index) -> a video
# ---------------------------------------------------------------------------------------------------


def _scene(item: Item) -> world.Scene:
    return world.scene_from_dict(item["spec"]["scene"])


def ground_truth(item: Item, k: int = 0) -> tuple[np.ndarray, float]:
    """The world's own render of the item's scene (the ceiling)."""
    return world.render(_scene(item), SIZE, SIZE, FPS), FPS


def first_frame(item: Item, k: int = 0) -> tuple[np.ndarray, float]:
    """Baseline: the ground truth's first frame, repeated."""
    frames, fps = ground_truth(item)
    return np.repeat(frames[:1], len(frames), axis=0), fps


def random_drift(item: Item, k: int = 0) -> tuple[np.ndarray, float]:
    """Baseline: the right objects at the right start, each drifting in a random direction at a random
    speed, with a still camera."""
    scene = _scene(item)
    rng = np.random.default_rng([zlib.crc32(item["id"].encode()), k])
    for o in scene.objects:
        o.motion = world.Motion("move", str(rng.choice(list(world.DIRECTIONS))), str(rng.choice(list(world.SPEEDS))))
    scene.camera = "static"
    return world.render(scene, SIZE, SIZE, FPS), FPS


def baseline(name: str) -> Source:
    if name not in BASELINES:
        raise ValueError(f"unknown baseline {name!r}; choose from {', '.join(BASELINES)}")
    return first_frame if name == "first-frame" else random_drift


def from_folder(item: Item, k: int = 0) -> tuple[np.ndarray, float]:
    """The item's video file (read_video raises VideoError on an unreadable file)."""
    from kinema.video_io import read_video

    frames, fps = read_video(item["video"])
    return frames, float(item.get("fps", fps))


def from_model(
    pipe,
    steps: int = 30,
    guidance: float | None = None,
    expand: bool = True,
    seed: int = 0,
    sampler: str = "euler",
    guidance_interval: tuple[float, float] | None = None,
    observed: int | None = None,
    guidance_eta: float | None = None,
) -> Source:
    """Sample the item's prompt with a Pipeline (seed + item index + 1000 k); guidance, its interval and
    eta None: the model's.

    observed (conditioned mode): the pipeline extends the first `observed` frames of the item's ground-truth
    render forward to the render's length (generate(video=..., extend="forward")). It keeps the last 1 + 4k
    of the given frames, so observed = 1 + 4k uses them all (5 or 9 at the shipped model's 4x temporal
    ratio)."""

    def sample(item: Item, k: int) -> tuple[np.ndarray, float]:
        opts = dict(steps=steps, guidance=guidance, guidance_interval=guidance_interval, sampler=sampler)
        opts.update(guidance_eta=guidance_eta, seed=seed + item["index"] + 1000 * k, expand=expand)
        if observed is None:
            scene = item["spec"].get("scene", {})
            seconds = float(scene.get("duration", 2.0)) if isinstance(scene, dict) else 2.0
            video = pipe(item["prompt"], seconds=seconds, **opts)
        else:
            truth, fps = ground_truth(item)
            size = (truth.shape[2], truth.shape[1])
            seconds = (len(truth) - observed) / fps
            video = pipe(
                item["prompt"], video=truth[:observed], extend="forward", seconds=seconds, fps=fps, size=size, **opts
            )
        return video.frames, float(video.fps)

    return sample


# ---------------------------------------------------------------------------------------------------
# Scoring and the report
# ---------------------------------------------------------------------------------------------------


def model_spec(spec: str) -> tuple[Pipeline, float, tuple[float, float], str]:
    """ "FOLDER[@GUIDANCE[@LO:HI]]" (FOLDER "shipped" for the shipped model; left out, the model's own
    guidance and interval) -> (pipeline, guidance, interval, label), for benchmarks comparing settings."""
    from kinema.pipeline import Pipeline, check_guidance, check_guidance_interval

    folder, *rest = spec.split("@")
    if len(rest) > 2:
        raise ValueError(f"model spec {spec!r}: expected FOLDER[@GUIDANCE[@LO:HI]]")
    pipe = Pipeline.from_pretrained(None if folder == "shipped" else folder)
    g = check_guidance(float(rest[0])) if rest and rest[0] else pipe.guidance
    interval = check_guidance_interval(rest[1]) if len(rest) > 1 else pipe.guidance_interval
    label = f"{folder}@{g:g}" + ("" if interval == (0.0, 1.0) else f"@{interval[0]:g}:{interval[1]:g}")
    return pipe, g, interval, label


def sample_videos(source: Source, items: list[Item]) -> list[np.ndarray]:
    """Each item's first video (k = 0) from a source, the items numbered as run_benchmark numbers them, so
    a model source draws the same seeds as `kinema eval` (for benchmarks that look at the videos)."""
    return [source({**item, "index": i}, 0)[0] for i, item in enumerate(items)]


def suite_scores(scores: dict) -> dict[str, float]:
    """A video's score per suite: the mean of its checks in the suite (suites it has no check of are left
    out)."""
    out = {}
    for suite, families in SUITES.items():
        vals = [float(v) for k, v in scores.items() if metrics._family(k) in families and isinstance(v, float)]
        if vals:
            out[suite] = float(np.mean(vals))
    return out


def bootstrap_ci(values: Sequence[float], n_boot: int = 1000, seed: int = 0) -> list[float]:
    """95% percentile bootstrap interval of the mean."""
    if len(values) == 0:
        return [float("nan"), float("nan")]
    v = np.asarray(values, dtype=np.float64)
    rng = np.random.default_rng(seed)
    means = v[rng.integers(0, len(v), (n_boot, len(v)))].mean(1)
    return [float(np.percentile(means, 2.5)), float(np.percentile(means, 97.5))]


def report(results: Sequence[dict]) -> dict:
    """report.json: suite means and intervals, the strict joint score (every fact passes), n, per-check
    means ("checks": each check family, colour/shape/motion, the error rate)."""
    per_suite: dict[str, list[float]] = {s: [] for s in SUITES}
    for r in results:
        for s, v in suite_scores(r).items():
            per_suite[s].append(v)
    joint = [float(r.get("joint", 0.0)) for r in results]
    checks = {k: v for k, v in metrics.summarize(results).items() if k not in ("n", "joint")}
    ci = {s: bootstrap_ci(v) for s, v in per_suite.items() if v}
    ci["strict_joint"] = bootstrap_ci(joint)
    return {
        "suites": {s: float(np.mean(v)) for s, v in per_suite.items() if v},
        "ci95": ci,
        "strict_joint": float(np.mean(joint)) if joint else float("nan"),
        "n": len(results),
        "checks": checks,
    }


def _failing(scores: dict) -> str:
    bad = [k for k, v in scores.items() if v == 0.0 and k not in ("color", "shape", "motion", "joint")]
    return "error: " + str(scores["error"]) if "error" in scores else "fails " + ", ".join(bad[:4])


def run_benchmark(
    items: list[Item], source: Source, out: Path | None = None, seeds: int = 1, desc: str = "eval", worst: int = 8,
    quiet: bool = False, config: dict | None = None, distribution: str | None = None, observed: int | None = None,
) -> dict:  # fmt: skip
    """Make (source) and score every item `seeds` times; write the report files to out. Never raises on a
    bad video: it becomes a failed item (all zeros and the error; rep["errors"] counts the commonest
    errors). With distribution (a prompt set name), also suite G (`distribution_scores`) against
    ground-truth renders of that set. With observed = K (conditioned mode), each video is also taken as a
    continuation of the first K frames of the item's ground-truth render and scored by `conditioned_score`."""
    rows: list[dict] = []
    videos: list[np.ndarray | None] = []
    curves: list[np.ndarray] = []
    conditioned: list[dict[str, float]] = []
    jobs = [(i, k) for i in range(len(items)) for k in range(seeds)]
    for i, k in tqdm(jobs, desc=desc, disable=quiet, file=sys.stderr, dynamic_ncols=True):
        item = {**items[i], "index": i}
        spec = item["spec"]
        frames: np.ndarray | None = None
        if not isinstance(spec, dict):
            scores = metrics.failed_scores({}, "no spec: the prompt names no object the world grammar knows")
        else:
            try:
                frames, fps = source(item, k)
                scores = metrics.score(frames, spec, fps)
            except Exception as e:  # any generator or decoding failure is a failed item
                scores = metrics.failed_scores(spec, f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}")
                frames = None
        if observed is not None:
            cond = {"error_px": float("nan"), "ratio": float("inf"), "score": 0.0}
            if frames is not None and "error" not in scores:
                cond = conditioned_score(frames, item, observed, fps)
            conditioned.append(cond)
        curves.append(
            metrics.presence_curve(frames, spec) if frames is not None and "error" not in scores else np.zeros(0)
        )
        videos.append(frames if frames is not None and "error" not in scores else None)
        rows.append({"id": item["id"], "prompt": item["prompt"], "sample": k, "scores": scores})
    rep = report([r["scores"] for r in rows])
    errors = Counter(str(r["scores"]["error"]) for r in rows if isinstance(r["scores"].get("error"), str))
    rep["errors"] = dict(errors.most_common(5))  # the commonest failures, so a broken source is not just zeros
    if observed is not None:
        cs = [c["score"] for c in conditioned]
        ratio = float(np.median([c["ratio"] for c in conditioned])) if conditioned else float("nan")
        rep["conditioned"] = {
            "observed": observed,
            "score": float(np.mean(cs)),
            "ci95": bootstrap_ci(cs),
            "ratio": ratio,
        }
    if distribution is not None:
        rep["distribution"] = distribution_scores(items, [v for v in videos if v is not None], distribution)
    if out is not None:
        write_report(Path(out), rep, rows, videos, curves, worst, config or {})
    return rep


def distribution_scores(items: list[Item], videos: list[np.ndarray], set_name: str) -> dict[str, float]:
    """Suite G: the Frechet distance between the encoder features of the videos and of ground-truth renders
    of a disjoint prompt set (seeds from 10000), beside the floor (ground-truth renders of the items' own
    prompts against the same reference); and 1-D Wasserstein distances of the tracked speeds and
    accelerations, with their floors. Lower is better; compare a value with its floor."""
    from kinema import fvd

    encoder = fvd.load_encoder()
    reference = [ground_truth(it)[0] for it in prompt_set(set_name, len(items), start=10_000)]
    own = [ground_truth(it)[0] for it in items if isinstance(it.get("spec"), dict) and "scene" in it["spec"]]
    f_ref = fvd.features(encoder, reference)
    out = {"fd": fvd.frechet_distance(fvd.features(encoder, videos), f_ref) if len(videos) > 1 else float("nan")}
    out["fd_floor"] = fvd.frechet_distance(fvd.features(encoder, own), f_ref) if len(own) > 1 else float("nan")
    s_ref = [fvd.trajectory_stats(v) for v in reference]
    for key, val in fvd.trajectory_distances([fvd.trajectory_stats(v) for v in videos], s_ref).items():
        out[f"{key}_w1"] = val
    for key, val in fvd.trajectory_distances([fvd.trajectory_stats(v) for v in own], s_ref).items():
        out[f"{key}_w1_floor"] = val
    return out


def evaluate(
    pipe, split: str = "test", n: int = 200, steps: int = 30, guidance: float | None = None, expand: bool = True,
    seed: int = 0, out: Path | None = None, seeds: int = 1, sampler: str = "euler",
) -> dict:  # fmt: skip
    """The benchmark on a model: one video per prompt of a set (per seed), scored and reported."""
    guidance = pipe.guidance if guidance is None else guidance
    config = {"source": "model", "set": split, "n": n, "steps": steps, "guidance": guidance, "expand": expand}
    config.update(sampler=sampler, guidance_interval=list(pipe.guidance_interval), guidance_eta=pipe.guidance_eta)
    source = from_model(pipe, steps, guidance, expand, seed, sampler)
    return run_benchmark(prompt_set(split, n), source, out, seeds, desc=f"eval {split}", config=config)


# ---------------------------------------------------------------------------------------------------
# Conditioned mode: continuations of the first frames of a ground-truth render
# ---------------------------------------------------------------------------------------------------

NOISE_PX = 0.02  # world units: start position jitter of the noise twin, invisible at 64 px after a pan


def noise_twin(scene: world.Scene, seed: int = 0) -> tuple[world.Scene, float]:
    """The scene with what its first frames cannot pin down perturbed: each object's start moved by up to
    NOISE_PX, and the clock by up to 3% (speeds are only known to about that from a few frames). Returns
    the scene and the fps to render it at (same frame count as the truth)."""
    rng = np.random.default_rng(seed)
    objects = [
        dataclasses.replace(o, x=o.x + rng.uniform(-NOISE_PX, NOISE_PX), y=o.y + rng.uniform(-NOISE_PX, NOISE_PX))
        for o in scene.objects
    ]
    return dataclasses.replace(scene, objects=objects), FPS / float(rng.uniform(0.97, 1.03))


def _paths(frames: np.ndarray, colors: list[str]) -> dict[str, np.ndarray]:
    tracks = metrics.track(frames)
    return {c: tracks[c].position for c in colors if c in tracks}


def continuation_error(frames: np.ndarray, truth: np.ndarray, colors: list[str], start: int) -> float:
    """Mean distance (px at 64 px height) between the objects' positions in two videos from frame `start`
    on; an object seen in one and not the other costs a quarter of the height."""
    n = min(len(frames), len(truth))
    scale = 64 / truth.shape[1]
    a, b = _paths(frames[:n], colors), _paths(truth[:n], colors)
    errs = []
    for c in colors:
        pa = a.get(c, np.full((n, 2), np.nan))[start:n]
        pb = b.get(c, np.full((n, 2), np.nan))[start:n]
        seen_a, seen_b = np.isfinite(pa[:, 0]), np.isfinite(pb[:, 0])
        d = np.where(seen_a & seen_b, np.hypot(*(pa - pb).T) * scale, np.where(seen_a == seen_b, 0.0, 16.0))
        errs.append(d)
    return float(np.mean(np.concatenate(errs))) if errs else 0.0


def conditioned_score(frames: np.ndarray, item: Item, observed: int, fps: float = FPS) -> dict[str, float]:
    """Score a continuation of the first `observed` frames of the item's ground-truth render: its object
    paths against the ground truth's, normalised by the spread between the ground truth and its noise
    twin (noise_twin: what the observed frames cannot pin down). "ratio" is error / spread (1 is as close
    as the noise allows); "score" = min(1, spread / error) in [0, 1]. Frames are resampled to the truth's
    count when the fps differ."""
    scene = _scene(item)
    truth = world.render(scene, SIZE, SIZE, FPS)
    twin_scene, twin_fps = noise_twin(scene, seed=zlib.crc32(item["id"].encode()))
    twin = world.render(twin_scene, SIZE, SIZE, twin_fps, frames=len(truth))
    if abs(fps - FPS) > 1e-6 and len(frames) > 1:  # nearest frame in time
        idx = np.minimum(np.round(np.arange(len(truth)) * fps / FPS).astype(int), len(frames) - 1)
        frames = frames[idx]
    colors = sorted({o.color for o in scene.objects})
    err = continuation_error(frames, truth, colors, observed)
    spread = max(continuation_error(twin, truth, colors, observed), 0.25)
    return {"error_px": err, "spread_px": spread, "ratio": err / spread, "score": min(1.0, spread / max(err, 1e-9))}


# ---------------------------------------------------------------------------------------------------
# Files: report.json, items.jsonl, run.json, report.html with inline SVG plots and contact sheets
# ---------------------------------------------------------------------------------------------------


def contact_sheet(
    videos: list[np.ndarray], labels: list[str], path: Path | None = None, columns: int = 6
) -> Image.Image:
    """One row per video (columns frames evenly spaced), its label above; saved as PNG if a path is given."""
    rows = []
    for frames, label in zip(videos, labels, strict=True):
        idx = np.linspace(0, len(frames) - 1, columns).round().astype(int)
        strip = np.concatenate([frames[i] for i in idx], axis=1)
        h, w = strip.shape[:2]
        scale = max(1, 384 // w) if w < 384 else 1
        img = Image.fromarray(strip).resize((w * scale, h * scale), Image.NEAREST)
        canvas = Image.new("RGB", (img.width, img.height + 14), (255, 255, 255))
        canvas.paste(img, (0, 14))
        ImageDraw.Draw(canvas).text((2, 1), label[:110], fill=(0, 0, 0))
        rows.append(np.asarray(canvas))
    width = max(r.shape[1] for r in rows)
    rows = [np.pad(r, ((0, 0), (0, width - r.shape[1]), (0, 0)), constant_values=255) for r in rows]
    sheet = Image.fromarray(np.concatenate(rows, axis=0))
    if path is not None:
        sheet.save(path)
    return sheet


def _svg_bars(rep: dict) -> str:
    """A horizontal bar per suite (and the strict joint score) with its 95% interval."""
    names = [*rep["suites"], "strict_joint"]
    values = [*rep["suites"].values(), rep["strict_joint"]]
    left, width, row = 190, 360, 24
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{left + width + 60}" height="{row * len(names) + 30}">']
    for j, (name, v) in enumerate(zip(names, values, strict=True)):
        y = 10 + j * row
        lo, hi = rep["ci95"].get(name, [v, v])
        parts += [
            f'<text x="{left - 6}" y="{y + 14}" text-anchor="end" font-size="12">{html.escape(name)}</text>',
            f'<rect x="{left}" y="{y + 3}" width="{width * v:.1f}" height="14" fill="#4c78a8"/>',
            f'<line x1="{left + width * lo:.1f}" x2="{left + width * hi:.1f}" y1="{y + 10}" y2="{y + 10}" '
            'stroke="black" stroke-width="2"/>',
            f'<text x="{left + width + 6}" y="{y + 14}" font-size="12">{v:.3f}</text>',
        ]
    axis_y = 10 + row * len(names)
    for t in (0, 0.5, 1):
        parts.append(f'<text x="{left + width * t}" y="{axis_y + 12}" font-size="10" text-anchor="middle">{t:g}</text>')
    return "".join(parts) + "</svg>"


def _svg_curve(curves: list[np.ndarray]) -> str:
    """Mean per-frame presence (the fraction of the spec's objects seen) against frame index: drift."""
    curves = [c for c in curves if len(c)]
    if not curves:
        return "<p>no scored videos</p>"
    n = max(len(c) for c in curves)
    mean = np.array([np.mean([c[t] for c in curves if len(c) > t]) for t in range(n)])
    w, h, pad = 420, 160, 30
    xs = pad + (w - 2 * pad) * np.arange(n) / max(n - 1, 1)
    ys = h - pad - (h - 2 * pad) * mean
    path = " ".join(f"{x:.1f},{y:.1f}" for x, y in zip(xs, ys, strict=True))
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}">'
        f'<rect x="{pad}" y="{pad}" width="{w - 2 * pad}" height="{h - 2 * pad}" fill="none" stroke="#999"/>'
        f'<polyline points="{path}" fill="none" stroke="#e45756" stroke-width="2"/>'
        f'<text x="{pad}" y="{pad - 6}" font-size="11">1.0</text><text x="{pad}" y="{h - pad + 14}" font-size="11">'
        f'frame 0 (0.0)</text><text x="{w - pad}" y="{h - pad + 14}" font-size="11" text-anchor="end">frame {n - 1}'
        "</text></svg>"
    )


def _png_data(img: Image.Image) -> str:
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def write_report(
    out: Path, rep: dict, rows: list[dict], videos: list[np.ndarray | None], curves: list[np.ndarray], worst: int,
    config: dict,
) -> None:  # fmt: skip
    out.mkdir(parents=True, exist_ok=True)
    (out / "report.json").write_text(json.dumps(rep, indent=1))
    (out / "run.json").write_text(json.dumps(config, indent=1))
    (out / "items.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    order = sorted(range(len(rows)), key=lambda i: (rows[i]["scores"].get("joint", 0.0), _mean_facts(rows[i])))
    bad = [i for i in order if rows[i]["scores"].get("joint", 0.0) < 1.0][:worst]
    shown = [i for i in bad if videos[i] is not None]
    sheet = ""
    if shown:
        labels = [f"{rows[i]['prompt']} | {_failing(rows[i]['scores'])}" for i in shown]
        img = contact_sheet([videos[i] for i in shown], labels, out / "worst.png")  # type: ignore[misc]
        sheet = f'<img src="{_png_data(img)}" alt="worst failures">'
    errors = [rows[i] for i in bad if videos[i] is None]
    table = "".join(
        f"<tr><td>{html.escape(k)}</td><td>{v:.3f}</td><td>{_ci_text(rep, k)}</td></tr>"
        for k, v in [*rep["suites"].items(), ("strict_joint", rep["strict_joint"])]
    )
    checks = "".join(f"<tr><td>{html.escape(k)}</td><td>{v:.3f}</td></tr>" for k, v in rep["checks"].items())
    dist = "".join(
        f"<tr><td>{html.escape(k)}</td><td>{v:.4g}</td></tr>" for k, v in rep.get("distribution", {}).items()
    )
    err = "".join(f"<li>{html.escape(r['id'])}: {html.escape(str(r['scores'].get('error')))}</li>" for r in errors)
    page = f"""<!doctype html><html><head><meta charset="utf-8"><title>kinema World benchmark</title>
<style>body{{font-family:sans-serif;margin:2em;max-width:70em}}td{{padding:2px 10px}}</style></head><body>
<h1>kinema World benchmark</h1><p>{html.escape(json.dumps(config))}; n = {rep["n"]}</p>
<h2>Suites (mean, 95% bootstrap interval)</h2>{_svg_bars(rep)}
<table><tr><th>suite</th><th>mean</th><th>95% CI</th></tr>{table}</table>
<h2>Drift: fraction of the prompt's objects seen, by frame</h2>{_svg_curve(curves)}
<h2>Per-check means</h2><table>{checks}</table>
<h2>Conditioned mode</h2><p>{html.escape(json.dumps(rep.get("conditioned", "not run")))}</p>
<h2>G distribution (lower is better; each beside its ground-truth floor)</h2><table>{dist}</table>
<h2>Worst failures</h2>{sheet or "<p>none</p>"}<ul>{err}</ul></body></html>
"""
    (out / "report.html").write_text(page)


def _ci_text(rep: dict, key: str) -> str:
    lo, hi = rep["ci95"].get(key, [float("nan")] * 2)
    return f"[{lo:.3f}, {hi:.3f}]"


def _mean_facts(row: dict) -> float:
    vals = [v for k, v in row["scores"].items() if ":" in k and isinstance(v, float)]
    return float(np.mean(vals)) if vals else 0.0
