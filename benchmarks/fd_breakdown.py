"""What the Frechet distance of suite G sees: its two terms and the world encoder's own label heads.

    python benchmarks/fd_breakdown.py shipped runs/dit8 [--n 64] [--seed 0]

For the first n test prompts, each model's videos (as `kinema eval` samples them: 30 Euler steps,
the model's guidance, the same seeds) and the ground-truth renders of n disjoint test prompts (the FD's reference)
go through the shipped world encoder. Printed: the FD split into its mean term ||mu_a - mu_b||^2 and its
covariance term, and, for every label the encoder was trained on (hues, shapes, motion kinds, camera
moves, corruptions), the mean head output on each set: sigmoid for the hue/shape/motion labels, softmax
for camera and corruption. A label whose rate differs most from the ground truth's says what kind of
difference the FD is measuring. The ground truth of the prompts themselves is a column too (the floor).
"""

from __future__ import annotations

import argparse

import numpy as np
import torch
from scipy import linalg

from kinema import fvd, world
from kinema.evaluate import from_model, ground_truth, prompt_set, sample_videos
from kinema.pipeline import Pipeline


def fd_terms(a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    """(mean term, covariance term) of the Frechet distance; their sum is fvd.frechet_distance(a, b)."""
    s_a, s_b = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    cov = float(np.trace(s_a + s_b - 2 * np.real(linalg.sqrtm(s_a @ s_b))))
    return float(np.sum((a.mean(0) - b.mean(0)) ** 2)), cov


@torch.no_grad()
def head_rates(encoder: fvd.VideoEncoder, feats: np.ndarray) -> dict[str, float]:
    f = torch.from_numpy(feats).float()
    names = [f"hue {h}" for h in world.HUES] + [f"shape {s}" for s in world.SHAPES]
    names += [f"motion {m}" for m in world.MOTIONS]
    rates = dict(zip(names, torch.sigmoid(encoder.labels(f)).mean(0).tolist(), strict=True))
    for prefix, labels, head in (
        ("camera", world.CAMERA_MOVES, encoder.camera),
        ("corrupt", fvd.CORRUPTIONS, encoder.corruption),
    ):
        probs = head(f).softmax(-1).mean(0).tolist()
        rates |= {f"{prefix} {c}": p for c, p in zip(labels, probs, strict=True)}
    return rates


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("models", nargs="+", help="model folders, or 'shipped'")
    ap.add_argument("--n", type=int, default=64)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    encoder = fvd.load_encoder()
    items = prompt_set("test", args.n)
    ref = fvd.features(encoder, [ground_truth(it)[0] for it in prompt_set("test", args.n, start=10_000)])
    sets = {"ground truth": fvd.features(encoder, [ground_truth(it)[0] for it in items])}
    for name in args.models:
        pipe = Pipeline.from_pretrained(None if name == "shipped" else name)
        sets[name] = fvd.features(encoder, sample_videos(from_model(pipe, seed=args.seed), items))
    cols = ["reference", *sets]
    print(f"n = {args.n} test prompts; reference: {args.n} disjoint ground-truth renders")
    print("| | " + " | ".join(cols[1:]) + " |")
    print("|---" * len(cols) + "|")
    terms = {name: fd_terms(f, ref) for name, f in sets.items()}
    print("| FD | " + " | ".join(f"{sum(terms[c]):.2f}" for c in cols[1:]) + " |")
    print("| mean term | " + " | ".join(f"{terms[c][0]:.2f}" for c in cols[1:]) + " |")
    print("| covariance term | " + " | ".join(f"{terms[c][1]:.2f}" for c in cols[1:]) + " |")
    rates = {c: head_rates(encoder, f) for c, f in ({"reference": ref} | sets).items()}
    print()
    print("| encoder head: mean output | " + " | ".join(cols) + " |")
    print("|---" * (len(cols) + 1) + "|")
    order = sorted(rates["reference"], key=lambda k: -max(abs(rates[c][k] - rates["reference"][k]) for c in cols))
    for key in order:
        print(f"| {key} | " + " | ".join(f"{rates[c][key]:.2f}" for c in cols) + " |")


if __name__ == "__main__":
    main()
