"""Train the diffusion transformer on cached latents of the procedural world (single process, CPU).

    kinema prepare-world --vae runs/vae --out runs/latents --n 8000
    kinema train --data runs/latents --vae runs/vae --out runs/dit --steps 3000

The loop, top to bottom: cached data, model and EMA, AdamW (fp32 master weights) under bf16 autocast,
rectified-flow loss with logit-normal timesteps, caption dropout for classifier-free guidance, periodic
atomic checkpoints. The batch of every step is a pure function of (seed, step), so a resumed run sees
exactly the batches an uninterrupted one would.
"""

from __future__ import annotations

import copy
import json
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from torch.utils.tensorboard import SummaryWriter
from tqdm import tqdm

from kinema.checkpoint import (
    load_train_state,
    load_weights,
    read_config,
    rng_state,
    save_component,
    save_model_copy,
    save_train_state,
    set_rng_state,
)
from kinema.data import ClipShape, LatentShards, world_batch
from kinema.dit import DIT_PRESETS, DiT, DiTConfig, forward_flops
from kinema.flow import add_noise, flow_loss, sample_timesteps, shift_for_tokens
from kinema.text import TextEncoder
from kinema.train_vae import lr_at
from kinema.vae import VAEConfig, VideoVAE
from kinema.world import long_caption, short_caption

TEXT_LEN = 128
DEFAULT_SHAPE = ClipShape(25, 64, 64, 12.0)  # 2 s at 12 fps, 64x64: the shipped model's clip


def load_vae(folder: Path) -> VideoVAE:
    meta = read_config(folder, "vae")
    vae = VideoVAE(VAEConfig(**meta["config"]))
    load_weights(folder, "vae", vae)
    return vae.eval().requires_grad_(False)


