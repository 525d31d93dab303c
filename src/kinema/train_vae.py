"""Train the causal video VAE on the procedural world (single process, CPU by default).

    kinema train-vae --out runs/vae --steps 1500

Reconstruction L1 + MSE (object pixels weighted 1 + boost) with a small KL; AdamW with fp32 master weights
under bf16 autocast; clips of 9 frames at 64x64 (a random frame rate per step, so speeds vary) rendered on
the fly, and every image_every-th step a batch of 4x as many single frames (stills teach spatial detail at
a fraction of a clip's cost). Resumes from --out.
At the end it measures the per-channel latent statistics (stored in vae.json, so the DiT sees unit-variance
latents) and the reconstruction PSNR on held-out clips.
`--decoder-only --init VAE` fine-tunes the decoder of a trained VAE and keeps its encoder and statistics,
so DiTs trained on its latents work with the new decoder unchanged; `--temporal W` adds a loss on
frame-to-frame changes against flicker.
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
from pathlib import Path

import numpy as np
import torch
from torch.utils.tensorboard import SummaryWriter
from tqdm import tqdm

from kinema.checkpoint import (
    load_train_state,
    load_weights,
    read_config,
    rng_state,
    save_component,
    save_train_state,
    set_rng_state,
)
from kinema.data import ClipShape, world_batch
from kinema.vae import VAE_PRESETS, VAEConfig, VideoVAE, vae_loss


def lr_at(step: int, steps: int, lr: float, warmup: int = 50) -> float:
    """Linear warmup, then cosine decay to 10% of lr at the last step (shared by both training loops)."""
    if step < warmup:
        return lr * (step + 1) / warmup
    return lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(1.0, (step - warmup) / max(1, steps - warmup)))))


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    """PSNR in dB of videos in [-1, 1]."""
    mse = ((a.float() - b.float()) / 2).pow(2).mean().item()
    return 10 * math.log10(1.0 / max(mse, 1e-12))


@torch.no_grad()
def measure(vae: VideoVAE, n: int = 64, frames: int = 17, batch: int = 8) -> dict[str, float]:
    """Latent statistics on train clips and reconstruction PSNR on held-out ("test" split) clips."""
    vae.eval()
    shape = ClipShape(frames, 64, 64, 12.0)
    means = []
    for i in range(0, n, batch):
        x, _ = world_batch(list(range(10**6 + i, 10**6 + i + batch)), shape, "train")
        means.append(vae.encode_dist(x)[0])
    z = torch.cat(means)
    stats = {"latent_mean": z.mean((0, 2, 3, 4)).tolist(), "latent_std": z.std((0, 2, 3, 4)).tolist()}
    scores = []
    for i in range(0, n, batch):
        x, _ = world_batch(list(range(i, i + batch)), shape, "test")
        rec = vae.decoder(vae.encode_dist(x)[0]).clamp(-1, 1)
        scores.append(psnr(rec, x))
    vae.train()
    return {**stats, "psnr_test": float(np.mean(scores))}


def train_vae(
    out: Path,
    preset: str = "small",
    steps: int = 1500,
    batch: int = 8,
    frames: int = 9,
    lr: float = 1e-3,
    save_every: int = 100,
    seed: int = 0,
    measure_n: int = 64,
    boost: float = 9.0,
    init: Path | None = None,
    image_every: int = 2,
    stop_after: int | None = None,
    decoder_only: bool = False,
    temporal: float = 0.0,
) -> dict:
    """decoder_only: fine-tune only the decoder of the VAE in `init` (its config, weights and latent
    statistics are kept), so latents, and every DiT trained on them, stay valid. temporal: the weight of
    vae_loss's frame-to-frame term."""
    out = Path(out)
    if decoder_only and init is None:
        raise ValueError("--decoder-only needs --init: the VAE whose decoder is fine-tuned")
    cfg = VAEConfig(**read_config(init, "vae")["config"]) if decoder_only else VAE_PRESETS[preset]
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    vae = VideoVAE(cfg)
    if decoder_only:
        vae.encoder.requires_grad_(False)
    trained = vae.decoder if decoder_only else vae
    opt = torch.optim.AdamW(trained.parameters(), lr=lr, betas=(0.9, 0.99), weight_decay=0.0)
    step = 0
    state = load_train_state(out)
    if state is None and decoder_only:
        load_weights(Path(init), "vae", vae)
        print(f"decoder-only fine-tune of {init}")
    elif state is None and init is not None:  # warm start: every tensor of another run whose shape matches
        from safetensors.torch import load_file

        own = vae.state_dict()
        src = {
            k: v for k, v in load_file(Path(init) / "vae.safetensors").items() if k in own and own[k].shape == v.shape
        }
        vae.load_state_dict(src, strict=False)
        print(f"warm start: {len(src)} of {len(own)} tensors from {init}")
    if state is not None:
        load_weights(out, "vae", vae)
        opt.load_state_dict(state["optimizer"])
        set_rng_state(state["rng"])
        step = state["step"]
        print(f"resumed from step {step}")
    (out / "args.json").write_text(
        json.dumps(
            dict(
                preset=preset,
                steps=steps,
                batch=batch,
                frames=frames,
                lr=lr,
                seed=seed,
                boost=boost,
                init=str(init) if init else None,
                decoder_only=decoder_only,
                temporal=temporal,
            ),
            indent=2,
        )
    )
    tb = SummaryWriter(str(out / "tb"))
    shapes = [
        ClipShape(frames, 64, 64, 12.0),
        ClipShape(frames, 64, 64, 8.0),
        ClipShape(frames, 64, 64, 16.0),
        ClipShape(frames, 80, 48, 12.0),
        ClipShape(frames, 48, 80, 12.0),
    ]
    bar = tqdm(total=steps, initial=step, desc="train-vae", dynamic_ncols=True)
    t0 = time.time()
    last = min(steps, stop_after) if stop_after else steps  # stop early on the same learning-rate schedule
    while step < last:
        shape = shapes[np.random.default_rng([seed, step]).integers(len(shapes))]
        n = batch
        if image_every and step % image_every == image_every - 1:  # a batch of stills: spatial detail, cheaply
            shape, n = dataclasses.replace(shape, frames=1), 4 * batch
        x, _ = world_batch(list(range(step * 4 * batch, step * 4 * batch + n)), shape)
        for g in opt.param_groups:
            g["lr"] = lr_at(step, steps, lr)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            loss, logs = vae_loss(vae, x, boost=boost, temporal=temporal)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        gnorm = torch.nn.utils.clip_grad_norm_(trained.parameters(), 1.0)
        opt.step()
        step += 1
        bar.update(1)
        bar.set_postfix(loss=f"{loss.item():.4f}")
        tb.add_scalar("vae/loss", loss.item(), step)
        tb.add_scalar("vae/grad_norm", gnorm.item(), step)
        for k, v in logs.items():
            tb.add_scalar(f"vae/{k}", v, step)
        if step % save_every == 0 or step == last:
            save_component(out, "vae", vae, cfg)
            save_train_state(out, {"optimizer": opt.state_dict(), "rng": rng_state(), "step": step})
    bar.close()
    result = measure(vae, n=measure_n)
    if decoder_only:  # the encoder is unchanged: its statistics, which DiTs were trained with, stay
        final_cfg = cfg
    else:
        final_cfg = dataclasses.replace(cfg, latent_mean=result["latent_mean"], latent_std=result["latent_std"])
    save_component(
        out, "vae", vae, final_cfg, extra={"psnr_test": result["psnr_test"], "steps": step, "wall_s": time.time() - t0}
    )
    tb.add_scalar("vae/psnr_test", result["psnr_test"], step)
    tb.close()
    print(f"held-out reconstruction PSNR {result['psnr_test']:.2f} dB")
    return result


if __name__ == "__main__":  # python -m kinema.train_vae OUT [STEPS [INIT [LR]]]
    import sys

    a = sys.argv[1:]
    train_vae(
        Path(a[0]),
        steps=int(a[1]) if len(a) > 1 else 1500,
        init=Path(a[2]) if len(a) > 2 else None,
        lr=float(a[3]) if len(a) > 3 else 1e-3,
    )
