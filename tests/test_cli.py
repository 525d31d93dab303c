"""The command line: the happy path and every bad input (one line, non-zero exit, no partial output)."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch


def kinema(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "2"}
    return subprocess.run(
        [sys.executable, "-m", "kinema", *args], capture_output=True, text=True, cwd=cwd, env=env, timeout=300
    )


def test_generate_end_to_end(debug_model: Path, tmp_path: Path) -> None:
    out = tmp_path / "clip.mp4"
    r = kinema(
        "generate",
        "a green circle moves to the right",
        "--model",
        str(debug_model),
        "-o",
        str(out),
        "--steps",
        "2",
        "--size",
        "48x32",
        "--seconds",
        "1",
        "--fps",
        "8",
        "-q",
    )
    assert r.returncode == 0, r.stderr
    from kinema.video_io import read_video

    frames, fps = read_video(out)
    assert frames.shape == (9, 32, 48, 3) and fps == pytest.approx(8)
    assert "wrote" in r.stdout


def _one_line_error(r: subprocess.CompletedProcess) -> str:
    assert r.returncode == 2, (r.returncode, r.stdout, r.stderr)
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert "Traceback" not in r.stderr
    assert lines[-1].startswith("error: "), r.stderr
    return lines[-1]


@pytest.mark.parametrize(
    "args,match",
    [
        (["", "-o", "{tmp}/x.mp4"], "prompt is empty"),
        (["a red circle", "--size", "65x64", "-o", "{tmp}/x.mp4"], "multiples of 16"),
        (["a red circle", "--size", "big", "-o", "{tmp}/x.mp4"], "WIDTHxHEIGHT"),
        (["a red circle", "--seconds", "100000", "-o", "{tmp}/x.mp4"], "seconds must be"),
        (["a red circle", "-o", "{tmp}/nowhere/x.mp4"], "does not exist"),
        (["a red circle", "-o", "{tmp}/x.avi"], "must end in"),
        (["a red circle", "-o", "{tmp}/x.png"], "one frame"),
        (["a red circle", "--guidance-interval", "0.5", "-o", "{tmp}/x.mp4"], "guidance interval must be two times"),
        (["a red circle", "--guidance-interval", "a:b", "-o", "{tmp}/x.mp4"], "LO:HI with 0 <= LO < HI <= 1"),
        (["a red circle", "--guidance-eta", "1.5", "-o", "{tmp}/x.mp4"], "guidance eta must be in [0, 1], got 1.5"),
    ],
)
def test_bad_generate_inputs(debug_model: Path, tmp_path: Path, args: list[str], match: str) -> None:
    args = [a.replace("{tmp}", str(tmp_path)) for a in args]
    line = _one_line_error(kinema("generate", *args, "--model", str(debug_model), "--steps", "1", "-q"))
    assert match in line
    assert list(tmp_path.iterdir()) == []  # nothing written, not even a temporary file


def test_unwritable_output_leaves_nothing(debug_model: Path, tmp_path: Path) -> None:
    target = Path("/proc/kinema-test.mp4")  # not writable, even for root
    line = _one_line_error(
        kinema("generate", "a red circle", "--model", str(debug_model), "-o", str(target), "--steps", "1", "-q")
    )
    assert line.startswith("error: ")
    assert not target.exists()


def test_existing_output_survives_a_failed_run(debug_model: Path, tmp_path: Path) -> None:
    out = tmp_path / "keep.mp4"
    out.write_bytes(b"precious")
    _one_line_error(kinema("generate", "a red circle", "--size", "65x64", "--model", str(debug_model), "-o", str(out)))
    assert out.read_bytes() == b"precious"


def test_missing_and_corrupt_checkpoints(debug_model: Path, tmp_path: Path) -> None:
    out = tmp_path / "x.mp4"
    assert "no model folder" in _one_line_error(
        kinema("generate", "a red circle", "--model", str(tmp_path / "no"), "-o", str(out))
    )
    broken = tmp_path / "broken"
    shutil.copytree(debug_model, broken)
    data = (broken / "dit.safetensors").read_bytes()
    (broken / "dit.safetensors").write_bytes(data[: len(data) // 3])
    assert "corrupt checkpoint" in _one_line_error(
        kinema("generate", "a red circle", "--model", str(broken), "-o", str(out))
    )
    (broken / "dit.safetensors").unlink()
    assert "missing checkpoint" in _one_line_error(
        kinema("generate", "a red circle", "--model", str(broken), "-o", str(out))
    )
    (broken / "model.json").write_text("{not json")
    assert "corrupt model config" in _one_line_error(
        kinema("generate", "a red circle", "--model", str(broken), "-o", str(out))
    )
    assert not out.exists()


def test_world_writes_clips_captions_and_specs(tmp_path: Path) -> None:
    r = kinema("world", "--out", str(tmp_path), "--n", "3", "--split", "holdout", "--size", "48x32")
    assert r.returncode == 0, r.stderr
    assert len(list(tmp_path.glob("clip_*.mp4"))) == 3 and (tmp_path / "captions.jsonl").is_file()
    line = _one_line_error(kinema("world", "--out", str(tmp_path / "w"), "--split", "nope"))
    assert "unknown split" in line


def test_train_bad_patch(debug_model: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    for patch, match in (("1x0x2", "three positive integers"), ("2x2", "three positive integers")):
        assert match in _one_line_error(kinema("train", "--out", str(run), "--vae", str(debug_model), "--patch", patch))
    line = _one_line_error(kinema("train", "--out", str(run), "--init", str(debug_model), "--patch", "1x3x3"))
    assert "must divide" in line
    assert not run.exists()


def test_help_lists_commands() -> None:
    r = kinema("--help")
    assert r.returncode == 0 and "generate" in r.stdout and "train" in r.stdout


def test_export_bad_guidance(tmp_path, debug_model):
    r = kinema("export", "--run", str(debug_model), "--out", str(tmp_path / "x"), "--guidance", "-2")
    assert "guidance must be in [0, 50], got -2" in _one_line_error(r)
    assert not (tmp_path / "x").exists()
    r = kinema("export", "--run", str(debug_model), "--out", str(tmp_path / "x"), "--guidance-interval", "0.8:0.2")
    assert "guidance interval must be two times LO:HI with 0 <= LO < HI <= 1, got '0.8:0.2'" in _one_line_error(r)
    assert not (tmp_path / "x").exists()
    r = kinema("export", "--run", str(debug_model), "--out", str(tmp_path / "x"), "--guidance-eta", "-0.5")
    assert "guidance eta must be in [0, 1], got -0.5" in _one_line_error(r)
    assert not (tmp_path / "x").exists()


def test_pack_text_encoder_bad_input(tmp_path):
    r = kinema("pack-text-encoder", "--out", str(tmp_path / "p"), "--scenes", "0")
    assert "--scenes must be >= 1, got 0" in _one_line_error(r)
    r = kinema("pack-text-encoder", "--out", str(tmp_path / "p"), "--source", str(tmp_path / "none"))
    assert "no text encoder at" in _one_line_error(r)
    assert not (tmp_path / "p").exists()
    (tmp_path / "p").mkdir()
    (tmp_path / "p" / "notes.txt").write_text("mine")
    r = kinema("pack-text-encoder", "--out", str(tmp_path / "p"), "--scenes", "2")
    assert "already exists and is not an empty folder" in _one_line_error(r)
    assert [f.name for f in (tmp_path / "p").iterdir()] == ["notes.txt"]


def test_export_bad_blend(tmp_path, debug_model):
    """export --blend: a weight outside [0, 1], a missing model, another architecture: one line, no folder."""
    out = tmp_path / "x"
    r = kinema(
        "export", "--run", str(debug_model), "--out", str(out), "--blend", str(debug_model), "--blend-weight", "1.5"
    )
    assert "blend weight must be in [0, 1], got 1.5" in _one_line_error(r)
    r = kinema("export", "--run", str(debug_model), "--out", str(out), "--blend", str(tmp_path / "none"))
    assert "missing checkpoint file" in _one_line_error(r)
    r = kinema("export", "--run", str(debug_model), "--out", str(out), "--blend", "shipped")
    assert "--blend shipped has a different DiT architecture" in _one_line_error(r)
    assert not out.exists()


@pytest.mark.parametrize(
    "args,match",
    [(["--workers", "-1"], "--workers >= 0"), (["--device", "tpu"], "--device cpu or cuda")]
    + ([] if torch.cuda.is_available() else [(["--device", "cuda"], "no CUDA device")]),
)
def test_prepare_world_bad_options(tmp_path: Path, args: list[str], match: str) -> None:
    """prepare-world's --device and --workers: one error line, and no output folder is started."""
    out = tmp_path / "lat"
    r = kinema("prepare-world", "--vae", str(tmp_path), "--out", str(out), "--n", "4", *args)
    assert match in _one_line_error(r)
    assert not out.exists()