@torch.no_grad()
def prepare_world(
    out: Path,
    vae_dir: Path,
    n: int,
    shape: ClipShape = DEFAULT_SHAPE,
    shard_size: int = 1000,
    batch: int = 16,
    text_encoder: TextEncoder | None = None,
) -> None:
    """Render n training clips, encode them with the VAE and both captions with the text encoder, and
    write shard_XXXX.pt files. Resumable: shards already written are kept."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    vae = load_vae(vae_dir)
    enc = text_encoder or TextEncoder.from_pretrained(max_length=TEXT_LEN)
    (out / "meta.json").write_text(json.dumps({"n": n, "shape": shape.__dict__, "vae": str(vae_dir)}, indent=2))
    bar = tqdm(total=n, desc="prepare-world", dynamic_ncols=True)
    for s, start in enumerate(range(0, n, shard_size)):
        path = out / f"shard_{s:04d}.pt"
        stop = min(n, start + shard_size)
        if path.exists():
            bar.update(stop - start)
            continue
        lat, tl, ml, ts, ms = [], [], [], [], []
        for i in range(start, stop, batch):
            x, scenes = world_batch(list(range(i, min(stop, i + batch))), shape)
            with torch.autocast("cpu", dtype=torch.bfloat16):
                lat.append(vae.encode(x).to(torch.bfloat16))
            for captions, es, ms_ in (
                ([long_caption(sc) for sc in scenes], tl, ml),
                ([short_caption(sc) for sc in scenes], ts, ms),
            ):
                e, m = enc.encode(captions)  # padded to the longest, then to TEXT_LEN below
                es.append(torch.nn.functional.pad(e, (0, 0, 0, TEXT_LEN - e.shape[1])).to(torch.bfloat16))
                ms_.append(torch.nn.functional.pad(m, (0, TEXT_LEN - m.shape[1])))
            bar.update(len(scenes))
        shard = {
            "latents": torch.cat(lat),
            "text_long": torch.cat(tl),
            "mask_long": torch.cat(ml),
            "text_short": torch.cat(ts),
            "mask_short": torch.cat(ms),
        }
        torch.save(shard, str(path) + ".tmp")
        Path(str(path) + ".tmp").replace(path)
    bar.close()


@dataclass(frozen=True)
class TaskMix:
    """How often each conditioning task appears in training (the rest is plain text-to-video).

    A task gives some latent frames as clean references: they enter at t = 0 and carry no loss, so one
    checkpoint learns image-to-video (first frame), extension forward and backward (first or last k frames),
    interpolation (first and last) and infill (random frames), as in Open-Sora 2.0's masked training.
    """

    first_frame: float = 0.15
    first_k: float = 0.10
    last_k: float = 0.07
    first_and_last: float = 0.07
    random_frames: float = 0.06
    image_steps: float = 0.08  # fraction of steps trained on one-frame videos (latent frame 0 = an image)


def sample_task_masks(batch: int, frames: int, mix: TaskMix, g: torch.Generator) -> torch.Tensor:
    """(batch, frames) bool: True where the latent frame is given clean. Never all frames."""
    cond = torch.zeros(batch, frames, dtype=torch.bool)
    if frames < 2:
        return cond
    probs = torch.tensor([mix.first_frame, mix.first_k, mix.last_k, mix.first_and_last, mix.random_frames])
    r = torch.rand(batch, generator=g)
    edges = probs.cumsum(0)
    k = torch.randint(1, frames, (batch,), generator=g)  # 1 .. frames-1 frames given
    for i in range(batch):
        task = int((r[i] >= edges).sum())
        if task == 0:
            cond[i, 0] = True
        elif task == 1:
            cond[i, : k[i]] = True
        elif task == 2:
            cond[i, frames - k[i] :] = True
        elif task == 3:
            cond[i, 0] = cond[i, -1] = True
        elif task == 4:
            cond[i] = torch.rand(frames, generator=g) < 0.3
            cond[i, int(torch.randint(frames, (1,), generator=g))] = False
    return cond


@torch.no_grad()
def ema_update(ema: torch.nn.Module, model: torch.nn.Module, decay: float) -> None:
    for pe, pm in zip(ema.parameters(), model.parameters(), strict=True):
        pe.lerp_(pm, 1 - decay)


def make_batch(
    data: LatentShards,
    null: tuple[torch.Tensor, torch.Tensor],
    idx: torch.Tensor,
    g: torch.Generator,
    p_short: float,
    p_drop: float,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Latents, text and mask for clip indices idx: the long caption mostly, the short one with
    probability p_short, the empty prompt with probability p_drop (classifier-free guidance training)."""
    x0 = data.latents[idx].float()
    r = torch.rand(len(idx), generator=g)
    short = (r < p_short)[:, None]
    text = torch.where(short[..., None], data.text_short[idx], data.text_long[idx]).float()
    mask = torch.where(short, data.mask_short[idx], data.mask_long[idx])
    drop = torch.rand(len(idx), generator=g) < p_drop
    text[drop] = null[0]
    mask[drop] = null[1]
    keep = int(mask.any(0).nonzero().max()) + 1  # drop padding columns no caption in the batch uses
    return x0, text[:, :keep], mask[:, :keep]


