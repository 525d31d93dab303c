"""The one inference core: `generate()` turns a prompt into a Video. The CLI, tests and benchmarks call it.

    pipe = Pipeline.from_pretrained()            # the model shipped in the package
    video = pipe("a red circle falls and bounces", seconds=2, size=(64, 64), seed=0)
    video.frames.shape                           # (25, 64, 64, 3) uint8
    video.save("out.mp4")

A model folder holds model.json (defaults: fps, size, text encoder), vae.{json,safetensors} and
dit.{json,safetensors}.
"""

from __future__ import annotations

import json
import math
import os
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import numpy as np
import torch
from torch import Tensor

from kinema import flow
from kinema.checkpoint import CheckpointError, load_weights, read_config
from kinema.conditioning import (
    ImageInput,
    KinemaError,
    Reference,
    Shot,
    VideoInput,
    check_shots,
    encode,
    encode_head,
    encode_still,
    encode_tail,
    keyframe_reference,
    latent_index,
    load_image,
    load_video,
    missing_latents,
    read_shots,
    trim,
)
from kinema.data import to_uint8
from kinema.dit import DiT, DiTConfig
from kinema.expand import expand_prompt, expand_shots
from kinema.moderation import check_prompts
from kinema.review import review_frames
from kinema.text import TextEncoder
from kinema.vae import VAEConfig, VideoVAE
from kinema.video_io import check_output_path, write_video
from kinema.watermark import embed as embed_watermark
from kinema.watermark import make_payload, model_id_for

MAX_SECONDS = 60.0
DEFAULT_GUIDANCE = 5.0  # a model folder's model.json may name its own ("guidance"): Pipeline.guidance
FULL_INTERVAL = (0.0, 1.0)  # guidance at every step unless model.json names "guidance_interval"
EDIT_STRENGTH = 0.6  # SDEdit default: keeps the input's layout and timing, lets the prompt change colours
SHIPPED_MODEL = Path(__file__).parent / "assets"


@dataclass
class Video:
    frames: np.ndarray  # (T, H, W, 3) uint8
    fps: float
    prompt: str
    expanded_prompt: str
    seed: int
    info: dict = field(default_factory=dict)
    generation_id: str = field(default_factory=lambda: str(uuid.uuid4()))

    @property
    def watermark(self) -> str:
        """The 40-bit payload (10 hex digits) every saved copy carries: model id and generation id."""
        return make_payload(model_id_for(self.info.get("model", "kinema")), self.generation_id)

    def save(self, path: str | Path) -> Path:
        """Write .mp4 (H.264), .gif or .png (one frame); atomic, never a partial file. The frames pass frame
        review first (kinema.review): a video that fails raises ReviewError and nothing is written. Every
        format gets the invisible watermark; .mp4 and .png are C2PA-signed too, in a hidden file beside the
        target that is renamed into place only once signed, so no unsigned output ever appears at `path`."""
        from kinema.provenance import MIME as SIGNED_SUFFIXES  # c2pa and cryptography load on the first save
        from kinema.provenance import sign_file

        p = check_output_path(path, len(self.frames))
        self.info["review"] = review_frames(self.frames)
        frames = embed_watermark(self.frames, self.watermark)
        if p.suffix.lower() not in SIGNED_SUFFIXES:
            return write_video(frames, p, self.fps)
        tmp = p.with_name(f".{p.stem}.{self.generation_id}.unsigned{p.suffix}")
        try:
            write_video(frames, tmp, self.fps)
            sign_file(tmp, self.manifest())
            os.replace(tmp, p)
        finally:
            tmp.unlink(missing_ok=True)
        return p

    def manifest(self) -> dict:
        from kinema import __version__
        from kinema.provenance import manifest as c2pa_manifest

        return c2pa_manifest(
            self.info.get("model", "kinema"), __version__, self.seed, self.prompt, self.watermark, self.generation_id
        )


