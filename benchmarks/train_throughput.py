"""Training throughput: tokens/s and MFU of one DiT training step (forward, backward, AdamW) per preset.

    OMP_NUM_THREADS=2 PYTHONPATH=src python benchmarks/train_throughput.py --preset small --batch 8
    PYTHONPATH=src python benchmarks/train_throughput.py --preset large --batch 8 --device cuda --compile

Random latents of the shipped clip (7 latent frames of 16x16: 112 tokens at patch 4) and 128 text tokens,
bf16 autocast over fp32 weights, exactly the trainer's step, with --compile and --checkpointing applied by
`kinema.parallel.parallelize` as in `kinema train`. MFU = model FLOPs / time / peak: the peak is
--peak-tflops, else a known GPU's dense bf16 datasheet figure, else (CPU) the bf16 matmul ceiling
measured in ../shared/docs/PERF.md (0.8 TFLOP/s on 2 threads). Prints a markdown table row per preset.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from kinema.dit import DIT_PRESETS, DiT, forward_flops
from kinema.flow import flow_loss
from kinema.parallel import Dist, parallelize
from kinema.train import detect_peak_tflops

CPU_PEAK_TFLOPS = 0.8  # PERF.md: bf16 matmul, 2 threads


def measure(
    preset: str,
    batch: int,
    device: torch.device,
    steps: int,
    latent: tuple[int, int, int],
    compile: bool = False,
    checkpointing: bool = False,
) -> dict:
    torch.manual_seed(0)
    cfg = DIT_PRESETS[preset]
    model = parallelize(DiT(cfg).to(device), Dist(device=device), checkpointing=checkpointing, compile=compile)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    T, H, W = latent
    x = torch.randn(batch, cfg.in_channels, T, H, W, device=device)
    noise = torch.randn_like(x)
    text = torch.randn(batch, 128, cfg.text_dim, device=device)
    mask = torch.ones(batch, 128, dtype=torch.bool, device=device)
    t = torch.rand(batch, device=device)
    times = []
    for i in range(steps + 1):  # the first step warms up and is not counted
        t0 = time.perf_counter()
        with torch.autocast(device.type, dtype=torch.bfloat16):
            v = model(x, t, text, mask)
        loss = flow_loss(v, x, noise)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        if device.type == "cuda":
            torch.cuda.synchronize()
        if i:
            times.append(time.perf_counter() - t0)
    tokens = (T // cfg.patch[0]) * (H // cfg.patch[1]) * (W // cfg.patch[2])
    dt = statistics.median(times)
    flops = 3 * forward_flops(cfg, tokens, 128) * batch
    params = sum(p.numel() for p in model.parameters()) / 1e6
    return {"preset": preset, "params_m": params, "tokens": tokens * batch, "step_s": dt, "flops": flops}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", action="append", help="DiT preset (repeatable; default debug and small)")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--latent", default="7x16x16", help="latent TxHxW (default: the shipped 2 s 64x64 clip)")
    ap.add_argument("--peak-tflops", type=float, default=None)
    ap.add_argument("--compile", action="store_true", help="torch.compile each block (the warm-up step compiles)")
    ap.add_argument("--checkpointing", action="store_true", help="activation checkpointing per block")
    a = ap.parse_args()
    device = torch.device(a.device)
    peak = a.peak_tflops or detect_peak_tflops(device) or (CPU_PEAK_TFLOPS if device.type == "cpu" else None)
    latent = tuple(int(v) for v in a.latent.split("x"))
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU, {torch.get_num_threads()} threads"
    print(f"device: {name}; peak {peak} TFLOP/s bf16; batch {a.batch}; latent {a.latent}", end="")
    print(f"; compile {a.compile}; checkpointing {a.checkpointing}")
    print("| preset | params (M) | tokens/step | step (s, median) | tokens/s | TFLOP/s | MFU |")
    print("|---|---|---|---|---|---|---|")
    for preset in a.preset or ["debug", "small"]:
        r = measure(preset, a.batch, device, a.steps, latent, a.compile, a.checkpointing)
        tf = r["flops"] / r["step_s"] / 1e12
        mfu = f"{tf / peak:.1%}" if peak else "n/a"
        print(
            f"| {preset} | {r['params_m']:.1f} | {r['tokens']} | {r['step_s']:.3f} | {r['tokens'] / r['step_s']:.0f} "
            f"| {tf:.3f} | {mfu} |"
        )
    if device.type == "cpu":
        print("note: CPU only; no GPU was available, so no H100 number has been measured.")


if __name__ == "__main__":
    main()
