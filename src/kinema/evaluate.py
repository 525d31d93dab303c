"""Prompt-adherence evaluation on the procedural world: does the video show what the prompt asks for?

    kinema eval --set test --n 200 --out runs/eval            # the shipped model
    kinema eval --set holdout --n 200 --no-expand --out ...    # compositional hold-outs, raw prompts

For each held-out scene the model gets the scene's short prompt (as a user would type it); the video is
scored against the facts the prompt states (metrics.score): colour present, shape right, motion as named
(direction, falling, spinning, staying still), signed relations the prompt names, camera moves. Reported
as rates with 95% bootstrap intervals, plus a contact sheet of the worst items.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw
from tqdm import tqdm

from kinema import metrics, world

HEADLINE = ("color", "shape", "motion", "joint")


def prompt_set(split: str, n: int, start: int = 0, duration: float = 2.0) -> list[dict]:
    """n (prompt, spec) items of a split. Relation facts are kept only when the prompt states them."""
    items = []
    for seed in range(start, start + n):
        scene = world.sample_scene(seed, split, duration=duration)
        spec = world.scene_spec(scene)
        prompt = spec["short"]
        stated = bool(re.search(r"\b(left of|right of|above|below)\b", prompt))
        spec["facts"] = [f for f in spec["facts"] if f["check"] != "relation" or stated]
        items.append({"seed": seed, "prompt": prompt, "spec": spec})
    return items


def bootstrap_ci(values: list[float], n_boot: int = 1000, seed: int = 0) -> list[float]:
    """95% percentile bootstrap interval of the mean."""
    if not values:
        return [float("nan"), float("nan")]
    v = np.asarray(values, dtype=np.float64)
    rng = np.random.default_rng(seed)
    means = v[rng.integers(0, len(v), (n_boot, len(v)))].mean(1)
    return [float(np.percentile(means, 2.5)), float(np.percentile(means, 97.5))]


def report(results: list[dict[str, float]]) -> dict:
    """Means and intervals of every score key over the items that have it."""
    keys = sorted({k for r in results for k in r if isinstance(r[k], int | float) and ":" not in k})
    rates, ci = {}, {}
    for k in keys:
        vals = [float(r[k]) for r in results if k in r and isinstance(r[k], int | float)]
        rates[k] = float(np.mean(vals))
        ci[k] = bootstrap_ci(vals)
    return {"n": len(results), "rates": rates, "ci95": ci}


def contact_sheet(videos: list[np.ndarray], labels: list[str], path: Path, columns: int = 6) -> Path:
    """One row per video (columns frames evenly spaced), its label above, saved as PNG."""
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
    Image.fromarray(np.concatenate(rows, axis=0)).save(path)
    return Path(path)


def evaluate(
    pipe,
    split: str = "test",
    n: int = 200,
    steps: int = 30,
    guidance: float = 5.0,
    expand: bool = True,
    seed: int = 0,
    out: Path | None = None,
    worst: int = 8,
) -> dict:
    """Generate one video per held-out prompt, score it, and write report.json (+ worst.png) to out."""
    items = prompt_set(split, n)
    results, videos = [], []
    fps = float(pipe.meta.get("fps", 12))
    for item in tqdm(items, desc=f"eval {split}", dynamic_ncols=True):
        video = pipe(item["prompt"], steps=steps, guidance=guidance, seed=seed + item["seed"], expand=expand)
        scores = metrics.score(video.frames, item["spec"], fps)
        results.append(scores)
        videos.append(video.frames)
    rep = {"set": split, "expand": expand, "steps": steps, "guidance": guidance, **report(results)}
    if out is not None:
        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        per_item = [
            {"seed": it["seed"], "prompt": it["prompt"], "scores": r} for it, r in zip(items, results, strict=True)
        ]
        (out / "report.json").write_text(json.dumps({**rep, "items": per_item}, indent=1, default=float))
        order = np.argsort([r.get("joint", 0.0) for r in results], kind="stable")[:worst]
        contact_sheet([videos[i] for i in order], [items[i]["prompt"] for i in order], out / "worst.png")
        best = [i for i in range(len(results)) if results[i].get("joint", 0.0) == 1.0][:worst]
        if best:
            contact_sheet([videos[i] for i in best], [items[i]["prompt"] for i in best], out / "passing.png")
    return rep