class Pipeline:
    """Text encoder + DiT + VAE decoder, with the defaults the model was trained at."""

    def __init__(self, vae: VideoVAE, dit: DiT, text_encoder: TextEncoder, meta: dict, path: Path | None) -> None:
        self.vae, self.dit, self.text_encoder, self.meta, self.path = vae, dit, text_encoder, meta, path

    @classmethod
    def from_pretrained(
        cls,
        path: str | Path | None = None,
        text_encoder: TextEncoder | None = None,
        lora: str | Path | None = None,
        compile: bool = False,
    ) -> Pipeline:
        """Load a model folder; None loads the model shipped inside the package (or, with lora, the base
        model the adapter was trained on). lora: a fine-tuning run folder whose lora.safetensors is merged
        into the DiT's weights. compile: run the DiT's forward through torch.compile (inductor fuses the
        norms, modulation and RoPE around the matmuls; see benchmarks/perf.py --compile for the measured
        gain). The first call at each shape compiles (tens of seconds on a small CPU even with inductor's
        on-disk cache warm), so it pays off in long-lived processes (kinema serve --compile) and on GPUs,
        not in one video on a small CPU (a 10 s video: 15.7 s eager, 59.4 s compiled, here)."""
        if path is None and lora is not None:
            base = read_config(Path(lora), "lora").get("base", "shipped")
            path = None if base == "shipped" else base
        folder = Path(path) if path is not None else SHIPPED_MODEL
        if not folder.is_dir():
            raise CheckpointError(f"no model folder at {folder}")
        meta_file = folder / "model.json"
        if not meta_file.is_file():
            raise CheckpointError(f"missing checkpoint file {meta_file}")
        try:
            meta = json.loads(meta_file.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise CheckpointError(f"corrupt model config {meta_file}: {e}") from None
        check_model_defaults(meta, meta_file)
        try:
            vae = VideoVAE(VAEConfig(**read_config(folder, "vae")["config"]))
            dit = DiT(DiTConfig(**read_config(folder, "dit")["config"]))
        except TypeError as e:
            raise CheckpointError(f"checkpoint config in {folder} is not valid: {e}") from None
        load_weights(folder, "vae", vae)
        load_weights(folder, "dit", dit)
        if lora is not None:
            from kinema.lora import apply_adapter

            apply_adapter(dit, Path(lora))
        enc = text_encoder or TextEncoder.from_pretrained(meta.get("text_encoder_path"), meta.get("text_len", 128))
        dit.eval().requires_grad_(False)
        if compile:
            dit.compile(dynamic=False)  # in place: still a DiT (encode_text, cfg), its forward compiled
        return cls(vae.eval().requires_grad_(False), dit, enc, meta, folder)

    @property
    def stride(self) -> int:
        """Pixel sizes must be multiples of this: the VAE's spatial ratio times the DiT's patch."""
        return self.vae.cfg.spatial_ratio * self.dit.cfg.patch[1]

    @property
    def guidance(self) -> float:
        """The classifier-free guidance scale a generation uses when none is given: the model's own
        ("guidance" in model.json, written by `kinema export --guidance`), else DEFAULT_GUIDANCE."""
        return model_guidance(self.meta, self.path)

    @property
    def guidance_interval(self) -> tuple[float, float]:
        """The times (lo, hi] at which guidance is applied when none are given: the model's own
        ("guidance_interval" in model.json, `kinema export --guidance-interval`), else every step."""
        return model_guidance_interval(self.meta, self.path)

    @property
    def guidance_eta(self) -> float:
        """The share of the guidance update kept along the prediction when none is given (flow.projected_guidance):
        the model's own ("guidance_eta" in model.json, `kinema export --guidance-eta`), else 1 (plain CFG)."""
        return model_guidance_eta(self.meta, self.path)

    @property
    def window(self) -> int:
        """Latent frames of the clip length the model was trained at (longer videos are made in windows)."""
        return 1 + (int(self.meta.get("frames", 25)) - 1) // self.vae.cfg.temporal_ratio

    def __call__(self, prompt: str = "", **kwargs) -> Video:
        return generate(self, prompt, **kwargs)


def frames_for(seconds: float, fps: float, temporal_ratio: int) -> int:
    """The frame count 1 + r k closest to seconds * fps (at least one frame)."""
    return 1 + temporal_ratio * max(0, round(seconds * fps / temporal_ratio))


def check_guidance(guidance: object) -> float:
    """A classifier-free guidance scale: a number in [0, 50] (KinemaError otherwise)."""
    if isinstance(guidance, bool) or not isinstance(guidance, int | float) or not 0 <= guidance <= 50:
        raise KinemaError(f"guidance must be in [0, 50], got {guidance!r}")
    return float(guidance)


T = TypeVar("T")


def _model_default(meta: dict, where: Path | None, key: str, default: object, check: Callable[[object], T]) -> T:
    """meta[key] (default if absent) passed through check; CheckpointError naming the model.json if bad."""
    try:
        return check(meta.get(key, default))
    except KinemaError as e:
        raise CheckpointError(f"model config {where}: {e}") from None


def check_model_defaults(meta: dict, where: Path | None) -> None:
    """Fail at load, not at the first request, when a model.json names a bad guidance default."""
    model_guidance(meta, where)
    model_guidance_interval(meta, where)
    model_guidance_eta(meta, where)


def model_guidance(meta: dict, where: Path | None) -> float:
    """A model's default guidance from its model.json (DEFAULT_GUIDANCE if it names none); CheckpointError
    if it names something that is not a scale."""
    return _model_default(meta, where, "guidance", DEFAULT_GUIDANCE, check_guidance)


def check_guidance_interval(interval: object) -> tuple[float, float]:
    """A guidance interval: two times lo < hi in [0, 1] (a list, a tuple or "LO:HI"; KinemaError otherwise)."""
    bad = KinemaError(f"guidance interval must be two times LO:HI with 0 <= LO < HI <= 1, got {interval!r}")
    if isinstance(interval, str):
        try:
            interval = [float(v) for v in interval.split(":")]
        except ValueError:
            raise bad from None
    if not isinstance(interval, list | tuple) or len(interval) != 2:
        raise bad
    if any(isinstance(v, bool) or not isinstance(v, int | float) for v in interval):
        raise bad
    lo, hi = (float(v) for v in interval)
    if not 0 <= lo < hi <= 1:
        raise bad
    return lo, hi


def model_guidance_interval(meta: dict, where: Path | None) -> tuple[float, float]:
    """A model's default guidance interval from its model.json (every step if it names none);
    CheckpointError if it names something else."""
    return _model_default(meta, where, "guidance_interval", FULL_INTERVAL, check_guidance_interval)


def check_guidance_eta(eta: object) -> float:
    """The guidance update's kept share along the prediction: a number in [0, 1] (KinemaError otherwise)."""
    if isinstance(eta, bool) or not isinstance(eta, int | float) or not 0 <= eta <= 1:
        raise KinemaError(f"guidance eta must be in [0, 1], got {eta!r}")
    return float(eta)


def model_guidance_eta(meta: dict, where: Path | None) -> float:
    """A model's default guidance eta from its model.json (1, plain CFG, if it names none); CheckpointError
    if it names something else."""
    return _model_default(meta, where, "guidance_eta", 1.0, check_guidance_eta)


def check_options(
    pipe: Pipeline, size: tuple[int, int], fps: float, steps: int, guidance: float, sampler: str = "euler"
) -> None:
    """Raise KinemaError with a one-line reason for options no task can be served with."""
    if not (0 < fps <= 60):
        raise KinemaError(f"fps must be in (0, 60], got {fps:g}")
    w, h = size
    s = pipe.stride
    if w <= 0 or h <= 0 or w % s or h % s:
        raise KinemaError(f"size must be positive multiples of {s} (e.g. 64x64, 96x64), got {w}x{h}")
    if w * h > 1024 * 1024:
        raise KinemaError(f"size {w}x{h} is larger than 1024x1024 pixels")
    if not (1 <= steps <= 1000):
        raise KinemaError(f"steps must be in [1, 1000], got {steps}")
    check_guidance(guidance)
    if sampler not in flow.SAMPLERS:
        raise KinemaError(f"unknown sampler {sampler!r}; choose from {', '.join(flow.SAMPLERS)}")


def check_seconds(seconds: float) -> None:
    if not (0 < seconds <= MAX_SECONDS) or not math.isfinite(seconds):
        raise KinemaError(f"seconds must be in (0, {MAX_SECONDS:g}], got {seconds:g}")


TASKS = ("image", "video", "keyframes", "fill", "edit", "shots")
SHOT_CONTEXTS = ("first", "none", "previous")  # what a later shot is conditioned on: see _generate_shots
SHOT_NOISE = ("new", "same")  # each shot's starting noise: seed + shot index, or the seed's for every shot


def check_task(
    inputs: dict[str, object],
    *,
    prompt: str,
    loop: bool,
    frames: int | None,
    seconds: float | None,
    extend: str,
    missing: tuple[float, float] | None,
    strength: float | None,
    shot_context: str | None = None,
    shot_noise: str | None = None,
) -> str:
    """The task a request asks for ("text", "loop" or one of TASKS), or a one-line KinemaError for a
    conflicting or incomplete combination. inputs maps each name of TASKS to its argument."""
    chosen = [k for k in TASKS if inputs[k] is not None and inputs[k] is not False]
    if len(chosen) > 1:
        raise KinemaError(f"conflicting inputs {' and '.join(chosen)}: give one of {', '.join(TASKS)}")
    task = chosen[0] if chosen else "text"
    if loop and task not in ("text", "image"):
        raise KinemaError(f"loop combines with a prompt or an image only, not with {task}")
    if frames is not None and seconds is not None:
        raise KinemaError("give seconds or frames, not both")
    if frames is not None and task in ("video", "fill", "edit", "shots"):
        raise KinemaError(f"frames does not apply to {task}")
    if seconds is not None and task in ("fill", "edit", "shots"):
        raise KinemaError(f"seconds does not apply to {task}: the length comes from the input")
    if extend not in ("forward", "backward"):
        raise KinemaError(f"extend must be forward or backward, got {extend!r}")
    if extend != "forward" and task != "video":
        raise KinemaError("extend applies to a video input only")
    if (missing is None) != (task != "fill"):
        raise KinemaError("fill and missing (START:END seconds) go together")
    if strength is not None and task != "edit":
        raise KinemaError("strength applies to edit only")
    if strength is not None and not (0 < strength <= 1):
        raise KinemaError(f"strength must be in (0, 1], got {strength:g}")
    if shot_context is not None and task != "shots":
        raise KinemaError("shot context applies to shots only")
    if shot_context is not None and shot_context not in SHOT_CONTEXTS:
        raise KinemaError(f"shot context must be one of {', '.join(SHOT_CONTEXTS)}, got {shot_context!r}")
    if shot_noise is not None and task != "shots":
        raise KinemaError("shot noise applies to shots only")
    if shot_noise is not None and shot_noise not in SHOT_NOISE:
        raise KinemaError(f"shot noise must be one of {', '.join(SHOT_NOISE)}, got {shot_noise!r}")
    if task == "shots" and prompt.strip():
        raise KinemaError("give a prompt or shots, not both (each shot has its prompt)")
    if task != "shots" and (not isinstance(prompt, str) or not prompt.strip()):
        raise KinemaError("the prompt is empty")
    return "loop" if loop else task


def window_plan(length: int, latents: int, window: int, overlap: int, r: int, backward: bool) -> list[tuple[int, int]]:
    """(given, new) latent frames of each window that grows a clip of `length` frames by `latents` latent
    frames. A forward window starts with `given` re-encoded frames of the join; a backward one ends with
    them and has one extra leading latent frame, dropped, so each window adds exactly r * new frames."""
    plan = []
    while latents > 0:
        if backward:
            k = max(1, min(overlap, length // r))
            n = max(1, min(latents, window - 1 - k))
        else:
            k = min(overlap, 1 + (length - 1) // r)
            n = max(1, min(latents, window - k))
        plan.append((k, n))
        length, latents = length + r * n, latents - n
    return plan


def crossfade(old: np.ndarray, new: np.ndarray, towards_end: bool) -> np.ndarray:
    """Blend two decodings of the same frames, weighting `new` more towards the end (or the start): hides
    the small VAE round-trip difference at the join of two windows."""
    w = np.arange(1, len(old) + 1, dtype=np.float32) / (len(old) + 1)
    w = (w if towards_end else w[::-1])[:, None, None, None]
    return (old * (1 - w) + new * w).round().astype(np.uint8)


CARRY = 8  # generated frames (two latent frames) into which a kept frame's VAE error is carried, fading
DISSOLVE = 4  # kept input frames (one latent frame) at each edge of an infill that blend from the decoding


def _fade(distance: np.ndarray, span: int) -> np.ndarray:
    """Share given to a frame `distance` frames from a join, fading linearly over `span` frames: with span 8,
    8/9, 7/9, ..., 1/9, then nothing."""
    return np.clip(span + 1 - distance, 0, None).astype(np.float32) / (span + 1)


def carry_residual(given: np.ndarray, decoded: np.ndarray, new: np.ndarray, at_end: bool) -> np.ndarray:
    """Shift generated frames next to a join with kept input frames by the VAE's round-trip error there.

    At such a join the input frame is kept as it was, but the generated frames continue its decoding,
    which differs from it by the VAE's error (~35 dB here, a mean change larger than a typical frame step
    of a quiet scene): a visible jump. The error image (given - decoded) of the join frame is added to the
    generated frames, 8/9 of it next to the join, fading by a ninth a frame over CARRY = 8 frames (two
    latent frames; the step it adds at the join and between faded frames is 1/9 of the error, against 1/5
    over one latent frame, which left backward joins 0.2 of a typical step rougher: README, "Conditioning,
    measured"); the frames beyond are left as sampled. at_end: the join is after `new` (backward
    extension), else before it."""
    kept = np.zeros(len(new) + 1, bool)
    if at_end:
        kept[-1] = True
        return keep_frames(np.concatenate([new, decoded[None]]), np.concatenate([new, given[None]]), kept)[:-1]
    kept[0] = True
    return keep_frames(np.concatenate([decoded[None], new]), np.concatenate([given[None], new]), kept)[1:]


def keep_frames(out: np.ndarray, src: np.ndarray, kept: np.ndarray) -> np.ndarray:
    """The decoded video `out` with the frames where `kept` is True replaced by the input's own `src`
    frames (bit-exact, as a user expects of an animated image or a keyframe), and the error of each kept
    frame next to generated ones carried into those, fading over CARRY frames on each side (see
    carry_residual; between two near kept frames, interpolated)."""
    fixed = out.astype(np.float32)
    for f in np.flatnonzero(~kept):
        shares = []  # (weight, error) of the nearest kept frame before and after, if within CARRY frames
        for side in (-1, 1):
            g = f + side
            while 0 <= g < len(out) and not kept[g] and abs(g - f) <= CARRY:
                g += side
            if 0 <= g < len(out) and kept[g]:
                shares.append((float(_fade(np.array(abs(g - f)), CARRY)), src[g].astype(np.float32) - out[g]))
        total = sum(w for w, _ in shares)
        if total > 0:  # between two near kept frames the shares are normalised: an interpolation, no overshoot
            fixed[f] += sum(w * e for w, e in shares) / max(1.0, total)
    fixed[kept] = src[kept]
    return fixed.clip(0, 255).round().astype(np.uint8)


def dissolve_kept(out: np.ndarray, src: np.ndarray, kept: np.ndarray) -> np.ndarray:
    """Infill's output: the input's own frames where `kept`, the decoded ones elsewhere, and a dissolve in
    the kept frames within DISSOLVE of a generated one (4/5 decoded next to it ... 1/5). The regenerated
    frames can differ from the input by far more than the VAE's error (other positions), so rather than
    shifting them (keep_frames), the few kept frames at each edge blend from the decoding into the input,
    which is bit-exact beyond them."""
    made = np.flatnonzero(~kept)
    fixed = out.astype(np.float32)
    for f in np.flatnonzero(kept):
        a = float(_fade(np.abs(made - f).min(), DISSOLVE)) if len(made) else 0.0
        fixed[f] = a * fixed[f] + (1 - a) * src[f]
    return fixed.clip(0, 255).round().astype(np.uint8)


class _Run:
    """One request's sampling state: text model function, noise generator, window sizes and progress."""

    def __init__(
        self, pipe: Pipeline, model_fn: flow.ModelFn, size: tuple[int, int], steps: int, sampler: str, seed: int
    ) -> None:
        self.pipe, self.model_fn, self.size, self.steps, self.sampler = pipe, model_fn, size, steps, sampler
        self.g = torch.Generator().manual_seed(int(seed))
        self.window = pipe.window
        self.overlap = max(1, (self.window - 1) // 2)  # 3 of 7 latent frames: 9 pixel frames of motion
        self.windows = 0
        self.callback: Callable[[int, int], None] | None = None

    def reference(self, frames: int) -> Reference:
        w, h = self.size
        s = self.pipe.vae.cfg.spatial_ratio
        return Reference.empty(self.pipe.vae.cfg.latent_channels, frames, h // s, w // s)

    def clip(self, ref: Reference | None, frames: int, init: Tensor | None = None, strength: float = 1.0) -> np.ndarray:
        """Sample `frames` latent frames (given frames of ref kept clean; init noised to t = strength for an
        edit) and decode them: (1 + r (frames - 1), H, W, 3) uint8."""
        pipe, (w, h) = self.pipe, self.size
        _, lh, lw = pipe.vae.latent_shape(1, h, w)
        x = torch.randn((1, pipe.vae.cfg.latent_channels, frames, lh, lw), generator=self.g)
        tokens = frames * lh * lw // math.prod(pipe.dit.cfg.patch)
        ts = flow.timestep_schedule(self.steps, flow.shift_for_tokens(tokens))
        fn = self.model_fn
        if init is not None:
            x, ts = flow.add_noise(init, x, torch.tensor([strength])), flow.truncate_schedule(ts, strength)
        if ref is not None:
            x = torch.where(ref.given.view(1, 1, -1, 1, 1), ref.latents, x)
            fn = flow.conditioned(fn, ref.latents, ref.given)
        z = flow.SAMPLERS[self.sampler](fn, x, ts, callback=self.callback, generator=self.g)
        self.windows += 1
        return to_uint8(pipe.vae.decode(z, chunk=4 if frames > 8 else None)[0])

    def extend(self, frames: np.ndarray, latents: int, backward: bool, protected: int) -> np.ndarray:
        """Grow frames (1 + r k of them) by `latents` latent frames, r pixel frames each, one window of the
        trained length at a time, each given the re-encoded frames at the join. Join frames that we
        generated (not the `protected` input frames) are crossfaded with their re-decoding. The output is
        filled in place, so memory is the output plus one window, never a copy per window."""
        vae, r = self.pipe.vae, self.pipe.vae.cfg.temporal_ratio
        buf = np.empty((len(frames) + r * latents, *frames.shape[1:]), np.uint8)
        lo, hi = (len(buf) - len(frames), len(buf)) if backward else (0, len(frames))  # buf[lo:hi] is done
        buf[lo:hi] = frames
        for k, n in window_plan(len(frames), latents, self.window, self.overlap, r, backward):
            if backward:
                ref = self.reference(n + 1 + k)
                ref.put(n + 1, encode_head(vae, buf[lo:hi], k))
                out = self.clip(ref, n + 1 + k)  # [dropped frame, r n new frames, r k join frames]
                fresh = out[1 : 1 + r * n]
                if r * k <= hi - lo - protected:
                    buf[lo : lo + r * k] = crossfade(buf[lo : lo + r * k], out[1 + r * n :], towards_end=False)
                else:  # the join frame is a kept input frame
                    fresh = carry_residual(buf[lo], out[1 + r * n], fresh, at_end=True)
                buf[lo - r * n : lo] = fresh
                lo -= r * n
            else:
                ref = self.reference(k + n)
                ref.put(0, encode_tail(vae, buf[lo:hi], k))
                out = self.clip(ref, k + n)  # [m join frames, r n new frames]
                m = 1 + r * (k - 1)
                fresh = out[m:]
                if hi - m >= protected:
                    buf[hi - m : hi] = crossfade(buf[hi - m : hi], out[:m], towards_end=True)
                else:  # the join frame is a kept input frame
                    fresh = carry_residual(buf[hi - 1], out[m - 1], fresh, at_end=False)
                buf[hi : hi + r * n] = fresh
                hi += r * n
        return buf


def text_model_fn(
    pipe: Pipeline,
    text: str,
    negative_prompt: str,
    guidance: float,
    interval: tuple[float, float] = FULL_INTERVAL,
    eta: float = 1.0,
    autoguide: tuple[DiT, float] | None = None,
) -> flow.ModelFn:
    """model_fn(x, t) -> velocity for one prompt, with classifier-free guidance batched (text tokens are
    projected once per request) at the steps whose time lies in interval (flow.in_guidance_interval); the
    other steps run the conditional branch alone, at half the cost. t is (B,) or per latent frame (B, T).
    eta < 1 scales the guidance update's part along the prediction (flow.projected_guidance). autoguide
    (weak DiT, weight): at every step, also push along the conditional prediction minus the weak model's
    (flow.autoguidance), one more forward pass of the weak model."""
    emb, mask = pipe.text_encoder.encode([text, negative_prompt])
    use_cfg = guidance != 1.0
    if not use_cfg:
        emb, mask = emb[:1], mask[:1]
    with torch.autocast("cpu", dtype=torch.bfloat16):
        cache = pipe.dit.encode_text(emb, mask)
        weak_cache = None if autoguide is None else autoguide[0].encode_text(emb[:1], mask[:1])

    def model_fn(xt: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        n = 2 if use_cfg and flow.in_guidance_interval(t, interval) else 1
        c = cache if n == 2 else (cache[0][:1], cache[1][:1])
        with torch.autocast("cpu", dtype=torch.bfloat16):
            v = pipe.dit(xt.repeat(n, 1, 1, 1, 1), t.repeat(n, *[1] * (t.ndim - 1)), emb[:n], mask[:n], text_cache=c)
        v = v.float()
        if n == 1:
            out = v
        elif eta == 1.0:
            out = flow.guidance(v[:1], v[1:], guidance)
        else:
            out = flow.projected_guidance(v[:1], v[1:], guidance, xt.float(), t[:1].float(), eta)
        if autoguide is None:
            return out
        weak, weight = autoguide
        with torch.autocast("cpu", dtype=torch.bfloat16):
            vw = weak(xt, t, emb[:1], mask[:1], text_cache=weak_cache).float()
        return flow.autoguidance(out, v[:1], vw, weight)

    return model_fn


@torch.no_grad()
def generate(
    pipe: Pipeline,
    prompt: str = "",
    *,
    seconds: float | None = None,
    frames: int | None = None,
    size: tuple[int, int] | None = None,
    fps: float | None = None,
    steps: int = 30,
    guidance: float | None = None,
    guidance_interval: tuple[float, float] | str | None = None,
    guidance_eta: float | None = None,
    seed: int = 0,
    sampler: str = "euler",
    expand: bool = True,
    negative_prompt: str = "",
    progress: Callable[[int, int], None] | None = None,
    image: ImageInput | None = None,
    video: VideoInput | None = None,
    extend: str = "forward",
    keyframes: list[tuple[ImageInput, float]] | None = None,
    fill: VideoInput | None = None,
    missing: tuple[float, float] | None = None,
    loop: bool = False,
    edit: VideoInput | None = None,
    strength: float | None = None,
    shots: str | Path | list | None = None,
    shot_context: str | None = None,
    shot_noise: str | None = None,
    moderate: bool = True,
) -> Video:
    """Sample a video for a prompt. Deterministic given (model, prompt, inputs, options, seed).

    At most one task input (all are clean reference latents + a mask, see flow.conditioned):
    image (animate a still: it becomes latent frame 0), video + extend ("forward": continue it, "backward":
    new frames lead into it; seconds is the length of the new part, the output holds both), keyframes
    [(image, seconds), ...] (interpolation when first and last), fill + missing (start, end) in seconds
    (regenerate that range, the rest kept), edit + strength (SDEdit: noise the input to t = strength,
    default 0.6), shots (a file or list of {prompt, seconds}: hard cuts; shot_context "first" (default),
    "none" or "previous" says which frame of the video so far every later shot is conditioned on;
    shot_noise "new" (default) or "same" says whether every shot starts from fresh noise or the same;
    see _generate_shots).
    loop (with a prompt or an image) makes the last frame flow into the first. frames=1 gives an image.
    Inputs are scaled to cover `size` and center-cropped, and resampled in time to `fps`. Videos longer
    than the trained window are generated window by window with forward extension; keyframe, fill, edit
    and loop clips are sampled in one pass over the whole clip.

    Every prompt (each shot's, and the negative prompt when guidance < 1 gives it positive weight) is checked
    against the usage policy before any model work: a refused one raises PolicyError (kinema.moderation).
    moderate=False skips the check; it is for tests and internal evaluation on the world's own prompts.
    guidance None is the model's own scale (Pipeline.guidance); guidance_interval (lo, hi) applies it only
    at the sampling times lo < t <= hi (flow.in_guidance_interval), None the model's own
    (Pipeline.guidance_interval: every step unless its model.json names one). guidance_eta in [0, 1] keeps
    that share of the guidance update's part along the prediction (flow.projected_guidance; 1 is plain CFG),
    None the model's own (Pipeline.guidance_eta).
    """
    meta = pipe.meta
    fps = float(fps or meta.get("fps", 12))
    guidance = pipe.guidance if guidance is None else guidance
    interval = pipe.guidance_interval if guidance_interval is None else check_guidance_interval(guidance_interval)
    eta = pipe.guidance_eta if guidance_eta is None else check_guidance_eta(guidance_eta)
    size = tuple(size or (meta.get("width", 64), meta.get("height", 64)))  # type: ignore[assignment]
    inputs = {
        "image": image,
        "video": video,
        "keyframes": keyframes or None,
        "fill": fill,
        "edit": edit,
        "shots": shots,
    }
    check_options(pipe, size, fps, steps, guidance, sampler)
    task = check_task(
        inputs, prompt=prompt, loop=loop, frames=frames, seconds=seconds, extend=extend, missing=missing,
        strength=strength, shot_context=shot_context, shot_noise=shot_noise,
    )  # fmt: skip
    if seconds is not None:
        check_seconds(seconds)
    shot_list = None
    if task == "shots":
        shot_list = read_shots(shots) if isinstance(shots, str | Path) else check_shots(shots)
    if moderate:
        texts = {f"shot {i + 1} prompt": s.prompt for i, s in enumerate(shot_list)} if shot_list else {"prompt": prompt}
        if guidance < 1:  # v = g v(prompt) + (1 - g) v(negative): the negative prompt is followed, not avoided
            texts["negative prompt"] = negative_prompt
        check_prompts(texts, pipe.text_encoder)
    if shot_list is not None:
        kw = dict(size=size, fps=fps, steps=steps, guidance=guidance, guidance_interval=interval, sampler=sampler)
        kw.update(guidance_eta=eta, progress=progress)
        context, noise = shot_context or "first", shot_noise or "new"
        return _generate_shots(pipe, shot_list, seed, expand, negative_prompt, context, noise, kw)
    started = time.time()
    w, h = size
    r = pipe.vae.cfg.temporal_ratio
    default_seconds = (meta.get("frames", 25) - 1) / meta.get("fps", 12)
    src = None
    if task in ("video", "fill", "edit"):
        src = trim(load_video(inputs[task], size, fps), r, keep_end=task == "video" and extend == "forward")
    n_frames = _frame_count(task, frames, seconds, default_seconds, fps, r, keyframes, src)
    new_latents = max(1, round((seconds or default_seconds) * fps / r))  # extension only
    duration = r * new_latents / fps if task == "video" else (n_frames - 1) / fps
    text = expand_prompt(prompt, aspect=w / h, duration=duration) if expand else prompt
    model_fn = text_model_fn(pipe, text, negative_prompt, guidance, interval, eta=eta)
    run = _Run(pipe, model_fn, size, steps, sampler, seed)
    run.callback = _progress_counter(progress)
    T = (n_frames - 1) // r + 1
    vae = pipe.vae
    if task == "video":
        out = run.extend(src, new_latents, backward=extend == "backward", protected=len(src))
    elif task in ("text", "image"):
        ref = None
        if image is not None:
            still = load_image(image, size)
            ref = run.reference(min(T, run.window))
            ref.put(0, encode(vae, still[None]))
        out = run.clip(ref, min(T, run.window))
        if image is not None:  # frame 0 is the image itself, not its VAE round trip
            out = keep_frames(out, *_pinned(out, {0: still}))
        if T > run.window:
            out = run.extend(out, T - run.window, backward=False, protected=0)
    elif task == "keyframes":
        kf = [(load_image(img, size), float(sec)) for img, sec in keyframes]
        out = run.clip(keyframe_reference(vae, kf, fps, T, size), T)
        out = keep_frames(out, *_pinned(out, {round(sec * fps): img for img, sec in kf}))
    elif task == "fill":
        given = torch.ones(T, dtype=torch.bool)
        given[missing_latents(missing, fps, len(src), r)] = False
        out = run.clip(Reference(encode(vae, src), given), T)
        kept = given[[latent_index(f, r) for f in range(len(out))]].numpy()
        out = dissolve_kept(out, src, kept)  # the frames outside the regenerated latents are the input's
    elif task == "edit":
        out = run.clip(None, T, init=encode(vae, src), strength=strength or EDIT_STRENGTH)
    else:  # loop: see loop_reference and close_loop
        first = load_image(image, size) if image is not None else run.clip(None, 1)[0]
        out = close_loop(run.clip(loop_reference(run, first, T), T + 1), 1 + r * (T - 1), first)
    info = {
        "model": "kinema-shipped" if pipe.path == SHIPPED_MODEL else pipe.path.name if pipe.path else "kinema",
        "task": task,
        "steps": steps,
        "guidance": guidance,
        "guidance_interval": list(interval),
        "guidance_eta": eta,
        "sampler": sampler,
        "size": [w, h],
        "frames": len(out),
        "seconds": (len(out) - 1) / fps,
        "latent": [(len(out) - 1) // r + 1, h // vae.cfg.spatial_ratio, w // vae.cfg.spatial_ratio],
        "windows": run.windows,
        "wall_s": round(time.time() - started, 3),
    }
    return Video(out, fps, prompt, text, int(seed), info)


def _pinned(out: np.ndarray, frames: dict[int, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """(src, kept) for keep_frames: `out` with the given frames (index: image) put in, and their mask."""
    src, kept = out.copy(), np.zeros(len(out), bool)
    for f, image in frames.items():
        src[f], kept[f] = image, True
    return src, kept


def _frame_count(
    task: str,
    frames: int | None,
    seconds: float | None,
    default_seconds: float,
    fps: float,
    r: int,
    keyframes: list | None,
    src: np.ndarray | None,
) -> int:
    """Frames of the clip to sample (1 + r k): the input's for fill and edit; for keyframes without seconds,
    enough to reach the last keyframe."""
    if task in ("fill", "edit") and src is not None:
        return len(src)
    if frames is not None:
        if frames < 1 or (frames - 1) % r or (frames - 1) / fps > MAX_SECONDS:
            raise KinemaError(f"frames must be 1 + {r}k (1, {1 + r}, {1 + 2 * r}, ...) up to {MAX_SECONDS:g} s")
        return frames
    if task == "keyframes" and seconds is None:
        last = max(round(float(sec) * fps) for _, sec in keyframes or [])
        return 1 + r * max(1, math.ceil(last / r))
    return frames_for(seconds if seconds is not None else default_seconds, fps, r)


def loop_reference(run: _Run, first: np.ndarray, latents: int) -> Reference:
    """A looping clip of `latents` latent frames is sampled with one more: latent frame 0 is the first frame
    and the extra last latent frame is the first frame again, as a still pseudo-chunk. The output stops
    before that chunk, so its last frame leads into the first frame: the wrap is a normal step of motion,
    with no held or duplicated frame, and the length stays 1 + r k."""
    ref = run.reference(latents + 1)
    ref.put(0, encode(run.pipe.vae, first[None]))
    ref.put(latents, encode_still(run.pipe.vae, first))
    return ref


def close_loop(decoded: np.ndarray, frames: int, first: np.ndarray) -> np.ndarray:
    """The first `frames` frames of a loop's decoding (see loop_reference), with frame 0 the first frame
    itself and the wrap closed: the frame after the last one kept is the still pseudo-chunk's first
    frame, which should be frame 0 again but is its decoding in another context. Pinning it to `first`
    (keep_frames) carries that difference into the last frames, fading, so the last frame leads into
    frame 0 as it led into the pseudo-chunk."""
    ext = decoded[: frames + 1]
    src, kept = _pinned(ext, {0: first, frames: first})
    return keep_frames(ext, src, kept)[:frames]


def _progress_counter(progress: Callable[[int, int], None] | None) -> Callable[[int, int], None] | None:
    """Report sampling steps cumulatively over the windows of one request: (done, done rounded up to a
    whole number of windows), so a bar grows by one window at a time."""
    if progress is None:
        return None
    done = 0

    def callback(i: int, n: int) -> None:
        nonlocal done
        done += 1
        progress(done, done - i + n)

    return callback


def _generate_shots(
    pipe: Pipeline,
    shots: list[Shot],
    seed: int,
    expand: bool,
    negative_prompt: str,
    context: str,
    noise: str,
    kw: dict,
) -> Video:
    """Hard cuts: each shot is its own clip (seed + shot index; see noise), its first frame dropped after
    the first shot so the whole has 1 + r k frames. Prompts are expanded together (expand.expand_shots) so
    an object named in several shots keeps its hue, shape and size words.

    A later shot can also be given a frame of the video so far as a clean reference latent at t = 0
    (latent frame 0, as in image-to-video, which the model was trained for; train.TaskMix.first_frame).
    That frame is the one each later shot drops, so it conditions the shot without being part of the
    output. context "first" (the default): the first frame of shot 1 (a hard cut back to the opening
    set-up, with its objects and style); "previous": the last frame of the previous shot (a continuity cut:
    the action changes, the picture barely jumps); "none": independent shots, identity from the prompts.
    With the shipped model and its session-10 decoder, "first" keeps the objects' colour, shape and size
    closer across the cut than "none" on 96 fresh stories, and the cut stays the largest step wherever
    shot 1 moves (after a still shot 1 it continues the unchanged scene, so that cut is not seen); README,
    "Conditioning, measured".

    noise "same" starts every shot from the seed's noise (the same noise when shots have the same length;
    the noise tensor is drawn channel by channel, so shots of other lengths share only the seed): the model
    then tends to place and draw the shared objects alike. With the shipped model it brought objects'
    colour and size closer across cuts but matched their best-fit shape less often (README), so the
    default stays "new": shot i uses seed + i."""
    total = sum(s.seconds for s in shots)
    if total > MAX_SECONDS:
        raise KinemaError(f"the shots add up to {total:g} s, more than {MAX_SECONDS:g} s")
    w, h = kw["size"]
    texts = [s.prompt for s in shots]
    if expand:
        texts = expand_shots(texts, aspect=w / h, durations=[s.seconds for s in shots])
    started = time.time()
    parts, cuts, windows = [], [], 0
    for i, (shot, text) in enumerate(zip(shots, texts, strict=True)):
        ref = None
        if i > 0 and context == "first":
            ref = parts[0][0]
        elif i > 0 and context == "previous":
            ref = parts[-1][-1]
        # moderate=False: the shots' own prompts were checked before expansion
        v = generate(
            pipe,
            text,
            seconds=shot.seconds,
            seed=seed if noise == "same" else seed + i,
            expand=False,
            negative_prompt=negative_prompt,
            image=ref,
            moderate=False,
            **kw,
        )
        cuts.append(sum(len(p) for p in parts))
        parts.append(v.frames if i == 0 else v.frames[1:])
        windows += v.info["windows"]
    out = np.concatenate(parts)
    info = {**v.info, "task": "shots", "frames": len(out), "seconds": (len(out) - 1) / kw["fps"], "cuts": cuts}
    info.update(shot_context=context, shot_noise=noise, windows=windows, wall_s=round(time.time() - started, 3))
    return Video(out, kw["fps"], " | ".join(s.prompt for s in shots), " | ".join(texts), int(seed), info)
