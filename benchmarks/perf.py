"""Speed and memory of the default generation on this machine, printed as a table.

    python benchmarks/perf.py [--model PATH] [--repeats 3]

Rows: the bf16 and fp32 matmul ceilings measured here; the DiT forward (CFG batch of 2, bf16 autocast)
at the default clip and at larger token counts, as GFLOP/s and as a fraction of the bf16 ceiling; the cold
`kinema generate` wall time of the default clip (a fresh process: imports, model load, 30 steps, decode,
MP4 write) and its peak resident memory. Medians over --repeats; the machine is shared, so compare rows
from one run, as ratios.
"""

from __future__ import annotations

import argparse
import math
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from kinema.dit import DiT, forward_flops
from kinema.pipeline import SHIPPED_MODEL, Pipeline


def timed(fn, repeats: int, warmup: int = 1) -> float:
    for _ in range(warmup):
        fn()
    samples = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - t)
    return statistics.median(samples)


def matmul_ceiling(dtype: torch.dtype, n: int = 2048, repeats: int = 5) -> float:
    a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
    return 2 * n**3 / timed(lambda: a @ b, repeats) / 1e9


@torch.no_grad()
def dit_rate(dit: DiT, latent: tuple[int, int, int], text_len: int, repeats: int) -> tuple[float, float, int]:
    T, h, w = latent
    x = torch.randn(2, dit.cfg.in_channels, T, h, w)
    t = torch.rand(2)
    emb, mask = torch.randn(2, text_len, dit.cfg.text_dim), torch.ones(2, text_len, dtype=torch.bool)
    tokens = T * h * w // math.prod(dit.cfg.patch)

    def run() -> None:
        with torch.autocast("cpu", dtype=torch.bfloat16):
            dit(x, t, emb, mask)

    sec = timed(run, repeats)
    return sec, 2 * forward_flops(dit.cfg, tokens, text_len) / sec / 1e9, tokens


def cold_generate(model: Path | None, repeats: int) -> tuple[float, float]:
    walls = []
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(repeats):
            cmd = [sys.executable, "-m", "kinema", "generate", "a red circle falls and bounces", "-q", "-o",
                   f"{tmp}/out{i}.mp4"] + (["--model", str(model)] if model else [])  # fmt: skip
            t = time.perf_counter()
            subprocess.run(cmd, check=True, capture_output=True)
            walls.append(time.perf_counter() - t)
    peak_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    return statistics.median(walls), peak_mb


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", type=Path, default=None, help="model folder (default: shipped)")
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    bf16 = matmul_ceiling(torch.bfloat16)
    fp32 = matmul_ceiling(torch.float32)
    pipe = Pipeline.from_pretrained(args.model)
    rows = [("matmul 2048^2 bf16", "", f"{bf16:.0f} GFLOP/s", "1.00"),
            ("matmul 2048^2 fp32", "", f"{fp32:.0f} GFLOP/s", f"{fp32 / bf16:.2f}")]  # fmt: skip
    meta = pipe.meta
    s = pipe.vae.cfg.spatial_ratio
    for label, (frames, w, h) in {
        "DiT fwd, default clip": (meta["frames"], meta["width"], meta["height"]),
        "DiT fwd, 128x128 2 s": (meta["frames"], 128, 128),
        "DiT fwd, 256x256 2 s": (meta["frames"], 256, 256),
    }.items():
        latent = (1 + (frames - 1) // pipe.vae.cfg.temporal_ratio, h // s, w // s)
        sec, rate, tokens = dit_rate(pipe.dit, latent, meta.get("text_len", 128) // 2, args.repeats)
        rows.append((f"{label} ({tokens} tok x2)", f"{sec * 1000:.1f} ms", f"{rate:.0f} GFLOP/s", f"{rate / bf16:.2f}"))
    wall, peak = cold_generate(args.model, args.repeats)
    rows.append(("cold `kinema generate`, default clip", f"{wall:.1f} s", f"peak RSS {peak:.0f} MB", ""))
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, model {args.model or SHIPPED_MODEL}")
    print(f"| {'what':44} | {'time':>9} | {'rate':>18} | {'of bf16 peak':>12} |")
    print(f"|{'-' * 46}|{'-' * 11}|{'-' * 20}|{'-' * 14}|")
    for r in rows:
        print(f"| {r[0]:44} | {r[1]:>9} | {r[2]:>18} | {r[3]:>12} |")


if __name__ == "__main__":
    main()
