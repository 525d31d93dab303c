"""Conditioned generation (issue 4) on the debug preset: random weights, so these test mechanics (frame
counts, sizes, which frames are kept, bounded windows, errors), not quality.

The debug model is trained at 9 frames, 8 fps: a window of 3 latent frames, so anything longer than
1 s is generated in windows."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from kinema import Pipeline, flow, world
from kinema.cli import app
from kinema.conditioning import fit_frames, latent_index
from kinema.data import to_tensor, to_uint8
from kinema.expand import expand_shots
from kinema.pipeline import KinemaError, window_plan
from kinema.video_io import read_video, write_video

KW = dict(steps=2, size=(64, 64))


@pytest.fixture(scope="module")
def clip() -> np.ndarray:
    """13 frames (1.5 s at 8 fps) of a world scene at 64x64."""
    return world.render(world.sample_scene(3), 64, 64, 8)[:13]


def roundtrip(pipe: Pipeline, frames: np.ndarray) -> np.ndarray:
    """vae.decode(vae.encode(frames)) as uint8: what a kept reference decodes to."""
    return to_uint8(pipe.vae.decode(pipe.vae.encode(to_tensor(frames)[None]))[0])


def test_conditioned_holds_given_frames_at_t0() -> None:
    seen = {}

    def model_fn(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        seen["t"] = t.clone()
        return torch.randn_like(x)

    clean = torch.randn(1, 2, 4, 3, 3)
    given = torch.tensor([True, False, False, True])
    x = torch.where(given.view(1, 1, -1, 1, 1), clean, torch.randn(1, 2, 4, 3, 3))
    for sampler in flow.SAMPLERS.values():
        z = sampler(flow.conditioned(model_fn, clean, given), x, flow.timestep_schedule(4))
        assert torch.equal(z[:, :, given], clean[:, :, given]) and not torch.equal(z[:, :, 1], x[:, :, 1])
    assert seen["t"].shape == (1, 4) and torch.all(seen["t"][:, given] == 0) and torch.all(seen["t"][:, ~given] > 0)


def test_fit_frames_covers_and_center_crops() -> None:
    wide = np.zeros((1, 60, 120, 3), np.uint8)
    wide[:, :, 30:90] = 255  # the middle half survives a center crop to a square
    out = fit_frames(wide, (64, 64))
    assert out.shape == (1, 64, 64, 3) and out[0, 32, 2].min() > 200
    assert fit_frames(wide, (120, 60)) is wide  # same size: untouched, bit for bit


def test_image_to_video_starts_on_the_image(debug_pipe: Pipeline, clip: np.ndarray, tmp_path: Path) -> None:
    path = tmp_path / "still.jpg"
    Image.fromarray(clip[0]).save(path, quality=95)
    video = debug_pipe("a red circle falls", image=path, seconds=1.5, **KW)
    assert video.frames.shape == (13, 64, 64, 3) and video.info["windows"] == 2
    image = np.array(Image.open(path).convert("RGB"))
    assert np.array_equal(video.frames[0], image)  # the image itself; the model was given its latent


def test_cfg_branches_see_the_same_reference(debug_pipe: Pipeline, clip: np.ndarray) -> None:
    seen = []
    hook = debug_pipe.dit.register_forward_pre_hook(lambda m, a: seen.append((a[0].clone(), a[1].clone())))
    try:
        debug_pipe("a red circle falls", image=clip[0], seconds=1, steps=2, guidance=4.0)
    finally:
        hook.remove()
    z0 = debug_pipe.vae.encode(to_tensor(clip[:1])[None])[0, :, 0]
    assert len(seen) == 2
    for x, t in seen:  # (cond, uncond) batch: text differs, the reference frame does not
        assert x.shape[0] == 2 and torch.allclose(x[0, :, 0], z0) and torch.allclose(x[1, :, 0], z0)
        assert torch.all(t[:, 0] == 0) and torch.all(t[:, 1:] > 0)


def test_other_aspect_and_frame_rate(debug_pipe: Pipeline, clip: np.ndarray) -> None:
    video = debug_pipe("a red circle falls", image=clip[0], seconds=1, fps=12, steps=1, size=(112, 64))
    assert video.frames.shape == (13, 64, 112, 3)


def test_extend_forward_keeps_the_input(debug_pipe: Pipeline, clip: np.ndarray) -> None:
    video = debug_pipe("a red circle falls", video=clip[:11], seconds=1, **KW)  # 11 frames: trimmed to 9
    assert len(video.frames) == 9 + 8 and np.array_equal(video.frames[:9], clip[2:11])


def test_extend_backward_puts_the_input_at_the_end(debug_pipe: Pipeline, clip: np.ndarray, tmp_path: Path) -> None:
    write_video(clip, tmp_path / "in.mp4", 8)
    source = read_video(tmp_path / "in.mp4")[0]
    video = debug_pipe("a red circle falls", video=tmp_path / "in.mp4", extend="backward", seconds=1.5, **KW)
    assert len(video.frames) == 12 + 13 and (len(video.frames) - 1) % 4 == 0
    assert np.array_equal(video.frames[-13:], source)


def test_keyframes_first_and_last(debug_pipe: Pipeline, clip: np.ndarray) -> None:
    video = debug_pipe("a red circle falls", keyframes=[(clip[0], 0.0), (clip[12], 1.5)], **KW)
    assert video.frames.shape == (13, 64, 64, 3)  # the clip ends at the last keyframe
    assert np.array_equal(video.frames[0], clip[0]) and np.array_equal(video.frames[12], clip[12])
    assert latent_index(12, 4) == 3 and latent_index(0, 4) == 0 and latent_index(1, 4) == 1


def test_fill_keeps_the_frames_outside_the_gap(debug_pipe: Pipeline, clip: np.ndarray) -> None:
    video = debug_pipe("a red circle falls", fill=clip, missing=(0.6, 1.0), **KW)  # frames 5..7: latent 2
    assert video.frames.shape == clip.shape
    # frames 0-4 and 9-12 are kept: bit-exact beyond a 4-frame dissolve at each edge of frames 5-8 (latent 2)
    assert np.array_equal(video.frames[0], clip[0])
    off = [np.abs(video.frames[f].astype(int) - clip[f]).mean() for f in range(len(clip))]
    assert off[1] < off[4] and off[12] < off[9]  # the dissolve: nearer the regenerated frames, more decoded
    assert np.abs(video.frames[5:9].astype(int) - roundtrip(debug_pipe, clip)[5:9]).mean() > 1


def test_keep_frames_pins_inputs_and_fades_their_error_into_neighbours() -> None:
    from kinema.pipeline import CARRY, keep_frames

    assert CARRY == 8  # two latent frames; the values below are in ninths of the error
    out = np.full((12, 2, 2, 3), 100, np.uint8)  # decoded
    src = np.full((12, 2, 2, 3), 118, np.uint8)  # the input: 18 levels above its decoding
    kept = np.zeros(12, bool)
    kept[[0, 11]] = True  # e.g. first and last keyframes
    got = keep_frames(out, src, kept)[:, 0, 0, 0].tolist()
    # 8/9 and 7/9 of the error next to each; in the middle the two shares add up to 7/9 (no dip, no overshoot)
    assert got == [118, 116, 114, 114, 114, 114, 114, 114, 114, 114, 116, 118]
    kept[:] = False
    kept[5] = True  # both sides of one kept frame: 8/9 ... 1/9 of the error over eight frames, then nothing
    got = keep_frames(out, src, kept)[:, 0, 0, 0].tolist()
    assert got == [108, 110, 112, 114, 116, 118, 116, 114, 112, 110, 108, 106]
    kept[7] = True
    src[7] = 154
    assert keep_frames(out, src, kept)[6, 0, 0, 0] == 136  # between errors 18 and 54: their mean, no overshoot


def test_dissolve_kept_blends_the_edges_of_an_infill() -> None:
    from kinema.pipeline import dissolve_kept

    out = np.full((12, 2, 2, 3), 100, np.uint8)  # decoded
    src = np.full((12, 2, 2, 3), 150, np.uint8)  # the input
    kept = np.ones(12, bool)
    kept[5:7] = False  # frames 5 and 6 regenerated
    got = dissolve_kept(out, src, kept)[:, 0, 0, 0].tolist()
    assert got == [150, 140, 130, 120, 110, 100, 100, 110, 120, 130, 140, 150]


def test_close_loop_lands_the_last_frame_on_the_first() -> None:
    from kinema.pipeline import close_loop

    decoded = np.full((13, 2, 2, 3), 100, np.uint8)  # a loop's decoding: 9 frames, then a still pseudo-chunk
    decoded[9:] = 91  # the pseudo-chunk decodes 9 levels below its neighbour, and 18 below frame 0's image
    first = np.full((2, 2, 3), 109, np.uint8)  # the given image (its decoding, frame 0, is 9 levels off)
    got = close_loop(decoded, 9, first)[:, 0, 0, 0].tolist()
    # frame 0 is the image; its error (+9) fades forward (8/9, 7/9 ...) and the wrap's (+18 at the pseudo
    # frame) fades backward from the end, so the last frame steps down into frame 0 (-8) about as the
    # decoding stepped into the pseudo-chunk (-9), with no jump
    assert got == [109, 110, 111, 112, 113, 114, 115, 116, 117]


def test_loop_and_edit_and_one_frame(debug_pipe: Pipeline, clip: np.ndarray) -> None:
    one = dict(steps=1, guidance=1)
    assert debug_pipe("a red circle spins", loop=True, seconds=1, **one).frames.shape == (9, 64, 64, 3)
    looped = debug_pipe("a red circle spins", loop=True, image=clip[0], **one).frames
    assert looped.shape == (9, 64, 64, 3) and np.array_equal(looped[0], clip[0])  # the image itself
    near = debug_pipe("a blue circle falls", edit=clip, strength=0.05, **KW).frames
    far = debug_pipe("a blue circle falls", edit=clip, strength=1.0, **KW).frames
    base = roundtrip(debug_pipe, clip).astype(int)
    assert near.shape == clip.shape and np.abs(near - base).mean() < np.abs(far - base).mean()
    assert debug_pipe("a blue circle", frames=1, **one).frames.shape == (1, 64, 64, 3)


def test_shots_cut_and_keep_identity(debug_pipe: Pipeline) -> None:
    shots = [
        {"prompt": "a small red circle falls", "seconds": 1},
        {"prompt": "the red circle moves left", "seconds": 1},
    ]
    free = debug_pipe(shots=shots, shot_context="none", **KW)
    assert free.info["shot_context"] == "none"
    video = debug_pipe(shots=shots, **KW)
    assert video.info["shot_context"] == "first"  # the default
    assert len(video.frames) == 9 + 8 and video.info["cuts"] == [0, 9]
    a, b = expand_shots([s["prompt"] for s in shots])
    assert a.startswith("A small red circle") and b.startswith("A small red circle")
    assert "floor" in a and "floor" in b  # the set (floor, bar) of a falling shot stays after the cut
    b = video.expanded_prompt.split(" | ")[1]  # expanded with the shot's duration
    # a later shot is image-to-video from shot 1's first frame, minus that frame (a reference, not output)
    second = debug_pipe(b, image=video.frames[0], seconds=1, seed=1, expand=False, **KW).frames
    assert np.array_equal(video.frames[9:], second[1:])
    prev = debug_pipe(shots=shots, shot_context="previous", **KW)
    second = debug_pipe(b, image=prev.frames[8], seconds=1, seed=1, expand=False, **KW).frames
    assert np.array_equal(prev.frames[:9], video.frames[:9]) and np.array_equal(prev.frames[9:], second[1:])
    alone = debug_pipe(b, seconds=1, seed=1, expand=False, **KW).frames
    assert np.array_equal(free.frames[9:], alone[1:]) and not np.array_equal(free.frames[9:], video.frames[9:])
    same = debug_pipe(shots=shots, shot_context="none", shot_noise="same", **KW)  # every shot from seed 0's noise
    assert same.info["shot_noise"] == "same" and free.info["shot_noise"] == "new"
    assert np.array_equal(same.frames[:9], free.frames[:9])
    assert np.array_equal(same.frames[9:], debug_pipe(b, seconds=1, seed=0, expand=False, **KW).frames[1:])
    with pytest.raises(KinemaError, match="shot noise must be one of"):
        debug_pipe(shots=shots, shot_noise="fresh", **KW)
    with pytest.raises(KinemaError, match="shot noise applies to shots only"):
        debug_pipe("a red circle", shot_noise="same", **KW)
    with pytest.raises(KinemaError, match="shot context must be one of"):
        debug_pipe(shots=shots, shot_context="last", **KW)
    with pytest.raises(KinemaError, match="applies to shots only"):
        debug_pipe("a red circle", shot_context="first", **KW)


def test_sixty_seconds_in_bounded_windows(debug_pipe: Pipeline) -> None:
    sizes = {"dit": 0, "decoder": 0}
    hooks = [
        debug_pipe.dit.register_forward_pre_hook(
            lambda m, a: sizes.__setitem__("dit", max(sizes["dit"], a[0].shape[2]))
        ),
        debug_pipe.vae.decoder.register_forward_pre_hook(
            lambda m, a: sizes.__setitem__("decoder", max(sizes["decoder"], a[0].shape[2]))
        ),
    ]
    try:
        video = debug_pipe("a red circle moves to the right", seconds=60, fps=4, steps=1, guidance=1, size=(32, 32))
    finally:
        for h in hooks:
            h.remove()
    assert video.frames.shape == (241, 32, 32, 3) and video.info["windows"] == 30
    assert sizes["dit"] <= debug_pipe.window and sizes["decoder"] <= debug_pipe.window  # memory: one window
    assert window_plan(9, 118, 3, 1, 4, False)[0] == (1, 2)


# ---- bad input through the CLI: one line, exit 2, nothing written -------------------------------------------


@pytest.fixture()
def cli(debug_pipe: Pipeline, monkeypatch: pytest.MonkeyPatch):
    """Run `kinema generate` in process with the debug pipeline (no model reload per call)."""
    monkeypatch.setattr(Pipeline, "from_pretrained", classmethod(lambda cls, *a, **k: debug_pipe))
    runner = CliRunner()
    return lambda *args: runner.invoke(app, ["generate", *args, "--steps", "1", "-q"])


@pytest.fixture(scope="module")
def inputs(tmp_path_factory: pytest.TempPathFactory, clip: np.ndarray) -> Path:
    d = tmp_path_factory.mktemp("inputs")
    Image.fromarray(clip[0]).save(d / "a.png")
    Image.fromarray(clip[8]).save(d / "b.png")
    write_video(clip, d / "clip.mp4", 8)
    (d / "broken.png").write_bytes(b"not an image")
    (d / "empty.mp4").write_bytes(b"")
    (d / "bad_shots.yaml").write_text("shots:\n  - prompt: a red circle\n    seconds: 2\n    colour: red\n")
    (d / "shots.json").write_text(json.dumps({"shots": [{"prompt": "a red circle", "seconds": 0.5}] * 2}))
    return d


@pytest.mark.parametrize(
    "args,match",
    [
        (["--image", "{in}/nope.png"], "no such image"),
        (["--image", "{in}/broken.png"], "cannot read image"),
        (["--video", "{in}/nope.mp4"], "no such file"),
        (["--video", "{in}/empty.mp4"], "cannot decode"),
        (["--keyframe", "{in}/a.png@0", "--keyframe", "{in}/b.png@5", "--seconds", "1"], "outside the clip"),
        (["--keyframe", "{in}/a.png@0.25", "--keyframe", "{in}/b.png@0.4"], "same latent frame"),
        (["--keyframe", "{in}/a.png"], "PATH@SECONDS"),
        (["--shots", "{in}/bad_shots.yaml", "--", ""], "unknown field"),
        (["--shots", "{in}/shots.json", "--shot-context", "last", "--", ""], "shot context must be one of"),
        (["--shots", "{in}/shots.json", "--shot-noise", "fresh", "--", ""], "shot noise must be one of"),
        (["--image", "{in}/a.png", "--video", "{in}/clip.mp4"], "conflicting inputs image and video"),
        (["--fill", "{in}/clip.mp4"], "fill and missing"),
        (["--fill", "{in}/clip.mp4", "--missing", "5:6"], "after the video ends"),
        (["--edit", "{in}/clip.mp4", "--strength", "1.5"], "strength"),
        (["--loop", "--video", "{in}/clip.mp4"], "loop combines"),
        (["--frames", "6"], "frames must be 1 + 4k"),
    ],
)
def test_bad_inputs_give_one_line_and_write_nothing(cli, inputs: Path, tmp_path: Path, args: list, match: str) -> None:
    args = [a.replace("{in}", str(inputs)) for a in args]
    prompt = [] if "--shots" in args else ["a red circle"]
    r = cli(*prompt, *[a for a in args if a != "--"], "-o", str(tmp_path / "out.mp4"))
    assert r.exit_code == 2, (r.exit_code, r.output)
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and match in lines[0], r.stderr
    assert list(tmp_path.iterdir()) == []


def test_cli_modes_write_their_outputs(cli, inputs: Path, tmp_path: Path) -> None:
    r = cli("a red circle", "--frames", "1", "-o", str(tmp_path / "still.png"))
    assert r.exit_code == 0, r.output and read_video(tmp_path / "still.png")[0].shape == (1, 64, 64, 3)
    r = cli("--shots", str(inputs / "shots.json"), "-o", str(tmp_path / "shots.mp4"))
    assert r.exit_code == 0, r.output
    assert len(read_video(tmp_path / "shots.mp4")[0]) == 5 + 4
    out = tmp_path / "back.gif"
    r = cli(
        "a red circle falls",
        "--video",
        str(inputs / "clip.mp4"),
        "--extend",
        "backward",
        "--seconds",
        "1",
        "-o",
        str(out),
    )
    assert r.exit_code == 0, r.output
    assert len(read_video(out)[0]) == 8 + 13


def test_cli_process_exit_code(debug_model: Path, inputs: Path, tmp_path: Path) -> None:
    """The real process: conflicting modes are refused before any work, exit status 2."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    args = ["--image", str(inputs / "a.png"), "--edit", str(inputs / "clip.mp4"), "-o", str(tmp_path / "x.mp4")]
    r = subprocess.run(
        [sys.executable, "-m", "kinema", "generate", "a red circle", "--model", str(debug_model), *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert r.returncode == 2 and r.stderr.strip().splitlines()[-1].startswith("error: conflicting inputs")
    assert list(tmp_path.iterdir()) == []


def test_python_api_errors(debug_pipe: Pipeline, clip: np.ndarray) -> None:
    with pytest.raises(KinemaError, match="give seconds or frames"):
        debug_pipe("a red circle", seconds=1, frames=9)
    with pytest.raises(KinemaError, match="prompt or shots"):
        debug_pipe("a red circle", shots=[{"prompt": "a red circle", "seconds": 1}])
    with pytest.raises(KinemaError, match="seconds"):
        debug_pipe(shots=[{"prompt": "a red circle", "seconds": "long"}])


def test_carry_residual_fades_the_vae_error_into_the_new_frames() -> None:
    from kinema.pipeline import carry_residual

    given = np.full((8, 8, 3), 118, np.uint8)
    decoded = np.full((8, 8, 3), 100, np.uint8)  # the VAE's round trip of the join frame: 18 levels off
    new = np.full((10, 8, 8, 3), 100, np.uint8)
    after = carry_residual(given, decoded, new, at_end=False)[:, 0, 0, 0].tolist()
    assert after == [116, 114, 112, 110, 108, 106, 104, 102, 100, 100]  # 8/9 ... 1/9 of the error, then nothing
    before = carry_residual(given, decoded, new, at_end=True)[:, 0, 0, 0].tolist()
    assert before == after[::-1]
    dark, bright = np.full((8, 8, 3), 0, np.uint8), np.full((8, 8, 3), 200, np.uint8)  # an error of -200
    assert carry_residual(dark, bright, new, at_end=False)[0].max() == 0  # clipped at 0, not wrapped around
