"""Prompt moderation on the held-out split: precision and recall per category, and blocked-vs-allowed.

    OMP_NUM_THREADS=1 PYTHONPATH=src python benchmarks/moderation.py [--world 500]

Scores kinema.moderation.Moderator (shipped head + name lists) on the "test" split of
src/kinema/assets/moderation/prompts.jsonl, which the head never saw (`python -m kinema.moderation train`
uses "train" only), plus procedural-world prompts from the world's test split, all of which must pass.
"""

from __future__ import annotations

import argparse
import time

import torch

from kinema.moderation import CATEGORIES, Moderator, load_prompts, world_prompts


def table(rows: list[tuple[str, list[str]]], flagged: list[list[str]]) -> list[tuple[str, int, int, int, int]]:
    """(name, support, true positives, false positives, false negatives) per category and for 'any'."""
    out = []
    for c in (*CATEGORIES, "any"):
        truth = [bool(cats) if c == "any" else c in cats for _, cats in rows]
        pred = [bool(f) if c == "any" else c in f for f in flagged]
        tp = sum(t and p for t, p in zip(truth, pred, strict=True))
        fp = sum(p and not t for t, p in zip(truth, pred, strict=True))
        fn = sum(t and not p for t, p in zip(truth, pred, strict=True))
        out.append((c, sum(truth), tp, fp, fn))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--world", type=int, default=500, help="world prompts (test split) that must all pass")
    parser.add_argument("--errors", action="store_true", help="print every misclassified prompt")
    args = parser.parse_args()
    torch.set_num_threads(1)
    rows = load_prompts("test")
    mod = Moderator()
    started = time.time()
    verdicts = mod([t for t, _ in rows])
    per_prompt_ms = 1000 * (time.time() - started) / len(rows)
    flagged = [v.categories for v in verdicts]
    print(f"held-out prompts: {len(rows)} ({sum(not c for _, c in rows)} benign); {per_prompt_ms:.1f} ms/prompt")
    print(f"| {'category':<14} | support | precision | recall | FP | FN |")
    print(f"|{'-' * 16}|---------|-----------|--------|----|----|")
    for c, n, tp, fp, fn in table(rows, flagged):
        prec = tp / (tp + fp) if tp + fp else float("nan")
        rec = tp / n if n else float("nan")
        print(f"| {c:<14} | {n:>7} | {prec:>9.2f} | {rec:>6.2f} | {fp:>2} | {fn:>2} |")
    if args.errors:
        for (text, cats), f in zip(rows, flagged, strict=True):
            if set(cats) != set(f):
                print(f"  want {cats or ['benign']}, got {f or ['allowed']}: {text}")
    world = world_prompts("test", args.world)
    blocked = [(p, v.categories) for p, v in zip(world, mod(world), strict=True) if not v.allowed]
    print(f"world prompts (test split): {len(world) - len(blocked)}/{len(world)} allowed")
    for p, cats in blocked:
        print(f"  blocked {cats}: {p}")


if __name__ == "__main__":
    main()
