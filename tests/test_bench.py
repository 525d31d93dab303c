"""Tests of the World benchmark (kinema.evaluate, kinema eval): prompt sets, probes, the corruptions that
tests/test_metrics.py does not cover, failed items, and the command end to end."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from kinema import evaluate, metrics, world
from kinema.cli import app
from kinema.video_io import write_video

FPS = evaluate.FPS


def _render(scene: world.Scene) -> np.ndarray:
    return world.render(scene, evaluate.SIZE, evaluate.SIZE, FPS)


@pytest.fixture(scope="module")
def test_items() -> list[dict]:
    return evaluate.prompt_set("test", 60)


@pytest.fixture(scope="module")
def probe_items() -> list[dict]:
    return evaluate.prompt_set("probes", 24)


def _families(rep: dict) -> dict[str, float]:
    return {k: v for k, v in rep["checks"].items() if k not in ("error", "acausal")}  # rates: lower is better


def test_ground_truth_passes_every_check(test_items: list[dict], probe_items: list[dict]) -> None:
    for items in (test_items, probe_items):
        rep = evaluate.run_benchmark(items, evaluate.ground_truth, quiet=True)
        assert rep["checks"]["error"] == 0.0
        for key, value in _families(rep).items():
            assert value >= 0.98, (key, value)
        assert all(v >= 0.98 for v in rep["suites"].values()), rep["suites"]
    families = {metrics._family(k) for it in probe_items for k in map(metrics._fact_key, it["spec"]["facts"])}
    assert {"permanence", "return", "camera", "smooth", "collision", "cause"} <= families


def test_frame_shuffle_fails_smoothness(test_items: list[dict]) -> None:
    rng = np.random.default_rng(0)
    passed = []
    for item in test_items:
        if not any(f["check"] in ("direction", "gravity") for f in item["spec"]["facts"]):
            continue
        frames, _ = evaluate.ground_truth(item)
        assert metrics.score(frames, item["spec"], FPS)["smooth"] == 1.0
        r = metrics.score(frames[rng.permutation(len(frames))], item["spec"], FPS)
        passed.append((r["smooth"], min(r["smooth"], r["instances"])))
    assert len(passed) >= 20
    smooth, either = np.mean(passed, axis=0)
    assert smooth <= 0.15 and either <= 0.1, (smooth, either)


def _splice(scene: world.Scene, changed: world.Scene, at: int) -> np.ndarray:
    """The scene's render up to frame `at`, then the changed scene's."""
    a, b = _render(scene), _render(changed)
    return np.concatenate([a[:at], b[at:]])


def _occluder_probes(n: int) -> list[tuple[world.Scene, dict]]:
    items = evaluate.prompt_set("probe-occluder", n)
    return [(world.scene_from_dict(it["spec"]["scene"]), it["spec"]) for it in items]


def test_colour_swap_and_deletion_behind_the_occluder_fail_permanence() -> None:
    hidden_at = round(0.9 * FPS)  # probe objects are behind the bar at t = 0.9 s
    for scene, spec in _occluder_probes(6):
        unused = next(c for c in world.HUES if c not in {o.color for o in scene.objects})
        swapped = dataclasses.replace(scene, objects=[dataclasses.replace(scene.objects[0], color=unused)])
        swapped.objects += scene.objects[1:]
        deleted = dataclasses.replace(scene, objects=scene.objects[1:])
        assert metrics.score(_render(scene), spec, FPS)["permanence:0"] == 1.0
        for changed in (swapped, deleted):
            r = metrics.score(_splice(scene, changed, hidden_at), spec, FPS)
            assert r["permanence:0"] == 0.0 and r["joint"] == 0.0


def test_object_that_never_returns_fails() -> None:
    for item in evaluate.prompt_set("probe-offscreen", 3):
        scene = world.scene_from_dict(item["spec"]["scene"])
        gone = dataclasses.replace(scene, objects=[])
        frames = _splice(scene, gone, round(scene.duration * FPS / 2))  # the camera is farthest away
        assert metrics.score(_render(scene), item["spec"], FPS)["return:0"] == 1.0
        assert metrics.score(frames, item["spec"], FPS)["return:0"] == 0.0


def test_inverted_compound_pan_fails_camera() -> None:
    for item in evaluate.prompt_set("probe-camera", 8):
        frames, _ = evaluate.ground_truth(item)
        move = item["spec"]["scene"]["camera"]
        assert metrics.score(frames, item["spec"], FPS)["camera"] == 1.0
        assert metrics.score(frames[:, :, ::-1], item["spec"], FPS)["camera"] == 0.0  # pans the other way
        if move.endswith("-stop"):  # time reversal: still, then the pan
            assert metrics.score(frames[::-1], item["spec"], FPS)["camera"] == 0.0


def test_mirror_pairs_and_order_blind_rate() -> None:
    items = evaluate.prompt_set("mirror", 8)
    for a, b in zip(items[::2], items[1::2], strict=True):
        assert a["pair"] == b["pair"]
        ra = [f["relation"] for f in a["spec"]["facts"] if f["check"] == "relation" and not f.get("order_blind")]
        rb = [f["relation"] for f in b["spec"]["facts"] if f["check"] == "relation" and not f.get("order_blind")]
        flip = {"left of": "right of", "right of": "left of", "above": "above", "below": "below"}
        assert [flip[r] for r in ra] == rb
        # a mirrored video: the signed relation fails, the order-blind one passes and is not part of joint
        frames, _ = evaluate.ground_truth(b)
        r = metrics.score(frames, a["spec"], FPS)
        keys = [metrics._fact_key(f) for f in a["spec"]["facts"] if f.get("relation") in ("left of", "right of")]
        signed = [k for k in keys if not k.startswith("relation_blind")]
        assert all(r[k] == 0.0 for k in signed) and all(
            r[k.replace("relation", "relation_blind")] == 1.0 for k in signed
        )


def _write_folder(folder: Path, n: int, with_spec: bool) -> list[dict]:
    folder.mkdir(parents=True, exist_ok=True)
    items = evaluate.prompt_set("test", n, start=100)
    lines = []
    for it in items:
        frames, fps = evaluate.ground_truth(it)
        write_video(frames, folder / f"{it['id']}.mp4", fps)
        row = {"video": f"{it['id']}.mp4", "prompt": it["prompt"]}
        lines.append(json.dumps({**row, "spec": it["spec"]} if with_spec else row))
    (folder / "prompts.jsonl").write_text("\n".join(lines) + "\n")
    return items


def test_video_folder_scores_like_ground_truth(tmp_path: Path) -> None:
    _write_folder(tmp_path / "spec", 8, with_spec=True)
    rep = evaluate.run_benchmark(evaluate.folder_items(tmp_path / "spec"), evaluate.from_folder, quiet=True)
    assert rep["n"] == 8 and rep["checks"]["error"] == 0.0 and rep["strict_joint"] >= 7 / 8
    _write_folder(tmp_path / "parsed", 8, with_spec=False)  # specs parsed from the prompts
    items = evaluate.folder_items(tmp_path / "parsed")
    assert all(isinstance(it["spec"], dict) for it in items)
    rep = evaluate.run_benchmark(items, evaluate.from_folder, quiet=True)
    assert rep["checks"]["error"] == 0.0 and rep["strict_joint"] >= 6 / 8


def test_unreadable_and_empty_videos_are_failed_items(tmp_path: Path) -> None:
    (tmp_path / "empty.mp4").write_bytes(b"")
    (tmp_path / "junk.mp4").write_bytes(b"not a video at all" * 10)
    rows = [
        {"video": "empty.mp4", "prompt": "a red circle moves to the left"},
        {"video": "junk.mp4", "prompt": "a blue square spins clockwise"},
        {"video": "missing.mp4", "prompt": "a green triangle falls and bounces"},
        {"video": "junk.mp4", "prompt": "something the grammar cannot read"},
    ]
    (tmp_path / "prompts.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = tmp_path / "out"
    rep = evaluate.run_benchmark(evaluate.folder_items(tmp_path), evaluate.from_folder, out, quiet=True)
    assert rep["n"] == 4 and rep["strict_joint"] == 0.0 and rep["checks"]["error"] == 1.0
    assert sum(rep["errors"].values()) == 4 and any("no spec" in m for m in rep["errors"])
    items = [json.loads(line) for line in (out / "items.jsonl").read_text().splitlines()]
    assert all(isinstance(it["scores"]["error"], str) for it in items)
    assert all(v == 0.0 for it in items for k, v in it["scores"].items() if k != "error")
    assert (out / "report.html").is_file()


def test_eval_command_says_why_videos_failed(tmp_path: Path) -> None:
    (tmp_path / "junk.mp4").write_bytes(b"not a video at all" * 10)
    row = {"video": "junk.mp4", "prompt": "a blue square spins clockwise"}
    (tmp_path / "prompts.jsonl").write_text(json.dumps(row) + "\n")
    args = ["eval", "--videos", str(tmp_path), "--no-distribution", "--out", str(tmp_path / "out"), "-q"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "warning: 1 of 1 videos failed: " in result.output
    assert json.loads((tmp_path / "out" / "report.json").read_text())["checks"]["error"] == 1.0


def test_eval_command_ground_truth_end_to_end(tmp_path: Path) -> None:
    out = tmp_path / "gt"
    result = CliRunner().invoke(
        app, ["eval", "--ground-truth", "--n", "8", "--no-distribution", "--out", str(out), "-q"]
    )
    assert result.exit_code == 0, result.output
    rep = json.loads((out / "report.json").read_text())
    assert set(rep) == {"suites", "ci95", "strict_joint", "n", "checks", "errors"}
    assert rep["n"] == 8 and rep["strict_joint"] == 1.0 and rep["errors"] == {}
    assert set(rep["suites"]) <= set(evaluate.SUITES) and "strict_joint" in rep["ci95"]
    assert all(len(rep["ci95"][k]) == 2 for k in rep["suites"])
    page = (out / "report.html").read_text()
    assert page.count("<svg") >= 2 and "strict_joint" in page


def test_eval_command_baseline_and_bad_input(tmp_path: Path) -> None:
    runner = CliRunner()
    out = tmp_path / "ff"
    args = ["eval", "--baseline", "first-frame", "--set", "probes", "--n", "4", "--no-distribution", "--out", str(out)]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    rep = json.loads((out / "report.json").read_text())
    assert rep["strict_joint"] == 0.0 and (out / "worst.png").is_file()
    for args in (
        ["--ground-truth", "--baseline", "first-frame"],
        ["--ground-truth", "--set", "nope"],
        ["--baseline", "nope"],
        ["--videos", str(tmp_path / "missing")],
        ["--sampler", "rk4"],
    ):
        result = runner.invoke(app, ["eval", *args, "--n", "2", "--out", str(tmp_path / "x")])
        assert result.exit_code == 2 and "error:" in result.output, (args, result.output)


def test_conditioned_mode_scores_continuations() -> None:
    movers = [
        it for it in evaluate.prompt_set("test", 20) if any(f["check"] == "direction" for f in it["spec"]["facts"])
    ]
    for item in movers[:4]:
        truth, _ = evaluate.ground_truth(item)
        frozen = np.concatenate([truth[:6], np.repeat(truth[5:6], len(truth) - 6, axis=0)])
        good = evaluate.conditioned_score(truth, item, observed=6)
        assert good["score"] == 1.0 and good["error_px"] == 0.0 and good["spread_px"] > 0
        assert evaluate.conditioned_score(frozen, item, observed=6)["score"] < 0.5


def test_eval_command_conditioned(tmp_path: Path) -> None:
    out = tmp_path / "cond"
    args = ["eval", "--ground-truth", "--conditioned", "6", "--n", "4", "--no-distribution", "--out", str(out), "-q"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    rep = json.loads((out / "report.json").read_text())
    assert rep["conditioned"]["score"] == 1.0 and rep["conditioned"]["observed"] == 6
    result = CliRunner().invoke(app, ["eval", "--ground-truth", "--conditioned", "0", "--out", str(tmp_path / "m")])
    assert result.exit_code == 2 and "K >= 1" in result.output


def test_model_continues_ground_truth_in_conditioned_mode(debug_pipe) -> None:
    """The model source of conditioned mode extends the observed frames of each render to its full length."""
    items = evaluate.prompt_set("test", 2)
    source = evaluate.from_model(debug_pipe, observed=9, steps=1, guidance=1.0, expand=False)
    rep = evaluate.run_benchmark(items, source, quiet=True, observed=9)
    truth, _ = evaluate.ground_truth({**items[0], "index": 0})
    frames, fps = source({**items[0], "index": 0}, 0)
    assert frames.shape == truth.shape and fps == FPS
    assert rep["n"] == 2 and 0.0 <= rep["conditioned"]["score"] <= 1.0 and rep["conditioned"]["observed"] == 9


def test_model_source_passes_the_sampler(debug_pipe) -> None:
    item = {**evaluate.prompt_set("test", 1)[0], "index": 0}
    kw = dict(steps=2, guidance=1.0, expand=False)
    euler, _ = evaluate.from_model(debug_pipe, **kw)(item, 0)
    heun, _ = evaluate.from_model(debug_pipe, sampler="heun", **kw)(item, 0)
    seconds = float(item["spec"]["scene"]["duration"])
    direct = debug_pipe(item["prompt"], sampler="heun", seed=0, seconds=seconds, **kw).frames
    assert np.array_equal(direct, heun) and not np.array_equal(euler, heun)


def test_distribution_suite_g() -> None:
    from kinema import fvd

    rng = np.random.default_rng(0)
    a = rng.normal(size=(200, 4))
    assert abs(fvd.frechet_distance(a, a)) < 1e-6
    assert fvd.frechet_distance(a, a + 1.0) == pytest.approx(4.0, abs=1e-6)
    assert fvd.encoder_available()
    items = evaluate.prompt_set("test", 6)
    videos = [evaluate.first_frame(it)[0] for it in items]
    assert fvd.features(fvd.load_encoder(), videos).shape == (6, fvd.EncoderConfig().features)
    g = evaluate.distribution_scores(items, videos, "test")
    assert set(g) == {"fd", "fd_floor", "speed_w1", "accel_w1", "speed_w1_floor", "accel_w1_floor"}
    assert all(np.isfinite(v) and v >= 0 for v in g.values())
    assert g["speed_w1"] > g["speed_w1_floor"]  # a frozen video has no motion at all


def test_noise_and_blur_move_the_new_checks_little(test_items: list[dict], probe_items: list[dict]) -> None:
    from scipy import ndimage

    rng = np.random.default_rng(0)
    runs: dict[str, list[dict]] = {"clean": [], "noise": [], "blur": []}
    for item in test_items[:30] + probe_items[:12]:
        frames, fps = evaluate.ground_truth(item)
        noisy = np.clip(frames + rng.normal(0, 0.08 * 255, frames.shape), 0, 255).round().astype(np.uint8)
        blurred = ndimage.gaussian_filter(frames.astype(np.float32), sigma=(0, 1, 1, 0)).round().astype(np.uint8)
        for name, video in (("clean", frames), ("noise", noisy), ("blur", blurred)):
            runs[name].append(metrics.score(video, item["spec"], fps))
    clean = metrics.summarize(runs["clean"])
    for name in ("noise", "blur"):
        other = metrics.summarize(runs[name])
        for key in ("moves", "smooth", "instances", "permanence", "return", "camera", "joint"):
            assert abs(clean[key] - other[key]) < 0.05, (name, key, clean[key], other[key])


@pytest.mark.parametrize("kind", ["collide", "touch"])
def test_interaction_probes_and_their_corruptions(kind: str) -> None:
    """Ground truth passes the collision and cause-and-effect checks; the corruptions fail them: a collision
    with no exchange of velocities, and an effect (the colour change) half a second before the contact."""
    for seed in range(4):
        item = evaluate.prompt_set(f"probe-{kind}", 1, start=seed)[0]
        scene = world.scene_from_dict(item["spec"]["scene"])
        key = "collision:0-1" if kind == "collide" else "cause:1"
        clean = metrics.score(_render(scene), item["spec"], FPS)
        assert clean["joint"] == 1.0 and clean[key] == 1.0, clean
        if kind == "collide":
            scene.objects[1].after = scene.objects[1].motion  # b ignores the hit
        else:
            scene.objects[1].t_after -= 0.5  # b changes colour before a reaches it
        bad = metrics.score(_render(scene), item["spec"], FPS)
        assert bad[key] == 0.0, bad
        if kind == "touch":
            assert bad["acausal:1"] == 1.0 and clean["acausal:1"] == 0.0


def test_out_of_range_sets() -> None:
    """Each range set leaves the trained range (speeds, counts, drop heights) and its ground truth passes."""
    for name in evaluate.RANGE_SETS:
        items = evaluate.prompt_set(name, 10)
        scenes = [world.scene_from_dict(it["spec"]["scene"]) for it in items]
        if name == "range-speed":
            assert all(any(o.motion.speed in world.RANGE_SPEEDS for o in s.objects) for s in scenes)
        elif name == "range-count":
            assert all(len(s.objects) in (4, 5) for s in scenes)
        else:
            assert all(not (0.12 + o.radius <= o.y <= 0.4) for s in scenes for o in s.objects)
        joint = [metrics.score(_render(s), it["spec"], FPS)["joint"] for s, it in zip(scenes, items, strict=True)]
        assert np.mean(joint) >= 0.9, (name, joint)
