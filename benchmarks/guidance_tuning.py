"""Sampling settings compared on a tuning set: test-split scenes 1000 onward, which neither the 200 prompts
that `kinema eval` scores (seeds 0-199) nor the Frechet reference (10000 onward) use, so a setting chosen
here is then measured once on the benchmark, not fitted to it.

    python benchmarks/guidance_tuning.py runs/dit9@4 runs/dit9@4@0.22:0.84 shipped [--n 64]

Each model spec is FOLDER[@GUIDANCE[@LO:HI]] (evaluate.model_spec; "shipped" for the shipped model): the
guidance scale and the interval of sampling times it is applied at (flow.in_guidance_interval). One video
per prompt, 30 Euler steps, seed 0; the table gives the suites, their mean, shape, the strict joint score and
the Frechet distance of suite G against as many reference renders as prompts (so at n = 64 it reads higher
than `kinema eval`'s at 200: compare rows, not with the benchmark's numbers). --steps, --sampler, --churn,
--shift, --eta and --autoguide change how this process samples every clip.

With --conditioned K every video extends the first K ground-truth frames of its scene (as `kinema eval
--conditioned K` does), and two more columns give the conditioned score (mean of min(1, spread / error)) and
the median error / spread of the objects' paths (evaluate.conditioned_score).
"""

from __future__ import annotations

import argparse
import functools
import sys
import time

from kinema import flow, pipeline
from kinema.evaluate import SUITES, from_model, model_spec, prompt_set, run_benchmark

START = 1000


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("models", nargs="+", help="FOLDER[@GUIDANCE[@LO:HI]]")
    ap.add_argument("--n", type=int, default=64)
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--sampler", choices=tuple(flow.SAMPLERS), default="euler", help="heun: two model calls a step")
    ap.add_argument("--churn", type=float, default=None, help="the stochastic sampler's share of renewed noise")
    ap.add_argument("--shift", type=float, default=None, help="sampling time shift (default: flow.shift_for_tokens)")
    ap.add_argument("--eta", type=float, default=None, help="guidance along the prediction (flow.projected_guidance)")
    ap.add_argument("--autoguide", default=None, metavar="FOLDER@W", help="weak model and weight (flow.autoguidance)")
    ap.add_argument("--conditioned", type=int, default=None, metavar="K", help="extend the first K true frames")
    args = ap.parse_args()
    observed = args.conditioned
    if args.churn is not None and args.sampler != "stochastic":
        ap.error("--churn needs --sampler stochastic")
    if args.churn is not None:  # this process's stochastic sampler renews that share of the noise
        flow.SAMPLERS["stochastic"] = functools.partial(flow.stochastic, churn=args.churn)
    if args.shift is not None:  # this process samples every clip with that shift, whatever its token count
        flow.shift_for_tokens = lambda tokens, **_: args.shift
    if args.autoguide is not None:  # this process's guidance also runs the weak model, for every clip
        folder, _, weight = args.autoguide.rpartition("@")
        try:
            w = float(weight)
        except ValueError:
            ap.error(f"--autoguide must be FOLDER@WEIGHT, got {args.autoguide!r}")
        weak = pipeline.Pipeline.from_pretrained(folder).dit
        pipeline.text_model_fn = functools.partial(pipeline.text_model_fn, autoguide=(weak, w))
    items = prompt_set("test", args.n, start=START)
    mode = "" if observed is None else f", extending {observed} true frames"
    churn = "" if args.churn is None else f" (churn {args.churn:g})"
    knobs = "" if args.shift is None else f", shift {args.shift:g}"
    knobs += "" if args.eta is None else f", projected guidance eta {args.eta:g}"
    knobs += "" if args.autoguide is None else f", autoguided by {args.autoguide}"
    print(f"test scenes {START}-{START + args.n - 1}, {args.steps} {args.sampler}{churn} steps{knobs}, seed 0{mode}")
    extra = "" if observed is None else " cond. score | error / spread |"
    print("| model | A | B | C | D | E | mean A-E | shape | strict | FD |" + extra + " s / video |")
    print("|---" * (11 if observed is None else 13) + "|")
    for spec in args.models:
        pipe, g, interval, label = model_spec(spec)
        started = time.time()
        source = from_model(
            pipe,
            args.steps,
            g,
            sampler=args.sampler,
            guidance_interval=interval,
            observed=observed,
            guidance_eta=args.eta,
        )
        rep = run_benchmark(items, source, desc=label, distribution="test", quiet=True, observed=observed)
        for message, count in rep["errors"].items():
            print(f"warning: {label}: {count} of {args.n} videos failed: {message}", file=sys.stderr)
        suites = [rep["suites"].get(k, float("nan")) for k in SUITES if k[0] in "ABCDE"]
        cells = [f"{v:.2f}" for v in suites] + [f"{sum(suites) / len(suites):.3f}", f"{rep['checks']['shape']:.3f}"]
        cells += [f"{rep['strict_joint']:.3f}", f"{rep['distribution']['fd']:.2f}"]
        if observed is not None:
            cells += [f"{rep['conditioned']['score']:.3f}", f"{rep['conditioned']['ratio']:.1f}"]
        cells.append(f"{(time.time() - started) / args.n:.1f}")
        print(f"| {label} | " + " | ".join(cells) + " |", flush=True)


if __name__ == "__main__":
    main()
