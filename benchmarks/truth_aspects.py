"""How the world's own ground truth scores at every bucket shape: renders of test scenes sampled at each
size, scored against their specs (metrics.score), with the median pixel area of their objects and a
digest of the rendered bytes (the same digest under two sources: the same renders).

The detectors must pass the ground truth (docs/WORLD_BENCH.md: at least 0.98 on every check). This checks
that at the sizes the buckets and the aspects benchmark use, not only at 64x64. To compare with an older
world, run it with that version's source first on the path, e.g.
`git worktree add /tmp/old e3eaa1c && PYTHONPATH=/tmp/old/src python benchmarks/truth_aspects.py`.

    python benchmarks/truth_aspects.py [--n 60]
"""

from __future__ import annotations

import argparse
import hashlib

import numpy as np

from kinema import metrics, world

SIZES = ((64, 64), (112, 64), (64, 112), (64, 48), (96, 64), (64, 96))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=60, help="test scenes per size")
    ap.add_argument("--seconds", type=float, default=2.0)
    args = ap.parse_args()
    fps = 12.0
    print(f"world from {world.__file__}, {args.n} test scenes per size, {args.seconds:g} s at {fps:g} fps")
    print(f"{'size':>8} {'joint':>6} {'color':>6} {'shape':>6} {'motion':>7} {'area px':>8} {'digest':>10}")
    for w, h in SIZES:
        scores, areas, digest = [], [], hashlib.sha256()
        for seed in range(args.n):
            scene = world.sample_scene(seed, "test", aspect=w / h, duration=args.seconds)
            frames = world.render(scene, w, h, fps)
            digest.update(frames.tobytes())
            scores.append(metrics.score(frames, world.scene_spec(scene), fps))
            # metrics.object_areas written out: older sources (the old world above) do not have it
            areas += [float(np.median(t.area[t.present])) for t in metrics.track(frames).values() if t.present.any()]
        s = metrics.summarize(scores)
        cells = " ".join(f"{s[k]:>6.3f}" for k in ("joint", "color", "shape"))
        print(f"{w:>4}x{h:<3} {cells} {s['motion']:>7.3f} {np.median(areas):>8.0f} {digest.hexdigest()[:10]:>10}")


if __name__ == "__main__":
    main()
