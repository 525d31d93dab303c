"""Frame review: the real nudenet detector passes world and model frames; a flagged or blank video raises
ReviewError and nothing is written; every Video.save is reviewed; the CLI prints one line and exits 4."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

import kinema.review as R
from kinema.cli import app
from kinema.pipeline import Video


class FakeDetector:
    """Scores every frame with `score` for one exposed class (the real model is not fed explicit images)."""

    def __init__(self, score: float, label: str = "FEMALE_BREAST_EXPOSED") -> None:
        self.score, self.label, self.seen = score, label, 0

    def scores(self, frames: np.ndarray) -> dict[str, np.ndarray]:
        self.seen += len(frames)
        return {lab: np.full(len(frames), self.score if lab == self.label else 0.0) for lab in R.EXPOSED}


def world_frames(n: int = 9) -> np.ndarray:
    from kinema import world

    return world.render(world.sample_scene(3), 64, 64, 8.0)[:n]


def test_sample_indices_bounded_and_spread() -> None:
    assert R.sample_indices(1) == [0]
    assert R.sample_indices(5) == [0, 1, 2, 3, 4]
    idx = R.sample_indices(721)
    assert len(idx) == R.MAX_FRAMES and idx[0] == 0 and idx[-1] == 720


def test_real_detector_passes_world_frames() -> None:
    det = R._detector()
    assert set(R.EXPOSED) <= set(det.labels)
    report = R.review_frames(world_frames())
    assert len(report["frames_checked"]) == R.MAX_FRAMES
    assert all(v < R.THRESHOLDS.get(k, R.NUDITY_THRESHOLD) - 0.2 for k, v in report["nudity"].items()), report


def test_flagged_and_blank_videos_fail() -> None:
    frames = world_frames()
    det = FakeDetector(0.9)
    with pytest.raises(R.ReviewError, match=r"nudity \(FEMALE_BREAST_EXPOSED 0\.90"):
        R.review_frames(frames, detector=det)
    assert det.seen == R.MAX_FRAMES  # sampled frames only
    assert R.review_frames(frames, detector=FakeDetector(0.3))["nudity"]["FEMALE_BREAST_EXPOSED"] == pytest.approx(0.3)
    assert R.review_frames(frames, detector=FakeDetector(0.6, "BUTTOCKS_EXPOSED"))  # its own, higher threshold
    with pytest.raises(R.ReviewError, match="blank"):
        R.review_frames(np.zeros((9, 64, 64, 3), np.uint8), detector=FakeDetector(0.0))


def test_save_writes_nothing_for_a_failing_video(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(R, "_detector", lambda: FakeDetector(0.8))
    video = Video(world_frames(), 8.0, "p", "p", 0)
    for name in ("out.mp4", "out.gif"):
        with pytest.raises(R.ReviewError, match="nudity"):
            video.save(tmp_path / name)
    assert list(tmp_path.iterdir()) == []


def test_generation_is_reviewed(debug_pipe, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import kinema.pipeline as P

    calls = []
    monkeypatch.setattr(P, "review_frames", lambda frames: calls.append(frames.shape) or R.review_frames(frames))
    video = debug_pipe("a red circle falls", seconds=1, steps=1)
    path = video.save(tmp_path / "out.mp4")
    assert calls == [video.frames.shape] and path.is_file()
    assert max(video.info["review"]["nudity"].values()) < R.NUDITY_THRESHOLD  # the real detector ran on them


def test_cli_failed_review_exits_4(debug_model: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(R, "_detector", lambda: FakeDetector(0.95, "MALE_GENITALIA_EXPOSED"))
    out = tmp_path / "x.mp4"
    args = ["generate", "a red circle", "--model", str(debug_model), "-o", str(out), "--steps", "1", "-q"]
    r = CliRunner().invoke(app, [*args, "--seconds", "1"])
    assert r.exit_code == 4, r.output
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert lines == ["error: output refused by frame review: nudity (MALE_GENITALIA_EXPOSED 0.95 at frame 0)"]
    assert list(tmp_path.iterdir()) == []


class FakeSession:
    """Stands in for nudenet's ONNX session: YOLOv8 output (B, 4 + classes, anchors) with one anchor scoring
    `score` for `label`, so the real NudityDetector's pre-processing, output parsing and class order run."""

    def __init__(self, labels: list[str], label: str, score: float) -> None:
        self.k, self.score, self.inputs = labels.index(label), score, []

    def run(self, _names: object, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        x = next(iter(feeds.values()))
        self.inputs.append(x.shape)
        out = np.full((len(x), 4 + 18, 2100), 0.01, np.float32)
        out[:, 4 + self.k, 1234] = self.score
        return [out]


def test_nudity_hit_from_the_model_refuses_and_writes_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No explicit image exists offline (the nudenet wheel ships none), so the model's output is stubbed: a
    FEMALE_GENITALIA_EXPOSED hit at 0.85 must refuse the video and leave no file."""
    det = R.NudityDetector()
    det.session = FakeSession(det.labels, "FEMALE_GENITALIA_EXPOSED", 0.85)
    monkeypatch.setattr(R, "_detector", lambda: det)
    video = Video(world_frames(), 8.0, "p", "p", 0)
    with pytest.raises(R.ReviewError, match=r"nudity \(FEMALE_GENITALIA_EXPOSED 0\.85 at frame 0\)"):
        video.save(tmp_path / "out.mp4")
    assert list(tmp_path.iterdir()) == []
    assert det.session.inputs and all(s[1:] == (3, 320, 320) for s in det.session.inputs)
    det.session = FakeSession(det.labels, "FEMALE_GENITALIA_COVERED", 0.99)  # covered: not a refusal
    assert video.save(tmp_path / "ok.mp4").is_file()


MEDIA = Path(__file__).resolve().parents[2] / "shared" / "media"
if not MEDIA.is_dir():
    MEDIA = Path("/work/shared/media")


def test_real_detector_reads_real_footage_like_nudenet() -> None:
    """On a real (animated, clothed) person the real model finds the face, as nudenet's own API does: the
    pre-processing and class order match the package's."""
    from nudenet import NudeDetector

    from kinema.video_io import read_video

    path = MEDIA / "person_1280x720_24fps_audio.mp4"
    if not path.is_file():
        pytest.skip(f"sample footage not found at {MEDIA}")
    frame = read_video(path, max_frames=21)[0][20]
    scores = R._detector().scores(frame[None])
    top = max(scores, key=lambda k: scores[k][0])
    theirs = NudeDetector().detect(np.ascontiguousarray(frame[:, :, ::-1]))  # nudenet reads BGR
    assert top == "FACE_FEMALE" and scores[top][0] > 0.4
    assert max(theirs, key=lambda d: d["score"])["class"] == top
