from pathlib import Path

import numpy as np
import pytest

from kinema import world
from kinema.video_io import VideoError, read_video, write_video


def test_mp4_round_trip_is_faithful(tmp_path: Path) -> None:
    frames = world.render(world.sample_scene(2, "test"), 64, 48, fps=12)
    frames2, fps = read_video(write_video(frames, tmp_path / "w.mp4", 12))
    assert frames2.shape == frames.shape and fps == pytest.approx(12)
    assert np.abs(frames2.astype(int) - frames.astype(int)).mean() < 4  # H.264 crf 18, yuv420p


def test_gif_and_png(tmp_path: Path) -> None:
    frames = world.render(world.sample_scene(3, "test"), 32, 32, fps=4)
    assert read_video(write_video(frames, tmp_path / "a.gif", 4))[0].shape[1:] == (32, 32, 3)
    assert read_video(write_video(frames[:1], tmp_path / "a.png", 4))[0].shape == (1, 32, 32, 3)


def test_unreadable_inputs(tmp_path: Path) -> None:
    (tmp_path / "junk.mp4").write_bytes(b"this is not a video")
    (tmp_path / "empty.mp4").write_bytes(b"")
    for name in ("junk.mp4", "empty.mp4", "missing.mp4"):
        with pytest.raises(VideoError):
            read_video(tmp_path / name)
    with pytest.raises(VideoError, match="uint8"):
        write_video(np.zeros((2, 8, 8, 3), np.float32), tmp_path / "x.mp4", 4)
    with pytest.raises(VideoError, match="even"):
        write_video(np.zeros((2, 9, 8, 3), np.uint8), tmp_path / "odd.mp4", 4)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty.mp4", "junk.mp4"]  # no partial outputs