def train(
    out: Path,
    data_dir: Path,
    vae_dir: Path,
    preset: str = "small",
    steps: int = 3000,
    batch: int = 32,
    lr: float = 4e-4,
    ema_decay: float = 0.998,
    p_short: float = 0.1,
    p_drop: float = 0.1,
    save_every: int = 200,
    seed: int = 0,
    text_encoder: TextEncoder | None = None,
    mix: TaskMix | None = None,
) -> None:
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    mix = mix or TaskMix()
    # ---- data -------------------------------------------------------------------------------------------
    data = LatentShards(data_dir)
    meta = json.loads((Path(data_dir) / "meta.json").read_text())
    enc = text_encoder or TextEncoder.from_pretrained(max_length=TEXT_LEN)
    e, m = enc.encode([""], pad_to=TEXT_LEN)
    null = (e[0], m[0])
    del enc
    # ---- model, EMA, optimiser, resume ------------------------------------------------------------------
    torch.manual_seed(seed)
    cfg: DiTConfig = DIT_PRESETS[preset]
    if cfg.in_channels != data.latents.shape[1]:
        cfg = DiTConfig(**{**cfg.__dict__, "in_channels": data.latents.shape[1]})
    model = DiT(cfg)
    ema = copy.deepcopy(model).requires_grad_(False)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, betas=(0.9, 0.99), weight_decay=0.0)
    step = 0
    state = load_train_state(out)
    if state is not None:
        model.load_state_dict(state["model"])
        ema.load_state_dict(state["ema"])
        opt.load_state_dict(state["optimizer"])
        set_rng_state(state["rng"])
        step = state["step"]
        print(f"resumed from step {step}")
    args = dict(
        mix=mix.__dict__,
        preset=preset,
        steps=steps,
        batch=batch,
        lr=lr,
        ema_decay=ema_decay,
        p_short=p_short,
        p_drop=p_drop,
        seed=seed,
        data=str(data_dir),
        n_clips=len(data),
    )
    (out / "args.json").write_text(json.dumps(args, indent=2))
    shape = meta["shape"]
    _, _, T, H, W = data.latents.shape
    tokens = (T // cfg.patch[0]) * (H // cfg.patch[1]) * (W // cfg.patch[2])
    shift = shift_for_tokens(tokens)
    model_meta = {
        "fps": shape["fps"],
        "width": shape["width"],
        "height": shape["height"],
        "frames": shape["frames"],
        "text_encoder": "all-MiniLM-L6-v2",
        "text_len": TEXT_LEN,
        "train_shift": shift,
    }
    for f in ("vae.safetensors", "vae.json"):
        shutil.copy(Path(vae_dir) / f, out / f)
    (out / "model.json").write_text(json.dumps(model_meta, indent=2))
    # ---- loop -------------------------------------------------------------------------------------------
    tb = SummaryWriter(str(out / "tb"))
    flops = 3 * forward_flops(cfg, tokens, TEXT_LEN) * batch
    bar = tqdm(total=steps, initial=step, desc="train", dynamic_ncols=True)
    while step < steps:
        t0 = time.time()
        g = torch.Generator().manual_seed(seed * 1_000_003 + step)
        idx = torch.randint(len(data), (batch,), generator=g)
        x0, text, mask = make_batch(data, null, idx, g, p_short, p_drop)
        if torch.rand(1, generator=g).item() < mix.image_steps:
            x0 = x0[:, :, :1]  # latent frame 0 is exactly the encoding of the first frame alone (causal VAE)
        noise = torch.randn(x0.shape, generator=g)
        cond = sample_task_masks(batch, x0.shape[2], mix, g)  # (B, T) clean reference frames
        t = sample_timesteps(batch, shift=shift, generator=g)[:, None].expand(-1, x0.shape[2]).masked_fill(cond, 0.0)
        for group in opt.param_groups:
            group["lr"] = lr_at(step, steps, lr, warmup=200)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            v = model(add_noise(x0, noise, t), t, text, mask)
        loss = flow_loss(v, x0, noise, weight=(~cond).float()[:, None, :, None, None])
        if not torch.isfinite(loss):
            print(f"step {step}: non-finite loss, skipped")
            step += 1
            continue
        opt.zero_grad(set_to_none=True)
        loss.backward()
        gnorm = torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        ema_update(ema, model, min(ema_decay, (1 + step) / (10 + step)))
        step += 1
        dt = time.time() - t0
        bar.update(1)
        bar.set_postfix(loss=f"{loss.item():.4f}")
        tb.add_scalar("train/loss", loss.item(), step)
        tb.add_scalar("train/grad_norm", gnorm.item(), step)
        tb.add_scalar("train/tokens_per_s", batch * tokens / dt, step)
        tb.add_scalar("train/gflops_per_s", flops / dt / 1e9, step)
        if step % save_every == 0 or step == steps:
            save_component(out, "dit", ema, cfg, extra={"steps": step})
            save_train_state(
                out,
                {
                    "model": model.state_dict(),
                    "ema": ema.state_dict(),
                    "optimizer": opt.state_dict(),
                    "rng": rng_state(),
                    "step": step,
                },
            )
    bar.close()
    tb.close()


def export_model(run: Path, dest: Path, dtype: torch.dtype = torch.float16) -> None:
    """Copy a trained model folder (model.json, vae.*, dit.*) to dest with weights cast to dtype: the shipped
    model is the EMA DiT and the VAE in float16 (half the bytes, outputs within bf16 autocast noise)."""
    save_model_copy(Path(run), Path(dest), ("vae", "dit"), dtype)
