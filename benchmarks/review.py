"""Frame review cost: nudenet's detector per frame at the shipped model's sizes, and review_frames per video.

    OMP_NUM_THREADS=1 PYTHONPATH=src python benchmarks/review.py [--threads 1]

Frames come from the procedural world (the shipped model's domain), so this also shows the detector's
highest exposed-class score on benign frames (the margin to NUDITY_THRESHOLD). With --media, the same for
benign real content, the footage and photos of ../shared/media at their own size, 256 and 64 px, and for
the shipped model's clips in runs/detect_data (`python -m kinema.detect data`) when present: the highest
exposed-class score (over up to 40 evenly spaced frames; THRESHOLDS applied) and review_frames' verdict.
None of it is nudity: recall on real nudity is not measured anywhere (no such images offline).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from kinema import review, world

MEDIA = Path(__file__).resolve().parents[2] / "shared" / "media"  # ../shared/media beside the project
if not MEDIA.is_dir():
    MEDIA = Path("/work/shared/media")


def timed(fn, repeat: int) -> tuple[float, float]:
    """(wall, CPU) seconds per call, after one warm-up call."""
    fn()
    w, c = time.perf_counter(), time.process_time()
    for _ in range(repeat):
        fn()
    return (time.perf_counter() - w) / repeat, (time.process_time() - c) / repeat


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=0, help="onnxruntime intra-op threads (0: its default)")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--media", action="store_true", help="also score benign real footage and model output")
    args = parser.parse_args()
    started = time.perf_counter()
    det = review.NudityDetector()
    if args.threads:
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.intra_op_num_threads = args.threads
        det.session = ort.InferenceSession(det.session._model_path, opts, providers=["CPUExecutionProvider"])
    print(f"detector load: {time.perf_counter() - started:.2f} s")
    print("| frames (size) | wall ms / frame | CPU ms / frame | max exposed score |")
    print("|---|---|---|---|")
    for w, h in ((64, 64), (96, 64), (256, 256)):
        frames = world.render(world.sample_scene(7, aspect=w / h), w, h, 12.0)[:8]
        wall, cpu = timed(lambda f=frames: det.scores(f), args.repeat)
        best = max(float(s.max()) for lab, s in det.scores(frames).items() if lab in review.EXPOSED)
        print(f"| 8 ({w}x{h}) | {1000 * wall / 8:.1f} | {1000 * cpu / 8:.1f} | {best:.3f} |")
    for n in (25, 721):
        frames = np.concatenate([world.render(world.sample_scene(1), 64, 64, 12.0)] * (n // 25 + 1))[:n]
        review._detector.cache_clear()
        review._detector()  # load outside the timing
        wall, cpu = timed(lambda f=frames: review.review_frames(f), args.repeat)
        print(f"review_frames on {n} frames (64x64; {review.MAX_FRAMES} checked): {wall:.3f} s wall, {cpu:.3f} s CPU")
    if args.media:
        benign(det)


def _resize(frames: np.ndarray, side: int) -> np.ndarray:
    from PIL import Image

    h, w = frames.shape[1:3]
    size = (side, round(side * h / w)) if w >= h else (round(side * w / h), side)
    return np.stack([np.asarray(Image.fromarray(f).resize(size, Image.BILINEAR)) for f in frames])


def benign(det: review.NudityDetector) -> None:
    """Highest exposed-class score (relative to its threshold) and the review verdict on benign content."""
    from kinema.video_io import read_video

    clips = []
    for f in sorted(MEDIA.glob("*")) if MEDIA.is_dir() else []:
        if f.suffix.lower() in (".mp4", ".png", ".jpg"):
            v = read_video(f)[0]
            clips += [(f"{f.name} ({v.shape[2]}x{v.shape[1]})", v)]
            clips += [(f"{f.name} ({side} px)", _resize(v, side)) for side in (256, 64)]
    gen = sorted(Path("runs/detect_data").glob("gen_*.npz"))
    clips += [(f"shipped model, {f.stem}", np.load(f)["frames"]) for f in gen]
    print("\n| benign content | frames scored | highest exposed class (score) | review_frames |")
    print("|---|---|---|---|")
    worst_gen = (0.0, "")
    for name, v in clips:
        picked = v[review.sample_indices(len(v), 40)]
        scores = {k: float(s.max()) for k, s in det.scores(picked).items() if k in review.EXPOSED}
        top = max(scores, key=lambda k: scores[k] / review.THRESHOLDS.get(k, review.NUDITY_THRESHOLD))
        try:
            review.review_frames(v, detector=det)
            verdict = "pass"
        except review.ReviewError as e:
            verdict = "REFUSED: " + str(e).split(": ", 1)[1]
        if name.startswith("shipped model"):
            worst_gen = max(worst_gen, (scores[top], f"{top} {scores[top]:.3f} ({name}), {verdict}"))
            continue
        print(f"| {name} | {len(picked)} | {top} ({scores[top]:.3f}) | {verdict} |")
    if gen:
        print(f"| shipped model, {len(gen)} clips (64x64) | up to 40 each | worst: {worst_gen[1]} | |")


if __name__ == "__main__":
    main()
