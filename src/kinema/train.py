"""Train the diffusion transformer on cached latents: the procedural world or prepared footage, on one
process or under torchrun.

    kinema train --vae runs/vae --out runs/dit --steps 3000          # no --data: the procedural world
    kinema prepare-world --vae runs/vae --out runs/latents --n 8000   # (what that does first, in out/world)
    kinema train --data runs/latents --vae runs/vae --out runs/dit --steps 3000

The loop, top to bottom: cached data, model and EMA, AdamW (fp32 master weights) under bf16 autocast,
rectified-flow loss with logit-normal timesteps, caption dropout for classifier-free guidance, periodic
atomic checkpoints. The batch of every step is a pure function of (seed, step), so a resumed run sees
exactly the batches an uninterrupted one would.
"""

from __future__ import annotations

import copy
import json
import multiprocessing
import shutil
import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from torch.distributed.checkpoint.state_dict import (
    StateDictOptions,
    get_model_state_dict,
    get_state_dict,
    set_model_state_dict,
    set_state_dict,
)
from torch.utils.tensorboard import SummaryWriter
from tqdm import tqdm

from kinema import world
from kinema.checkpoint import (
    CheckpointError,
    atomic_write,
    blend_weights,
    disk_full,
    latest_checkpoint,
    load_checkpoint,
    load_train_state,
    load_weights,
    read_config,
    read_weights,
    rng_state,
    save_checkpoint,
    save_model_copy,
    save_state,
    set_rng_state,
)
from kinema.data import (
    ClipShape,
    LatentSet,
    LatentShards,
    open_latents,
    prepare_object_masks,
    to_tensor,
)
from kinema.dit import DIT_PRESETS, DiT, DiTConfig, check_patch, forward_flops, repatch
from kinema.flow import add_noise, flow_loss, sample_timesteps, shift_for_tokens
from kinema.footage import Bucket
from kinema.lora import LoRALinear, adapter_state, add_lora, merged_state
from kinema.parallel import (
    Dist,
    all_mean,
    any_rank,
    barrier,
    close_distributed,
    init_distributed,
    local,
    parallelize,
    param_name,
)
from kinema.text import TextEncoder
from kinema.train_vae import lr_at
from kinema.vae import VAEConfig, VideoVAE
from kinema.world import long_caption, short_caption

