"""Sampling settings compared on a tuning set: test-split scenes 1000 onward, which neither the 200 prompts
that `kinema eval` scores (seeds 0-199) nor the Frechet reference (10000 onward) use, so a setting chosen
here is then measured once on the benchmark, not fitted to it.

    python benchmarks/guidance_tuning.py runs/dit9@4 runs/dit9@4@0.22:0.84 shipped [--n 64]

Each model spec is FOLDER[@GUIDANCE[@LO:HI]] (evaluate.model_spec; "shipped" for the shipped model): the
guidance scale and the interval of sampling times it is applied at (flow.in_guidance_interval). One video
per prompt, 30 Euler steps, seed 0; the table gives the suites, their mean, shape, the strict joint score
and the Frechet distance of suite G against as many reference renders as prompts (so at n = 64 it reads
higher than `kinema eval`'s at 200: compare rows, not with the benchmark's numbers).
"""

from __future__ import annotations

import argparse
import time

from kinema.evaluate import SUITES, from_model, model_spec, prompt_set, run_benchmark

START = 1000


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("models", nargs="+", help="FOLDER[@GUIDANCE[@LO:HI]]")
    ap.add_argument("--n", type=int, default=64)
    args = ap.parse_args()
    items = prompt_set("test", args.n, start=START)
    print(f"test scenes {START}-{START + args.n - 1}, 30 Euler steps, seed 0")
    print("| model | A | B | C | D | E | mean A-E | shape | strict | FD | s / video |")
    print("|---" * 11 + "|")
    for spec in args.models:
        pipe, g, interval, label = model_spec(spec)
        started = time.time()
        source = from_model(pipe, guidance=g, guidance_interval=interval)
        rep = run_benchmark(items, source, desc=label, distribution="test", quiet=True)
        suites = [rep["suites"].get(k, float("nan")) for k in SUITES if k[0] in "ABCDE"]
        cells = [f"{v:.2f}" for v in suites] + [f"{sum(suites) / len(suites):.3f}", f"{rep['checks']['shape']:.3f}"]
        cells += [f"{rep['strict_joint']:.3f}", f"{rep['distribution']['fd']:.2f}"]
        cells.append(f"{(time.time() - started) / args.n:.1f}")
        print(f"| {label} | " + " | ".join(cells) + " |", flush=True)


if __name__ == "__main__":
    main()
