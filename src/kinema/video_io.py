"""Reading and writing videos: H.264 MP4 through PyAV, GIF and PNG through Pillow.

Every writer renders to a temporary file beside the target and renames it into place, so a failure never
leaves a partial output and never clobbers an existing file with half a video.
"""

from __future__ import annotations

import os
from fractions import Fraction
from pathlib import Path
from typing import BinaryIO

import numpy as np
from PIL import Image

from kinema.checkpoint import atomic_write

VIDEO_SUFFIXES = (".mp4", ".gif", ".png")


class VideoError(ValueError):
    """A video could not be read or written."""


def check_output_path(path: str | Path, frames: int = 2) -> Path:
    """Fail early, before any generation, if path cannot receive the output."""
    p = Path(path)
    if p.suffix.lower() not in VIDEO_SUFFIXES:
        raise VideoError(f"output must end in {', '.join(VIDEO_SUFFIXES)}, got {p.name!r}")
    if p.suffix.lower() == ".png" and frames > 1:
        raise VideoError("a .png output holds one frame; use .mp4 or .gif for videos (or --frames 1)")
    parent = p.parent if str(p.parent) else Path(".")
    if not parent.is_dir():
        raise VideoError(f"output folder {parent} does not exist")
    if not os.access(parent, os.W_OK):
        raise VideoError(f"output folder {parent} is not writable")
    if p.is_dir():
        raise VideoError(f"output path {p} is a directory")
    return p


def write_video(frames: np.ndarray, path: str | Path, fps: float, crf: int = 18) -> Path:
    """Write (T, H, W, 3) uint8 frames to .mp4 (H.264, yuv420p), .gif or .png (one frame)."""
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
        raise VideoError(f"frames must be (T, H, W, 3) uint8, got {frames.shape} {frames.dtype}")
    p = check_output_path(path, len(frames))
    suffix = p.suffix.lower()
    if suffix == ".png":
        atomic_write(p, lambda tmp: Image.fromarray(frames[0]).save(tmp, format="PNG"))
    elif suffix == ".gif":
        imgs = [Image.fromarray(f) for f in frames]
        atomic_write(
            p,
            lambda tmp: imgs[0].save(
                tmp, format="GIF", save_all=True, append_images=imgs[1:], duration=round(1000 / fps), loop=0
            ),
        )
    else:
        atomic_write(p, lambda tmp: _write_mp4(frames, tmp, fps, crf))
    return p


def _write_mp4(frames: np.ndarray, path: str | BinaryIO, fps: float, crf: int) -> None:
    import av  # imported where used: training on a machine without PyAV never needs it

    h, w = frames.shape[1:3]
    if h % 2 or w % 2:
        raise VideoError(f"H.264 needs even sizes, got {w}x{h}")
    with av.open(path, mode="w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=Fraction(fps).limit_denominator(1001))
        stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
        stream.options = {"crf": str(crf), "preset": "medium"}
        for f in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(f, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


def read_video(path: str | Path, max_frames: int | None = None) -> tuple[np.ndarray, float]:
    """Decode a video (any container and codec FFmpeg reads; audio ignored) or an image to
    ((T, H, W, 3) uint8, fps). Raises VideoError with a one-line reason on any failure."""
    p = Path(path)
    if not p.is_file():
        raise VideoError(f"no such file: {p}")
    if p.suffix.lower() in (".png", ".jpg", ".jpeg", ".webp", ".bmp"):
        try:
            with Image.open(p) as im:
                return np.asarray(im.convert("RGB"))[None], 1.0
        except OSError as e:
            raise VideoError(f"cannot read image {p}: {e}") from None
    import av

    try:
        with av.open(str(p)) as container:
            if not container.streams.video:
                raise VideoError(f"{p} has no video stream")
            stream = container.streams.video[0]
            fps = float(stream.average_rate or stream.guessed_rate or 24)
            frames = []
            for frame in container.decode(stream):
                frames.append(frame.to_ndarray(format="rgb24"))
                if max_frames is not None and len(frames) >= max_frames:
                    break
    except (av.error.FFmpegError, OSError, ValueError) as e:
        if isinstance(e, VideoError):
            raise
        raise VideoError(f"cannot decode {p}: {str(e).splitlines()[0] if str(e) else type(e).__name__}") from None
    if not frames:
        raise VideoError(f"{p} has no decodable frames")
    return np.stack(frames), fps


def h264_roundtrip(frames: np.ndarray, crf: int, fps: float = 12.0) -> np.ndarray:
    """Encode (T, H, W, 3) uint8 frames to H.264 in memory and decode them again (benchmarks, training)."""
    import io

    import av

    buf = io.BytesIO()
    _write_mp4(frames, buf, fps, crf)
    buf.seek(0)
    with av.open(buf) as container:
        return np.stack([f.to_ndarray(format="rgb24") for f in container.decode(video=0)])