TEXT_LEN = 128
DEFAULT_SHAPE = ClipShape(25, 64, 64, 12.0)  # 2 s at 12 fps, 64x64: the shipped model's clip
SAMPLE_STEPS = 20  # sampler steps of the videos written every --sample-every steps


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
    buckets: tuple[Bucket, ...] | None = None,
    bucket_set: str = "",
    device: str = "cpu",
    workers: int = 0,
) -> None:
    """Render n training clips, encode them with the VAE and both captions with the text encoder, and
    write shard_XXXX.pt files. Resumable: shards already written are kept.

    With buckets (footage.Bucket shapes at shape.fps), clip i goes to bucket i mod len(buckets), its scene
    sampled at that bucket's aspect and duration, and the folder takes footage's layout (meta.json with
    "buckets", one sub-folder of shards per bucket; data.open_latents), so `kinema train` trains on every
    shape, a step's bucket drawn in proportion to its clips.

    device runs the VAE and the text encoder there (e.g. "cuda"); workers > 0 renders in that many processes
    (the rendering is CPU-bound and, on a GPU, the slow part). The shards are the same either way."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    vae = load_vae(vae_dir).to(device)
    enc = text_encoder or TextEncoder.from_pretrained(max_length=TEXT_LEN)
    enc.model.to(device)
    if buckets:
        for b in buckets:
            b.check(vae.cfg.spatial_ratio, vae.cfg.temporal_ratio)
        used = buckets[: min(n, len(buckets))]
        meta = {"kind": "world", "n": n, "fps": shape.fps, "bucket_set": bucket_set, "vae": str(vae_dir)}
        meta["buckets"] = {b.name: asdict(b) for b in used}
        jobs = [
            (out / b.name, list(range(i, n, len(buckets))), ClipShape(b.frames, b.width, b.height, shape.fps))
            for i, b in enumerate(used)
        ]
    else:
        meta = {"n": n, "shape": shape.__dict__, "vae": str(vae_dir)}
        jobs = [(out, list(range(n)), shape)]
    atomic_write(out / "meta.json", lambda p: Path(p).write_text(json.dumps(meta, indent=2)))
    e, m = enc.encode([""], pad_to=TEXT_LEN)  # the empty prompt, so training needs no text encoder
    atomic_write(out / "null.pt", lambda p: torch.save({"text": e[0].cpu(), "mask": m[0].cpu()}, p))
    bar = tqdm(total=n, desc="prepare-world", dynamic_ncols=True)
    pool = multiprocessing.get_context("spawn").Pool(workers) if workers > 0 else None
    try:
        for folder, indices, clip_shape in jobs:
            folder.mkdir(exist_ok=True)
            for s, start in enumerate(range(0, len(indices), shard_size)):
                part = indices[start : start + shard_size]
                path = folder / f"shard_{s:04d}.pt"
                if not path.exists():
                    chunks = [(part[i : i + batch], clip_shape) for i in range(0, len(part), batch)]
                    rendered = pool.imap(_render_world, chunks) if pool else map(_render_world, chunks)
                    clips = ((torch.stack([to_tensor(c) for c in x]), lc, sc) for x, lc, sc in rendered)
                    shard = encode_clips(clips, vae, enc, bar)
                    atomic_write(path, lambda p, shard=shard: torch.save(shard, p))
                else:
                    bar.update(len(part))
    finally:
        if pool:
            pool.terminate()
    bar.close()


def _render_world(job: tuple[list[int], ClipShape]) -> tuple[list[np.ndarray], list[str], list[str]]:
    """World clips `indices` at one shape as uint8 frames (a quarter of the bytes of floats through a pool's
    pipe) with their long and short captions: data.world_batch, split in two."""
    indices, shape = job
    duration = (shape.frames - 1) / shape.fps
    scenes = [world.sample_scene(i, "train", aspect=shape.width / shape.height, duration=duration) for i in indices]
    frames = [world.render(sc, shape.width, shape.height, shape.fps) for sc in scenes]
    return frames, [long_caption(sc) for sc in scenes], [short_caption(sc) for sc in scenes]


def encode_clips(
    batches: Iterable[tuple[torch.Tensor, list[str], list[str]]],
    vae: VideoVAE,
    enc: TextEncoder,
    bar: tqdm | None = None,
) -> dict[str, torch.Tensor]:
    """One shard from (clips (B, 3, T, H, W) in [-1, 1], long captions, short captions) batches: bf16
    latents and both captions' embeddings and masks, padded to TEXT_LEN (the shard format LatentShards reads)."""
    lat, tl, ml, ts, ms = [], [], [], [], []
    device = next(vae.parameters()).device  # the encoders' device; the shard is on the CPU
    for x, long, short in batches:
        with torch.autocast(device.type, dtype=torch.bfloat16):
            lat.append(vae.encode(x.to(device)).to(torch.bfloat16).cpu())
        for captions, es, ms_ in ((long, tl, ml), (short, ts, ms)):
            e, m = enc.encode(captions)  # padded to the longest, then to TEXT_LEN below
            es.append(torch.nn.functional.pad(e, (0, 0, 0, TEXT_LEN - e.shape[1])).to(torch.bfloat16).cpu())
            ms_.append(torch.nn.functional.pad(m, (0, TEXT_LEN - m.shape[1])).cpu())
        if bar is not None:
            bar.update(len(long))
    return {
        "latents": torch.cat(lat),
        "text_long": torch.cat(tl),
        "mask_long": torch.cat(ml),
        "text_short": torch.cat(ts),
        "mask_short": torch.cat(ms),
    }


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
        if pm.requires_grad:  # frozen weights (LoRA's base) are equal in both
            pe.lerp_(pm, 1 - decay)


