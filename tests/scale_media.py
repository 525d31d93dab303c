"""Tiny synthetic footage for the scale tests: good clips of three aspects, a variable-frame-rate clip and
every kind of broken file `kinema prepare` must skip."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np


def write_clip(path: Path, width: int, height: int, times: list[float], levels: list[int] | None = None) -> None:
    """An H.264 MP4 whose frame i is shown from times[i] (a millisecond time base, so any spacing: VFR),
    flat grey at levels[i] with a bright square moving right."""
    levels = levels or [40 + (150 * i) // max(1, len(times) - 1) for i in range(len(times))]
    with av.open(str(path), mode="w", format="mp4") as c:
        s = c.add_stream("libx264", rate=Fraction(1000))
        s.width, s.height, s.pix_fmt = width, height, "yuv420p"
        s.codec_context.time_base = Fraction(1, 1000)
        s.options = {"crf": "10", "preset": "ultrafast", "bf": "0"}
        for i, (t, v) in enumerate(zip(times, levels, strict=True)):
            img = np.full((height, width, 3), v, np.uint8)
            x = (i * 3) % max(1, width - 8)
            img[4:12, x : x + 8] = 250
            frame = av.VideoFrame.from_ndarray(img, format="rgb24")
            frame.pts, frame.time_base = round(t * 1000), Fraction(1, 1000)
            for p in s.encode(frame):
                c.mux(p)
        for p in s.encode():
            c.mux(p)


def make_footage(folder: Path) -> dict[str, int]:
    """Write good and broken sources into folder; returns the skip reasons prepare should count."""
    folder.mkdir(parents=True, exist_ok=True)
    cfr = [i / 8 for i in range(18)]  # 8 fps, 2.1 s
    clips = {"wide.mp4": (48, 32), "tall.mp4": (32, 48), "square.mp4": (32, 32)}
    for name, (w, h) in clips.items():
        write_clip(folder / name, w, h, cfr)
        (folder / name).with_suffix(".txt").write_text(f"a bright square moves right. {name} test clip\n")
    vfr = [0.0, 0.05, 0.3, 0.35, 0.4, 0.9, 1.0, 1.05, 1.5, 1.6, 2.0, 2.1]
    write_clip(folder / "vfr.mp4", 48, 32, vfr)
    (folder / "vfr.txt").write_text("a square at a variable frame rate")
    (folder / "empty.mp4").write_bytes(b"")
    data = (folder / "wide.mp4").read_bytes()
    (folder / "truncated.mp4").write_bytes(data[: len(data) // 2])
    (folder / "notvideo.mp4").write_text("this is not a video\n")
    write_clip(folder / "short.mp4", 32, 32, [0.0, 0.1, 0.2])
    for name in ("empty", "truncated", "notvideo", "short"):
        (folder / f"{name}.txt").write_text("a caption for a broken file")
    write_clip(folder / "uncaptioned.mp4", 32, 32, cfr)
    (folder / "notes.xyz").write_text("not media")
    return {
        "skipped: empty file": 1,
        "skipped: undecodable": 2,
        "skipped: too short": 1,
        "skipped: no caption": 1,
        "skipped: unsupported": 1,
    }
