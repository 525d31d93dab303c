"""Inputs of the conditioned tasks (image-to-video, extension, keyframes, infill, loops, edits, shots) and
their encoding into clean reference latents for `pipeline.generate`.

Every task is the same mechanism (ANCHORS.md, "One conditioning mechanism for every task"): a `Reference`
holds clean latent frames and a per-latent-frame mask, and flow.conditioned keeps those frames fixed at
t = 0 while the rest is sampled. This module only turns user inputs into such references:

- sizes: an input is scaled to cover the target size (aspect kept, bicubic) and center-cropped, so no
  bars are added (bars never occur in training) and nothing is stretched;
- frame rates: a video file is resampled in time to the output fps (nearest frame), so motion keeps its
  speed; an array is taken as already at the output fps;
- latent positions (causal VAE, r = 4): latent frame 0 is pixel frame 0 encoded alone; latent frame j >= 1
  covers pixel frames r(j-1)+1 .. rj. An image at frame 0 is encoded alone (exactly latent frame 0); an
  image elsewhere is encoded as a pseudo-chunk of r copies (a still moment).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import yaml
from PIL import Image
from torch import Tensor

from kinema.data import to_tensor
from kinema.vae import VideoVAE
from kinema.video_io import VideoError, read_video

MAX_INPUT_FRAMES = 3600  # 60 s at 60 fps: longer inputs are refused instead of filling memory

ImageInput = str | Path | np.ndarray
VideoInput = str | Path | np.ndarray


class KinemaError(ValueError):
    """A bad request: the message is one line meant for the user (re-exported by kinema.pipeline)."""


@dataclass
class Reference:
    """Clean latent frames given to the sampler: latents (1, C, T, h, w), given (T,) bool."""

    latents: Tensor
    given: Tensor

    @classmethod
    def empty(cls, channels: int, frames: int, height: int, width: int) -> Reference:
        return cls(torch.zeros(1, channels, frames, height, width), torch.zeros(frames, dtype=torch.bool))

    def put(self, index: int, latent: Tensor) -> None:
        """Give latent frames (1, C, n, h, w) starting at latent frame index."""
        n = latent.shape[2]
        self.latents[:, :, index : index + n] = latent
        self.given[index : index + n] = True


@dataclass(frozen=True)
class Shot:
    prompt: str
    seconds: float


# ---- reading and fitting inputs --------------------------------------------------------------------------


def fit_frames(frames: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """(T, H, W, 3) uint8 -> (T, h, w, 3) for size (w, h): scale to cover, then center-crop. Exact no-op
    when the size already matches, so given pixels stay bit-identical."""
    w, h = size
    H, W = frames.shape[1:3]
    if (W, H) == (w, h):
        return frames
    scale = max(w / W, h / H)
    sw, sh = max(w, math.ceil(W * scale - 1e-6)), max(h, math.ceil(H * scale - 1e-6))
    left, top = (sw - w) // 2, (sh - h) // 2
    out = [
        np.asarray(Image.fromarray(f).resize((sw, sh), Image.BICUBIC).crop((left, top, left + w, top + h)))
        for f in frames
    ]
    return np.stack(out)


def load_image(src: ImageInput, size: tuple[int, int]) -> np.ndarray:
    """Any image Pillow reads (the first frame of an animated one), or an (H, W, 3) uint8 array, fitted to
    size: (h, w, 3) uint8."""
    if isinstance(src, np.ndarray):
        if src.ndim != 3 or src.shape[-1] != 3 or src.dtype != np.uint8:
            raise KinemaError(f"an image array must be (H, W, 3) uint8, got {src.shape} {src.dtype}")
        return fit_frames(src[None], size)[0]
    p = Path(src)
    if not p.is_file():
        raise VideoError(f"no such image: {p}")
    try:
        with Image.open(p) as im:
            rgb = np.array(im.convert("RGB"))
    except (OSError, ValueError, Image.DecompressionBombError) as e:
        raise VideoError(f"cannot read image {p}: {str(e).splitlines()[0] if str(e) else type(e).__name__}") from None
    if rgb.size == 0:
        raise VideoError(f"image {p} is empty")
    return fit_frames(rgb[None], size)[0]


def resample(frames: np.ndarray, src_fps: float, fps: float) -> np.ndarray:
    """Nearest-frame resampling in time from src_fps to fps (keeps the duration and the speed of motion)."""
    if abs(src_fps - fps) < 1e-6 or len(frames) == 1:
        return frames
    n = math.floor((len(frames) - 1) * fps / src_fps + 1e-6) + 1
    idx = np.clip(np.round(np.arange(n) * src_fps / fps).astype(int), 0, len(frames) - 1)
    return frames[idx]


def load_video(src: VideoInput, size: tuple[int, int], fps: float) -> np.ndarray:
    """A video file (any format FFmpeg reads; images are one-frame videos) or a (T, H, W, 3) uint8 array at
    fps, resampled to fps and fitted to size: (T, h, w, 3) uint8."""
    if isinstance(src, np.ndarray):
        if src.ndim != 4 or src.shape[-1] != 3 or src.dtype != np.uint8 or len(src) == 0:
            raise KinemaError(f"a video array must be (T, H, W, 3) uint8 with T >= 1, got {src.shape} {src.dtype}")
        frames = src
    else:
        frames, src_fps = read_video(src, max_frames=MAX_INPUT_FRAMES + 1)
        if len(frames) > MAX_INPUT_FRAMES:
            raise KinemaError(f"input video {src} has more than {MAX_INPUT_FRAMES} frames")
        frames = resample(frames, src_fps if len(frames) > 1 else fps, fps)
    return fit_frames(frames, size)


def trim(frames: np.ndarray, r: int, keep_end: bool) -> np.ndarray:
    """Drop (T - 1) % r frames so the clip has 1 + r k frames (the VAE's lengths): from the start when the
    end is kept (forward extension joins at the end), else from the end."""
    extra = (len(frames) - 1) % r
    return frames[extra:] if keep_end else frames[: len(frames) - extra]


def read_shots(path: str | Path) -> list[Shot]:
    """Read a shots file, YAML or JSON (JSON is YAML): {shots: [{prompt: str, seconds: number}, ...]}."""
    p = Path(path)
    if not p.is_file():
        raise KinemaError(f"no such shots file: {p}")
    try:
        data = yaml.safe_load(p.read_text())
    except (yaml.YAMLError, UnicodeDecodeError) as e:
        raise KinemaError(f"shots file {p} is not valid YAML or JSON: {str(e).splitlines()[0]}") from None
    if not isinstance(data, dict) or set(data) != {"shots"}:
        raise KinemaError(f"shots file {p} must hold exactly one key, 'shots'")
    return check_shots(data["shots"], str(p))


def check_shots(shots: object, where: str = "shots") -> list[Shot]:
    """Validate a list of {prompt, seconds} mappings (or Shot objects); one-line errors naming the shot."""
    if not isinstance(shots, list) or not shots:
        raise KinemaError(f"{where}: 'shots' must be a non-empty list")
    out = []
    for i, s in enumerate(shots, 1):
        if isinstance(s, Shot):
            s = {"prompt": s.prompt, "seconds": s.seconds}
        if not isinstance(s, dict):
            raise KinemaError(f"{where}: shot {i} must be a mapping with 'prompt' and 'seconds'")
        unknown = set(s) - {"prompt", "seconds"}
        if unknown:
            raise KinemaError(f"{where}: shot {i} has unknown field(s) {', '.join(sorted(map(str, unknown)))}")
        prompt, seconds = s.get("prompt"), s.get("seconds")
        if not isinstance(prompt, str) or not prompt.strip():
            raise KinemaError(f"{where}: shot {i} needs a non-empty 'prompt' string")
        if isinstance(seconds, bool) or not isinstance(seconds, int | float) or not (0 < seconds <= 60):
            raise KinemaError(f"{where}: shot {i} 'seconds' must be a number in (0, 60], got {seconds!r}")
        out.append(Shot(prompt, float(seconds)))
    return out


# ---- latent positions ----------------------------------------------------------------------------------


def latent_index(frame: int, r: int) -> int:
    """The latent frame that covers pixel frame `frame` (causal VAE: frame 0 alone, then chunks of r)."""
    return 0 if frame <= 0 else 1 + (frame - 1) // r


# ---- encoding ------------------------------------------------------------------------------------------


def encode(vae: VideoVAE, frames: np.ndarray) -> Tensor:
    """(T, H, W, 3) uint8 with T = 1 + r k -> normalised latents (1, C, 1 + k, h, w), streamed in chunks."""
    x = to_tensor(frames)[None]
    return vae.encode(x, chunk=4 if len(frames) > 33 else None)


def encode_still(vae: VideoVAE, image: np.ndarray) -> Tensor:
    """An image as a latent frame j >= 1: a pseudo-chunk of r copies after the image itself (1, C, 1, h, w)."""
    r = vae.cfg.temporal_ratio
    return encode(vae, np.repeat(image[None], 1 + r, axis=0))[:, :, 1:2]


def encode_head(vae: VideoVAE, frames: np.ndarray, k: int) -> Tensor:
    """The first r k frames as the LAST k latent frames of a clip (backward extension): a pseudo-clip of one
    copy of the first frame (latent frame 0, dropped) then those frames; a shorter input is padded at the
    start with copies of its first frame. (1, C, k, h, w)."""
    r = vae.cfg.temporal_ratio
    head = frames[: r * k]
    pad = np.repeat(head[:1], 1 + r * k - len(head), axis=0)
    return encode(vae, np.concatenate([pad, head]))[:, :, 1:]


def encode_tail(vae: VideoVAE, frames: np.ndarray, k: int) -> Tensor:
    """The last 1 + r (k - 1) frames re-encoded as a clip of their own, so they are valid FIRST k latent
    frames of the next clip (forward extension). (1, C, k, h, w)."""
    r = vae.cfg.temporal_ratio
    return encode(vae, frames[len(frames) - 1 - r * (k - 1) :])


def keyframe_reference(
    vae: VideoVAE, keyframes: list[tuple[np.ndarray, float]], fps: float, latent_frames: int, size: tuple[int, int]
) -> Reference:
    """Images at times (seconds): at t = 0 latent frame 0 exactly, elsewhere the latent frame covering that
    pixel frame, as a pseudo-chunk. Two keyframes in one latent frame, or one outside the clip, are errors."""
    r = vae.cfg.temporal_ratio
    w, h = size
    s = vae.cfg.spatial_ratio
    ref = Reference.empty(vae.cfg.latent_channels, latent_frames, h // s, w // s)
    last = r * (latent_frames - 1)
    used: dict[int, float] = {}
    for image, sec in keyframes:
        frame = round(sec * fps)
        if not math.isfinite(sec) or sec < 0 or frame > last:
            raise KinemaError(f"keyframe at {sec:g} s is outside the clip (0 to {last / fps:g} s)")
        j = latent_index(frame, r)
        if j in used:
            raise KinemaError(
                f"keyframes at {used[j]:g} s and {sec:g} s fall in the same latent frame ({r} frames); space them out"
            )
        used[j] = sec
        ref.put(j, encode(vae, image[None]) if j == 0 else encode_still(vae, image))
    return ref


def missing_latents(missing: tuple[float, float], fps: float, n_frames: int, r: int) -> list[int]:
    """Latent frames to regenerate for the missing time range [start, end) in seconds: every latent frame
    covering a pixel frame f with start <= f / fps < end."""
    start, end = missing
    duration = (n_frames - 1) / fps
    if not (math.isfinite(start) and math.isfinite(end)) or start < 0 or end <= start:
        raise KinemaError(f"missing range must be START:END seconds with 0 <= START < END, got {start:g}:{end:g}")
    if start > duration:
        raise KinemaError(f"missing range {start:g}:{end:g} s starts after the video ends ({duration:g} s)")
    frames = [f for f in range(n_frames) if start <= f / fps < end]
    if not frames:
        raise KinemaError(f"missing range {start:g}:{end:g} s contains no frame at {fps:g} fps")
    return sorted({latent_index(f, r) for f in frames})
