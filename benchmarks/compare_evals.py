"""Is B better than A, beyond the prompts' noise? Paired bootstrap intervals of the difference of two
`kinema eval` runs on the same prompts.

    python benchmarks/compare_evals.py runs/eval10_vft,runs/eval10_vft_s1 runs/eval12_apg,runs/eval12_apg_s1

A and B are comma-separated eval folders (their items.jsonl), the same sets at the same seeds in the same
order (seed 0's folder first, then seed 1's, ...). Rows are paired by folder position, prompt id and sample.
For each statistic (each suite A-E, their mean, shape, the strict joint score) the table gives A, B, B - A
and the 95% interval of B - A from resampling prompts (all of a prompt's rows together, in both runs at
once: a paired cluster bootstrap), and the share of resamples where B is ahead. An interval that holds 0
means the prompts cannot tell the two apart. The suite statistics are computed as report.json computes
them: each suite's mean over the rows that have a check in it, so suite D rests on its few falling scenes.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from kinema.evaluate import SUITES, suite_scores

AE = [s for s in SUITES if s[0] in "ABCDE"]
COLUMNS = [*AE, "shape", "strict joint"]


def load(folders: str) -> dict[tuple[int, str, int], np.ndarray]:
    """(folder position, prompt id, sample) -> [suite A..E (NaN where a row has no check), shape, joint]."""
    rows = {}
    for pos, folder in enumerate(folders.split(",")):
        path = Path(folder) / "items.jsonl"
        if not path.is_file():
            raise SystemExit(f"error: no items.jsonl in {folder} (a `kinema eval --out` folder)")
        for line in path.read_text().splitlines():
            item = json.loads(line)
            scores, suites = item["scores"], suite_scores(item["scores"])
            vals = [suites.get(s, np.nan) for s in AE] + [scores.get("shape", np.nan), scores.get("joint", 0.0)]
            rows[(pos, item["id"], int(item.get("sample", 0)))] = np.array(vals, dtype=np.float64)
    return rows


def statistics(x: np.ndarray) -> np.ndarray:
    """(rows, columns) -> each column's mean over its rows, and the mean of suites A-E inserted after E."""
    with np.errstate(invalid="ignore"):
        means = np.nanmean(x, axis=-2)
    return np.concatenate(
        [means[..., : len(AE)], means[..., : len(AE)].mean(-1, keepdims=True), means[..., len(AE) :]], -1
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("a", help="FOLDER[,FOLDER...]: the reference runs")
    ap.add_argument("b", help="FOLDER[,FOLDER...]: the candidate runs, at the same seeds")
    ap.add_argument("--boot", type=int, default=2000)
    args = ap.parse_args()
    ra, rb = load(args.a), load(args.b)
    keys = sorted(set(ra) & set(rb))
    if len(keys) != len(ra) or len(keys) != len(rb):
        raise SystemExit(f"error: the runs do not hold the same rows ({len(ra)} and {len(rb)}, {len(keys)} shared)")
    xa, xb = np.stack([ra[k] for k in keys]), np.stack([rb[k] for k in keys])
    prompts = sorted({k[1] for k in keys})
    rows_of = [np.array([i for i, k in enumerate(keys) if k[1] == p]) for p in prompts]
    rng = np.random.default_rng(0)
    diffs = []
    for _ in range(args.boot):
        idx = np.concatenate([rows_of[j] for j in rng.integers(0, len(prompts), len(prompts))])
        diffs.append(statistics(xb[idx]) - statistics(xa[idx]))
    diffs = np.array(diffs)
    sa, sb = statistics(xa), statistics(xb)
    names = [*AE, "mean A-E", "shape", "strict joint"]
    print(f"{len(prompts)} prompts, {len(keys)} rows; A = {args.a}; B = {args.b}")
    print("| statistic | A | B | B - A | 95% interval of B - A | B ahead |")
    print("|---|---|---|---|---|---|")
    for i, name in enumerate(names):
        lo, hi = np.nanpercentile(diffs[:, i], [2.5, 97.5])
        ahead = float(np.mean(diffs[:, i] > 0))
        print(f"| {name} | {sa[i]:.3f} | {sb[i]:.3f} | {sb[i] - sa[i]:+.3f} | [{lo:+.3f}, {hi:+.3f}] | {ahead:.0%} |")


if __name__ == "__main__":
    main()
