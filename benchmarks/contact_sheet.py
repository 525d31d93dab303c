"""Sample frames of the shipped (or a given) model for a few prompts, as one PNG contact sheet.

python benchmarks/contact_sheet.py --out docs/samples.png [--model PATH] [--seed 0]
"""

from __future__ import annotations

import argparse
from pathlib import Path

from kinema import Pipeline
from kinema.evaluate import contact_sheet

PROMPTS = [
    "a red circle falls and bounces",
    "a blue square moves to the left",
    "a yellow triangle spins clockwise",
    "a green circle moves up and a magenta square stays still",
    "a cyan triangle moves to the right, camera pans left",
    "a small magenta circle moves down quickly, behind a dark bar",
]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=Path("docs/samples.png"))
    ap.add_argument("--model", type=Path, default=None)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    pipe = Pipeline.from_pretrained(args.model)
    videos = [pipe(p, seed=args.seed).frames for p in PROMPTS]
    print(contact_sheet(videos, PROMPTS, args.out, columns=7))


if __name__ == "__main__":
    main()
