"""CPU time of the World benchmark's detector pass per 64x64, 32-frame video on one core, as a table.

    OMP_NUM_THREADS=1 PYTHONPATH=src python benchmarks/detector_speed.py [--n 40]

Each row is a prompt set (kinema.evaluate.prompt_set): world renders of its scenes at 64x64, 12 fps, cut or
extended to 32 frames, scored against the set's specs with metrics.score (segmentation, tracking, shape by
re-rendering, camera block matching, every check), then metrics.presence_curve (the per-frame drift curve
the report plots) on its own. Times are process CPU seconds (one thread), so other load on the machine
matters little. The budget (issue 3) is 50 ms per video for the score.
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Callable

import numpy as np

from kinema import evaluate, metrics, world

BUDGET_MS = 50.0


def cpu_ms(fn: Callable[[], object]) -> float:
    t = time.process_time()
    fn()
    return 1000 * (time.process_time() - t)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=40, help="videos per prompt set")
    parser.add_argument("--frames", type=int, default=32)
    args = parser.parse_args()
    if os.environ.get("OMP_NUM_THREADS") != "1":
        print("note: set OMP_NUM_THREADS=1 to measure one core")
    print(f"{'set':>10} {'n':>4} {'median ms':>10} {'mean ms':>8} {'p90 ms':>7} {'max ms':>7} {'curve ms':>9}")
    for name in ("test", "holdout", "probes"):
        items = evaluate.prompt_set(name, args.n)
        videos = [
            world.render(world.scene_from_dict(it["spec"]["scene"]), 64, 64, 12.0, frames=args.frames) for it in items
        ]
        metrics.score(videos[0], items[0]["spec"], 12.0)  # warm up (imports, caches)
        score = [
            cpu_ms(lambda v=v, it=it: metrics.score(v, it["spec"], 12.0)) for v, it in zip(videos, items, strict=True)
        ]
        curve = [
            cpu_ms(lambda v=v, it=it: metrics.presence_curve(v, it["spec"]))
            for v, it in zip(videos, items, strict=True)
        ]
        s = np.array(score)
        p90 = np.percentile(s, 90)
        print(
            f"{name:>10} {len(s):>4} {np.median(s):>10.1f} {s.mean():>8.1f} {p90:>7.1f} {s.max():>7.1f}"
            f" {np.median(curve):>9.1f}"
        )
    print(f"budget: {BUDGET_MS:g} ms per video (score)")


if __name__ == "__main__":
    main()
