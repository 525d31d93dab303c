"""Speed and memory of the default generation on this machine, printed as a table.

    python benchmarks/perf.py [--model PATH] [--repeats 3] [--compile]

Rows: the bf16 and fp32 matmul ceilings measured here; the DiT forward (CFG batch of 2, bf16 autocast)
at the default clip and at larger token counts, as GFLOP/s and as a fraction of the bf16 ceiling (with
--compile, also under torch.compile, timed interleaved with the eager forward; compiling takes a minute or
more per shape on this CPU the first time, then inductor's on-disk cache serves it); the cold
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

from kinema.dit import forward_flops
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
def dit_rates(
    dits: dict[str, torch.nn.Module], cfg, latent: tuple[int, int, int], text_len: int, repeats: int
) -> tuple[dict[str, float], dict[str, float], int]:
    """Seconds and GFLOP/s of each variant's forward at one latent shape, timed interleaved (variant A, B,
    A, B, ...) so that a change in the machine's load hits every variant alike."""
    T, h, w = latent
    x = torch.randn(2, cfg.in_channels, T, h, w)
    t = torch.rand(2)
    emb, mask = torch.randn(2, text_len, cfg.text_dim), torch.ones(2, text_len, dtype=torch.bool)
    tokens = T * h * w // math.prod(cfg.patch)

    def run(dit: torch.nn.Module) -> None:
        with torch.autocast("cpu", dtype=torch.bfloat16):
            dit(x, t, emb, mask)

    samples: dict[str, list[float]] = {name: [] for name in dits}
    for dit in dits.values():  # warm-up (and, for a compiled variant, compilation)
        run(dit)
    for _ in range(repeats):
        for name, dit in dits.items():
            start = time.perf_counter()
            run(dit)
            samples[name].append(time.perf_counter() - start)
    sec = {name: statistics.median(v) for name, v in samples.items()}
    return sec, {name: 2 * forward_flops(cfg, tokens, text_len) / s / 1e9 for name, s in sec.items()}, tokens


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
    ap.add_argument("--compile", action="store_true", help="also time the DiT under torch.compile (inductor)")
    args = ap.parse_args()
    bf16 = matmul_ceiling(torch.bfloat16)
    fp32 = matmul_ceiling(torch.float32)
    pipe = Pipeline.from_pretrained(args.model)
    rows = [("matmul 2048^2 bf16", "", f"{bf16:.0f} GFLOP/s", "1.00"),
            ("matmul 2048^2 fp32", "", f"{fp32:.0f} GFLOP/s", f"{fp32 / bf16:.2f}")]  # fmt: skip
    meta = pipe.meta
    s = pipe.vae.cfg.spatial_ratio
    dits: dict[str, torch.nn.Module] = {"": pipe.dit}
    if args.compile:  # inductor on CPU: fuses the norms, modulation, RoPE and softmax around the matmuls
        dits[", compiled"] = torch.compile(pipe.dit, dynamic=False)
    for label, (frames, w, h) in {
        "DiT fwd, default clip": (meta["frames"], meta["width"], meta["height"]),
        "DiT fwd, 128x128 2 s": (meta["frames"], 128, 128),
        "DiT fwd, 256x256 2 s": (meta["frames"], 256, 256),
    }.items():
        latent = (1 + (frames - 1) // pipe.vae.cfg.temporal_ratio, h // s, w // s)
        sec, rate, tokens = dit_rates(dits, pipe.dit.cfg, latent, meta.get("text_len", 128) // 2, args.repeats)
        for name in dits:
            rows.append((f"{label}{name} ({tokens} tok x2)", f"{sec[name] * 1000:.1f} ms",
                         f"{rate[name]:.0f} GFLOP/s", f"{rate[name] / bf16:.2f}"))  # fmt: skip
    wall, peak = cold_generate(args.model, args.repeats)
    rows.append(("cold `kinema generate`, default clip", f"{wall:.1f} s", f"peak RSS {peak:.0f} MB", ""))
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, model {args.model or SHIPPED_MODEL}")
    print(f"| {'what':54} | {'time':>9} | {'rate':>18} | {'of bf16 peak':>12} |")
    print(f"|{'-' * 56}|{'-' * 11}|{'-' * 20}|{'-' * 14}|")
    for r in rows:
        print(f"| {r[0]:54} | {r[1]:>9} | {r[2]:>18} | {r[3]:>12} |")


if __name__ == "__main__":
    main()
