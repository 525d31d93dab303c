"""Frame review: a generated video's frames are checked before any file is written (`Video.save` calls
`review_frames`); a video that fails raises ReviewError and nothing is written (the CLI exits with code 4).

What is checked, on up to MAX_FRAMES frames evenly spaced over the video (first and last included, so
about every ceil(T / 8)-th frame; cost is bounded whatever the length):

1. Nudity: nudenet's detector (a YOLOv8n ONNX model, 320n.onnx, shipped inside the `nudenet` wheel; runs
   offline on CPU through onnxruntime). Frames are padded to a square and resized to the detector's
   320x320 input (a 64x64 frame is upscaled 5x). A frame fails when an exposed-anatomy class scores at
   least NUDITY_THRESHOLD (0.7 for BUTTOCKS_EXPOSED, see THRESHOLDS) anywhere in it.
2. Blank output: every checked frame is one flat colour (an all-black or empty render is not a video).

Not checked, for want of an offline detector: violence and gore, hate symbols, real people's likeness,
logos and characters. Those rely on prompt moderation (kinema.moderation) before generation.
"""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np

from kinema.conditioning import KinemaError

MAX_FRAMES = 8
NUDITY_THRESHOLD = 0.5
# BUTTOCKS_EXPOSED reached 0.44 on benign procedural-world frames (pairs of round shapes; 40 scenes x 3
# frames, the others stayed under 0.01), so it needs a higher score to fail a video
THRESHOLDS = {"BUTTOCKS_EXPOSED": 0.7}
BLANK_STD = 2.0  # grey levels: a frame whose pixels vary less than this is one flat colour
EXPOSED = (
    "FEMALE_BREAST_EXPOSED",
    "FEMALE_GENITALIA_EXPOSED",
    "MALE_GENITALIA_EXPOSED",
    "BUTTOCKS_EXPOSED",
    "ANUS_EXPOSED",
)


class ReviewError(KinemaError):
    """A generated video failed frame review; it was not written (the CLI exits with code 4)."""


class NudityDetector:
    """nudenet's ONNX detector: `scores(frames)` -> {label: (N,) best score over the frame} for (N, H, W, 3)
    uint8 RGB frames. Pre-processing follows nudenet's own (pad bottom/right to a square, resize, RGB / 255)."""

    size = 320

    def __init__(self, model_path: str | Path | None = None) -> None:
        import nudenet.nudenet as nn
        import onnxruntime as ort

        path = Path(model_path) if model_path else Path(nn.__file__).parent / "320n.onnx"
        opts = ort.SessionOptions()
        opts.log_severity_level = 3
        self.session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
        self.input = self.session.get_inputs()[0].name
        self.labels: list[str] = list(vars(nn)["__labels"])  # the model's class order, as nudenet names them

    def prepare(self, frames: np.ndarray) -> np.ndarray:
        import cv2

        n, h, w, _ = frames.shape
        side = max(h, w)
        square = np.zeros((n, side, side, 3), np.uint8)
        square[:, :h, :w] = frames
        resized = [cv2.resize(f, (self.size, self.size), interpolation=cv2.INTER_LINEAR) for f in square]
        return np.stack(resized).astype(np.float32).transpose(0, 3, 1, 2) / 255.0  # (N, 3, 320, 320)

    def scores(self, frames: np.ndarray, batch: int = 4) -> dict[str, np.ndarray]:
        best = []
        for i in range(0, len(frames), batch):
            out = self.session.run(None, {self.input: self.prepare(frames[i : i + batch])})[0]  # (B, 4 + K, A)
            best.append(out[:, 4:, :].max(-1))  # (B, K): the best anchor per class
        s = np.concatenate(best)
        return {label: s[:, k] for k, label in enumerate(self.labels)}


@functools.cache
def _detector() -> NudityDetector:
    return NudityDetector()


def sample_indices(n: int, k: int = MAX_FRAMES) -> list[int]:
    """Up to k frame indices spread evenly over n frames, first and last included."""
    m = min(n, k)
    return sorted({round(i * (n - 1) / max(1, m - 1)) for i in range(m)})


def review_frames(frames: np.ndarray, max_frames: int = MAX_FRAMES, detector: NudityDetector | None = None) -> dict:
    """Raise ReviewError if the video must not be written; else return what was checked (for provenance)."""
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8 or len(frames) == 0:
        raise ReviewError(f"frames must be (T, H, W, 3) uint8, got {frames.shape} {frames.dtype}")
    idx = sample_indices(len(frames), max_frames)
    picked = frames[idx]
    if all(f.reshape(-1, 3).std(0).max() < BLANK_STD for f in picked):
        raise ReviewError("output refused by frame review: the video is blank (every frame one flat colour)")
    scores = (detector or _detector()).scores(picked)
    best = {lab: float(s.max()) for lab, s in scores.items() if lab in EXPOSED}
    for lab, s in scores.items():
        if lab in EXPOSED and best[lab] >= THRESHOLDS.get(lab, NUDITY_THRESHOLD):
            frame = idx[int(s.argmax())]
            raise ReviewError(f"output refused by frame review: nudity ({lab} {best[lab]:.2f} at frame {frame})")
    return {"frames_checked": idx, "nudity": {k: round(v, 3) for k, v in best.items()}, "checks": ["nudity", "blank"]}
