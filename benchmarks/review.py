"""Frame review cost: nudenet's detector per frame at the shipped model's sizes, and review_frames per video.

    OMP_NUM_THREADS=1 PYTHONPATH=src python benchmarks/review.py [--threads 1]

Frames come from the procedural world (the shipped model's domain), so this also shows the detector's
highest exposed-class score on benign frames (the margin to NUDITY_THRESHOLD).
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from kinema import review, world


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


if __name__ == "__main__":
    main()