def make_batch(
    data: LatentShards,
    null: tuple[torch.Tensor, torch.Tensor],
    idx: torch.Tensor,
    g: torch.Generator,
    p_short: float,
    p_drop: float,
    rows: slice = slice(None),
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Latents, text and mask for clip indices idx: the long caption mostly, the short one with
    probability p_short, the empty prompt with probability p_drop (classifier-free guidance training).
    The random draws cover the whole batch; only `rows` of it are returned (this rank's slice)."""
    x0 = data.latents[idx[rows]].float()
    r = torch.rand(len(idx), generator=g)
    short = (r < p_short)[:, None]
    mask = torch.where(short, data.mask_short[idx], data.mask_long[idx])
    drop = torch.rand(len(idx), generator=g) < p_drop
    mask[drop] = null[1]
    keep = int(mask.any(0).nonzero().max()) + 1  # drop padding columns no caption in the batch uses
    mine = idx[rows]
    text = torch.where(short[rows][..., None], data.text_short[mine], data.text_long[mine]).float()
    text[drop[rows]] = null[0]
    return x0, text[:, :keep], mask[rows, :keep]


@dataclass
class Batch:
    """One rank's slice of a step's batch, and what the loss needs to know about the whole batch."""

    bucket: int
    x0: torch.Tensor  # (b, C, T, h, w) clean latents
    noise: torch.Tensor  # like x0
    t: torch.Tensor  # (b, T) timesteps, 0 on clean reference frames
    cond: torch.Tensor  # (b, T) bool, clean reference frames
    text: torch.Tensor  # (b, L, D)
    mask: torch.Tensor  # (b, L) bool
    loss_frames: int  # frames carrying loss in the whole batch (all ranks)
    objects: torch.Tensor | None = None  # (b, 1, T, h, w) float, 1 where objects are (if the data has masks)


def draw_batch(
    sets: list[LatentSet],
    null: tuple[torch.Tensor, torch.Tensor],
    step: int,
    seed: int,
    batch: int,
    mix: TaskMix,
    p_short: float,
    p_drop: float,
    rows: slice = slice(None),
) -> Batch:
    """The batch of `step`: a pure function of (seed, step), so a resumed run and any number of ranks see
    the same global batch; each rank keeps `rows` of it. With several buckets, the step's bucket is drawn
    in proportion to the clips it holds (one bucket draws nothing, so world runs are unchanged)."""
    g = torch.Generator().manual_seed(seed * 1_000_003 + step)
    b = 0
    if len(sets) > 1:
        b = int(torch.multinomial(torch.tensor([float(len(s.shards)) for s in sets]), 1, generator=g))
    data = sets[b].shards
    idx = torch.randint(len(data), (batch,), generator=g)
    x0, text, mask = make_batch(data, null, idx, g, p_short, p_drop, rows)
    objects = None if data.objects is None else data.objects[idx[rows]][:, None].float()
    if torch.rand(1, generator=g).item() < mix.image_steps:
        x0 = x0[:, :, :1]  # latent frame 0 is exactly the encoding of the first frame alone (causal VAE)
        objects = None if objects is None else objects[:, :, :1]
    shape = (batch, *x0.shape[1:])
    noise = torch.randn(shape, generator=g)[rows]
    cond = sample_task_masks(batch, shape[2], mix, g)  # (B, T) clean reference frames
    shift = shift_for_tokens(sets[b].tokens)
    t = sample_timesteps(batch, shift=shift, generator=g)[:, None].expand(-1, shape[2]).masked_fill(cond, 0.0)
    return Batch(b, x0, noise, t[rows], cond[rows], text, mask, int((~cond).sum()), objects)


def build_dit(
    preset: str, init: str | Path | None, in_channels: int, patch: tuple[int, int, int] | None = None
) -> tuple[DiTConfig, DiT]:
    """A DiT from a preset (random init, seeded by the caller) or from a model folder ('shipped' = the
    packaged model), checked against the data's latent channels; `patch` overrides the preset's, or re-cuts
    the loaded model's patches finer (`dit.repatch`)."""
    if init is None:
        cfg: DiTConfig = DIT_PRESETS[preset]
        cfg = DiTConfig(**{**cfg.__dict__, "in_channels": in_channels, "patch": patch or cfg.patch})
        return cfg, DiT(cfg)
    folder = model_folder(init)
    cfg = DiTConfig(**read_config(folder, "dit")["config"])
    if cfg.in_channels != in_channels:
        raise ValueError(
            f"the data's latents have {in_channels} channels but {folder} expects {cfg.in_channels}: "
            "prepare the data with that model's VAE (--vae)"
        )
    model = DiT(cfg)
    load_weights(folder, "dit", model)
    if patch and tuple(patch) != cfg.patch:
        model = repatch(model, patch)
    return model.cfg, model


def model_folder(name: str | Path) -> Path:
    """'shipped' names the model inside the package; anything else is a folder."""
    from kinema.pipeline import SHIPPED_MODEL

    return SHIPPED_MODEL if str(name) == "shipped" else Path(name)


def detect_peak_tflops(device: torch.device) -> float | None:
    """Dense bf16 peak of known GPUs (vendor datasheets), for the MFU estimate; None when unknown."""
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    for key, peak in (("H200", 989.0), ("H100", 989.0), ("A100", 312.0), ("L40S", 362.0), ("L4", 121.0)):
        if key in name:
            return peak
    return None


def train(
    out: Path,
    data_dir: Path | None,
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
    init: str | Path | None = None,
    lora: int | None = None,
    checkpointing: bool = False,
    compile: bool = False,
    peak_tflops: float | None = None,
    sample_every: int = 0,
    keep: int = 2,
    warmup: int = 200,
    object_weight: float = 0.0,
    object_t_max: float = 1.0,
    world_clips: int = 8000,
    patch: tuple[int, int, int] | None = None,
) -> dict:
    """Train (or fine-tune) the DiT; under torchrun every rank runs this and FSDP2 shards the model.
    object_weight > 0 weights the loss on latent cells where objects are 1 + object_weight times the rest
    (the data needs objmask.pt: `kinema prepare-world --object-masks`), on latent frames whose timestep is
    at most object_t_max: at low noise x_t fixes where the objects are, so the weight only sharpens them;
    at high noise a weight that depends on the target tilts the optimal prediction toward drawing an object
    wherever one might be (extra blobs). data_dir None: rank 0 first renders
    and encodes `world_clips` clips of the procedural world into out/world (resumable, as
    `kinema prepare-world`) while the other ranks wait. patch: the DiT's patch instead of the preset's; with
    init, a finer cut of the model's own patch (`dit.repatch`), e.g. (1, 2, 2) for the shipped (1, 4, 4)."""
    d = init_distributed()
    try:
        return _train(**{k: v for k, v in locals().items() if k != "d"}, d=d)
    finally:
        close_distributed(d)


def _train(
    out: Path,
    data_dir: Path,
    vae_dir: Path,
    preset: str,
    steps: int,
    batch: int,
    lr: float,
    ema_decay: float,
    p_short: float,
    p_drop: float,
    save_every: int,
    seed: int,
    text_encoder: TextEncoder | None,
    mix: TaskMix | None,
    init: str | Path | None,
    lora: int | None,
    checkpointing: bool,
    compile: bool,
    peak_tflops: float | None,
    sample_every: int,
    keep: int,
    warmup: int,
    object_weight: float,
    object_t_max: float,
    world_clips: int,
    patch: tuple[int, int, int] | None,
    d: Dist,
) -> dict:
    out, vae_dir = Path(out), model_folder(vae_dir)
    if batch % d.world:
        raise ValueError(f"batch {batch} must be divisible by the number of ranks {d.world}")
    rows = slice(d.rank * batch // d.world, (d.rank + 1) * batch // d.world)  # this rank's part of the batch
    if lora and init is None:
        raise ValueError("--lora adapts a trained model: name it with --init (shipped or a model folder)")
    if not 0 < object_t_max <= 1:  # before any data is prepared or loaded
        raise ValueError(f"object_t_max must be in (0, 1], got {object_t_max:g}")
    if patch is not None:  # before any data is prepared or loaded
        within = None if init is None else DiTConfig(**read_config(model_folder(init), "dit")["config"]).patch
        check_patch(patch, within)
    lora_base = None
    if lora:
        lora_base = "shipped" if str(init) == "shipped" else str(Path(init).resolve())
    out.mkdir(parents=True, exist_ok=True)
    mix = mix or TaskMix()
    # ---- data -------------------------------------------------------------------------------------------
    if data_dir is None:
        data_dir = out / "world"
        if d.main:
            prepare_world(data_dir, vae_dir, world_clips, text_encoder=text_encoder)
            if object_weight:
                prepare_object_masks(data_dir)
        barrier(d)
    sets, null = open_latents(data_dir)
    if null is None:  # world shards written before null.pt existed
        enc = text_encoder or TextEncoder.from_pretrained(max_length=TEXT_LEN)
        e, m = enc.encode([""], pad_to=TEXT_LEN)
        null = (e[0], m[0])
        del enc
    # ---- model, EMA, optimiser, resume ------------------------------------------------------------------
    torch.manual_seed(seed)
    cfg, model = build_dit(preset, init, sets[0].shards.latents.shape[1], patch)
    for s in sets:
        _, _, T, H, W = s.shards.latents.shape
        s.tokens = (T // cfg.patch[0]) * (H // cfg.patch[1]) * (W // cfg.patch[2])
    if lora:
        add_lora(model, lora)
    model.to(d.device)
    ema = copy.deepcopy(model).requires_grad_(False)
    parallelize(model, d, checkpointing=checkpointing, compile=compile)
    parallelize(ema, d)
    opt = torch.optim.AdamW(
        [p for p in model.parameters() if p.requires_grad], lr=lr, betas=(0.9, 0.99), weight_decay=0.0
    )
    step = resume(out, model, ema, opt, d)
    if object_weight and any(s.shards.objects is None for s in sets):
        raise ValueError(f"object_weight needs object masks in {data_dir} (run kinema prepare-world --object-masks)")
    main_set = max(sets, key=lambda s: len(s.shards))
    if d.main:
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
            n_clips=sum(len(s.shards) for s in sets),
            **({"init": str(init)} if init else {}),
            **({"patch": list(cfg.patch)} if patch else {}),
            **({"lora": lora} if lora else {}),
            **({"ranks": d.world} if d.world > 1 else {}),
            **({"object_weight": object_weight, "object_t_max": object_t_max} if object_weight else {}),
        )
        (out / "args.json").write_text(json.dumps(args, indent=2))
        shape = main_set.shape
        model_meta = {
            "fps": shape.fps,
            "width": shape.width,
            "height": shape.height,
            "frames": shape.frames,
            "text_encoder": "all-MiniLM-L6-v2",
            "text_len": TEXT_LEN,
            "train_shift": shift_for_tokens(main_set.tokens),
        }
        for f in ("vae.safetensors", "vae.json"):
            shutil.copy(vae_dir / f, out / f)
        (out / "model.json").write_text(json.dumps(model_meta, indent=2))
    # ---- loop -------------------------------------------------------------------------------------------
    monitor = Monitor(out, d, cfg, steps, step, peak_tflops or detect_peak_tflops(d.device))
    autocast = torch.autocast(d.device.type, dtype=torch.bfloat16)
    skipped = 0
    while step < steps:
        t0 = time.time()
        bt = draw_batch(sets, null, step, seed, batch, mix, p_short, p_drop, rows)
        x0, noise, t, text, mask = (v.to(d.device) for v in (bt.x0, bt.noise, bt.t, bt.text, bt.mask))
        for group in opt.param_groups:
            group["lr"] = lr_at(step, steps, lr, warmup=warmup)
        with autocast:
            v = model(add_noise(x0, noise, t), t, text, mask)
        weight = (~bt.cond).float()[:, None, :, None, None].to(d.device)
        if object_weight and bt.objects is not None:  # the small objects matter more than the background
            low_noise = (bt.t <= object_t_max).float()[:, None, :, None, None]  # (B, 1, T, 1, 1)
            weight = weight * (1 + object_weight * low_noise.to(d.device) * bt.objects.to(d.device))
        loss = flow_loss(v, x0, noise, weight=weight)
        if d.world > 1:  # gradients are averaged over ranks: scale each rank's mean to its share of the batch
            loss = loss * (max(1, int((~bt.cond).sum())) / max(1, bt.loss_frames)) * d.world
        # a non-finite loss or gradient on any rank skips the step on every rank (no update, no EMA)
        why = "non-finite loss" if any_rank(not torch.isfinite(loss).item(), d) else None
        if why is None:
            opt.zero_grad(set_to_none=True)
            loss.backward()
            gnorm = local(torch.nn.utils.clip_grad_norm_([p for p in model.parameters() if p.requires_grad], 1.0))
            why = "non-finite gradient" if any_rank(not torch.isfinite(gnorm).item(), d) else None
        if why is None:
            opt.step()
            ema_update(ema, model, min(ema_decay, (1 + step) / (10 + step)))
        else:
            opt.zero_grad(set_to_none=True)
            skipped += 1
        step += 1
        if d.device.type == "cuda":  # the step's kernels, the optimiser's too, have run: time them all
            torch.cuda.synchronize(d.device)
        if why is None:
            clip_tokens = x0.shape[2] * sets[bt.bucket].tokens // sets[bt.bucket].shards.latents.shape[2]
            monitor.step(step, all_mean(loss.detach(), d).item(), gnorm.item(), batch, clip_tokens, time.time() - t0)
        else:
            monitor.skipped(step, skipped, why)
        if step % save_every == 0 or step == steps:  # also after a skipped step: the schedule of saves holds
            save_run(out, step, model, ema, opt, cfg, d, keep, lora_base=lora_base)
            if sample_every and step % sample_every == 0 and d.main:
                monitor.sample(step, text_encoder)
    monitor.close()
    return {"step": step, "skipped": skipped, "losses": monitor.losses}


def resume(out: Path, model: torch.nn.Module, ema: torch.nn.Module, opt: torch.optim.Optimizer, d: Dist) -> int:
    """Restore model, EMA, optimiser and RNG from the run's latest checkpoint; returns the step (0 if none).
    Reads the DCP checkpoints this trainer writes and the single train_state.pt of earlier versions."""
    path = latest_checkpoint(out)
    if path is not None:
        msd, osd = get_state_dict(model, opt)
        state = {"model": msd, "optim": osd, "ema": get_model_state_dict(ema)}
        info, extra = load_checkpoint(path, state, d.rank)
        set_state_dict(model, opt, model_state_dict=state["model"], optim_state_dict=state["optim"])
        set_model_state_dict(ema, state["ema"])
        if extra is not None:
            set_rng_state(extra["rng"])
        if d.main:
            print(f"resumed from {path} (step {info['step']})")
        return int(info["step"])
    state = load_train_state(out)  # a legacy train_state.pt
    if state is None:
        return 0
    if d.world == 1 and not any(isinstance(m, LoRALinear) for m in model.modules()):
        model.load_state_dict(state["model"])
        ema.load_state_dict(state["ema"])
        opt.load_state_dict(state["optimizer"])
    else:  # convert: full tensors on every rank, optimiser state re-keyed by parameter name
        full = StateDictOptions(full_state_dict=True)
        names = [param_name(n) for n, p in model.named_parameters() if p.requires_grad]
        osd = state["optimizer"]
        osd = {
            "state": {names[i]: v for i, v in osd["state"].items()},
            "param_groups": [{**g, "params": [names[i] for i in g["params"]]} for g in osd["param_groups"]],
        }
        set_state_dict(model, opt, model_state_dict=state["model"], optim_state_dict=osd, options=full)
        set_model_state_dict(ema, state["ema"], options=full)
    set_rng_state(state["rng"])
    if d.main:
        print(f"resumed from {out / 'train_state.pt'} (step {state['step']}); new checkpoints go to {out / 'ckpt'}")
    return int(state["step"])


def save_run(
    out: Path,
    step: int,
    model: torch.nn.Module,
    ema: torch.nn.Module,
    opt: torch.optim.Optimizer,
    cfg: DiTConfig,
    d: Dist,
    keep: int,
    lora_base: str | None = None,
) -> None:
    """The run folder stays a complete model (EMA weights in dit.safetensors, merged if LoRA, and the
    adapter alone in lora.safetensors); the full training state goes to a DCP checkpoint."""
    full = get_model_state_dict(ema, options=StateDictOptions(full_state_dict=True, cpu_offload=True))
    error = None
    if d.main:
        try:  # each file is renamed into place when written, so a failure keeps the previous one
            if lora_base is not None:
                rank = int(next(v for k, v in full.items() if k.endswith("lora_a")).shape[0])
                save_state(out, "lora", adapter_state(full), {"rank": rank}, extra={"base": lora_base, "steps": step})
                full = merged_state(full)
            save_state(out, "dit", full, cfg, extra={"steps": step})
        except Exception as e:
            error = e
    if any_rank(error is not None, d):  # every rank stops, none waits in the checkpoint's barriers
        last = latest_checkpoint(out)
        kept = f"the last good checkpoint, {last.name}, is kept" if last else "there is no earlier checkpoint"
        what = "disk full" if error is not None and disk_full(error) else f"error ({error or 'on rank 0'})"
        raise CheckpointError(f"{what} while writing the model files in {out} at step {step}; {kept}") from error
    msd, osd = get_state_dict(model, opt)
    state = {"model": msd, "optim": osd, "ema": get_model_state_dict(ema)}
    info = {"step": step, "ranks": d.world}
    save_checkpoint(out, step, state, info, {"rng": rng_state()}, d.rank, lambda: barrier(d), keep)


class Monitor:
    """Rank 0's view of a run: progress bar with ETA, tensorboard scalars, log.jsonl, sample videos."""

    def __init__(self, out: Path, d: Dist, cfg: DiTConfig, steps: int, step: int, peak_tflops: float | None) -> None:
        self.out, self.d, self.cfg, self.peak = out, d, cfg, peak_tflops
        self.losses: dict[int, float] = {}
        self.bar = tqdm(total=steps, initial=step, desc="train", dynamic_ncols=True, disable=not d.main)
        self.tb = SummaryWriter(str(out / "tb")) if d.main else None
        self.log = (out / "log.jsonl").open("a") if d.main else None

    def step(self, step: int, loss: float, gnorm: float, clips: int, clip_tokens: int, dt: float) -> None:
        """A step of `clips` clips (the global batch) of `clip_tokens` DiT tokens each took `dt` seconds."""
        self.losses[step] = loss
        if not self.d.main:
            return
        # forward + backward of each clip: attention is quadratic in a clip's tokens, not in the batch's
        flops = 3 * forward_flops(self.cfg, clip_tokens, TEXT_LEN) * clips
        row = {"step": step, "loss": loss, "grad_norm": gnorm, "tokens_per_s": clips * clip_tokens / dt}
        row["gflops_per_s"] = flops / dt / 1e9
        if self.peak:
            row["mfu"] = flops / dt / (self.peak * 1e12 * self.d.world)
        self.bar.update(1)
        self.bar.set_postfix(loss=f"{loss:.4f}")
        for k, v in row.items():
            if k != "step":
                self.tb.add_scalar(f"train/{k}", v, step)
        self.log.write(json.dumps(row) + "\n")
        self.log.flush()

    def skipped(self, step: int, total: int, why: str) -> None:
        """Step `step` (1-based, like `step`'s rows) was skipped: printed, in log.jsonl and in tensorboard."""
        if self.d.main:
            tqdm.write(f"step {step}: {why}, skipped ({total} so far)")
            self.tb.add_scalar("train/skipped_steps", total, step)
            self.log.write(json.dumps({"step": step, "skipped": why, "skipped_total": total}) + "\n")
            self.log.flush()
            self.bar.update(1)

    def sample(
        self, step: int, text_encoder: TextEncoder | None, prompt: str = "a red circle moves to the right"
    ) -> None:
        from kinema.pipeline import Pipeline

        pipe = Pipeline.from_pretrained(self.out, text_encoder=text_encoder)
        video = pipe(prompt, steps=SAMPLE_STEPS, seed=0, expand=False)
        (self.out / "samples").mkdir(exist_ok=True)
        try:
            video.save(self.out / "samples" / f"step_{step:08d}.mp4")
        except ModuleNotFoundError as e:  # e.g. a lent GPU machine without PyAV or c2pa: keep the frames
            tqdm.write(f"sample at step {step}: frames saved as .npy, no mp4 ({e.name} is not installed)")
            np.save(self.out / "samples" / f"step_{step:08d}.npy", video.frames)
        # a strip of up to 8 frames (tensorboard's add_video would need moviepy); the video is beside it
        frames = video.frames[:: max(1, len(video.frames) // 8)][:8]  # (n, H, W, 3) uint8
        self.tb.add_image("samples", np.concatenate(list(frames), axis=1), step, dataformats="HWC")

    def close(self) -> None:
        self.bar.close()
        if self.d.main:
            self.tb.close()
            self.log.close()


def caption_corpus(n: int, split: str = "train") -> list[str]:
    """The long and short captions of n world scenes of a split, spread over every bucket's aspect and
    length: the text a world-trained model meets (kinema pack-text-encoder keeps the word pieces of these)."""
    from kinema.footage import BUCKET_SETS

    fps = DEFAULT_SHAPE.fps
    shapes = sorted({(b.width / b.height, (b.frames - 1) / fps) for bs in BUCKET_SETS.values() for b in bs})
    shapes.append((1.0, 60.0))  # a minute-long video's captions
    out = []
    for i in range(n):
        aspect, seconds = shapes[i % len(shapes)]
        scene = world.sample_scene(i, split, aspect=aspect, duration=seconds)
        out += [long_caption(scene), short_caption(scene)]
    return out


def export_model(
    run: Path,
    dest: Path,
    dtype: torch.dtype = torch.float16,
    guidance: float | None = None,
    guidance_interval: tuple[float, float] | str | None = None,
    guidance_eta: float | None = None,
    blend: str | Path | None = None,
    blend_weight: float = 0.5,
) -> None:
    """Copy a trained model folder (model.json, vae.*, dit.*) to dest with weights cast to dtype: the shipped
    model is the EMA DiT and the VAE in float16 (half the bytes, outputs within bf16 autocast noise).
    guidance, guidance_interval and guidance_eta: recorded in model.json as what generation uses by default
    (Pipeline.guidance, Pipeline.guidance_interval, Pipeline.guidance_eta).
    blend: another model folder ('shipped' = the packaged model) with the same DiT architecture; the written
    DiT is (1 - blend_weight) * run's + blend_weight * blend's (`blend_weights`), the rest is run's."""
    from kinema.pipeline import check_guidance, check_guidance_eta, check_guidance_interval

    states = None
    if blend is not None:
        other = model_folder(blend)
        if read_config(other, "dit").get("config") != read_config(run, "dit").get("config"):
            raise ValueError(f"--blend {blend} has a different DiT architecture from {run} (dit.json configs differ)")
        states = {"dit": blend_weights(read_weights(run, "dit"), read_weights(other, "dit"), blend_weight)}

    meta = {}  # checked before dest is made
    if guidance is not None:
        meta["guidance"] = check_guidance(guidance)
    if guidance_interval is not None:
        meta["guidance_interval"] = list(check_guidance_interval(guidance_interval))
    if guidance_eta is not None:
        meta["guidance_eta"] = check_guidance_eta(guidance_eta)
    save_model_copy(Path(run), Path(dest), ("vae", "dit"), dtype, meta=meta or None, states=states)
