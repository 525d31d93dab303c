"""kinema's HTTP server: the OpenAI Videos API (`/v1/videos`) over durable jobs, and the web studio at `/`.

    kinema keys create alice --data-dir runs/serve     # prints the key (last word)
    kinema serve --data-dir runs/serve --port 8000     # then POST /v1/videos with Authorization: Bearer KEY

The API process validates a request (the same checks as generate(), on the model's configs, not its
weights), stores the job in SQLite and answers at once; worker processes (worker.py) generate. Errors are
`{"error": {"code", "message", "param"}}` with stable codes; `openai-poll-after-ms` tells clients how often
to poll. Field names follow the OpenAI Video object; kinema's extras (keyframes, extension, shots, seed,
steps, guidance, callback_url) are optional fields of the same requests.
"""

from __future__ import annotations

import base64
import binascii
import fcntl
import io
import json
import logging
import math
import multiprocessing as mp
import os
import secrets
import threading
import time
import warnings
from collections.abc import Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

from fastapi import Depends, FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from PIL import Image, UnidentifiedImageError
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from kinema.moderation import moderate
from kinema.server import worker as W
from kinema.server.auth import Limiter, check_key
from kinema.server.callbacks import UnsafeCallback, check_callback_url, post_callback
from kinema.server.jobs import Store, video_object

log = logging.getLogger("kinema.server")
STATIC = Path(__file__).parent / "static"
MODEL_ALIASES = ("kinema", "kinema-1")
IMAGE_FORMATS = ("PNG", "JPEG", "WEBP", "GIF", "BMP")
CONTENT = {"video": ("video.mp4", "video/mp4"), "thumbnail": ("thumbnail.webp", "image/webp")}
CONTENT["spritesheet"] = ("spritesheet.jpg", "image/jpeg")
CALLBACK_TRIES = 4  # the first POST and three retries, 1, 2 and 4 s apart
ASPECTS = {"1:1": 1.0, "16:9": 16 / 9, "9:16": 9 / 16, "4:3": 4 / 3}


@dataclass
class ServerConfig:
    data_dir: Path
    model: Path | None = None  # None: the shipped model
    workers: int = 1
    insecure_no_auth: bool = False
    allow_private_callbacks: bool = False  # local development: callbacks to loopback and private addresses
    retention_hours: float = 24.0
    max_active_jobs: int = 8  # queued + in_progress per key
    submit_rate: float = 0.5  # new jobs per second per key (token bucket) ...
    submit_burst: float = 10.0  # ... and its burst
    request_rate: float = 20.0  # any /v1 call per second per key
    request_burst: float = 100.0
    max_body_mb: float = 20.0
    max_image_pixels: int = 4096 * 4096
    max_seconds: float = 20.0
    max_pixels: int = 256 * 256  # of an output frame
    max_steps: int = 100
    default_steps: int = 30
    poll_after_ms: int = 1000
    sweep_every_s: float = 60.0
    threads_per_worker: int | None = None  # None: the cores split between the workers
    compile: bool = False  # torch.compile each worker's DiT (pays off in a long-lived worker, see perf.py)


class APIError(Exception):
    def __init__(
        self, status: int, code: str, message: str, param: str | None = None, headers: dict | None = None
    ) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.param, self.headers = status, code, message, param, headers


def retry_after(seconds: float) -> dict[str, str]:
    return {"Retry-After": str(max(1, math.ceil(seconds)))}


def error_response(status: int, code: str, message: str, param: str | None = None, headers: dict | None = None):
    return JSONResponse({"error": {"code": code, "message": message, "param": param}}, status, headers=headers)


# KinemaError messages start with what was wrong: that start names the stable code and the parameter
KINEMA_CODES = [
    ("size", "invalid_size", "size"),
    ("seconds", "invalid_seconds", "seconds"),
    ("frames", "invalid_seconds", "seconds"),
    ("steps", "invalid_steps", "steps"),
    ("guidance", "invalid_guidance", "guidance"),
    ("fps", "invalid_fps", "fps"),
    ("the prompt is empty", "empty_prompt", "prompt"),
    ("give a prompt or shots", "conflicting_inputs", "prompt"),
    ("conflicting inputs", "conflicting_inputs", None),
    ("the shots", "invalid_shots", "shots"),
    ("shots", "invalid_shots", "shots"),
    ("shot context", "invalid_shot_context", "shot_context"),
    ("loop", "invalid_loop", "loop"),
    ("extend", "invalid_extend", "extend"),
    ("keyframe", "invalid_keyframes", "keyframes"),
]


def kinema_error(e: ValueError) -> APIError:
    """A pipeline KinemaError (a one-line reason) as a 400 with a stable code."""
    message = str(e).strip().splitlines()[0] if str(e).strip() else "invalid request"
    for start, code, param in KINEMA_CODES:
        if message.lower().startswith(start):
            return APIError(400, code, message, param)
    return APIError(400, "invalid_request", message)


def preflight(host: str, port: int, data_dir: Path) -> None:
    """What `kinema serve` checks before uvicorn starts, so that each is one error line, not a traceback:
    the data dir is free (no other server holds its lock) and the address can be listened on."""
    import socket

    Path(data_dir).mkdir(parents=True, exist_ok=True)
    with open(Path(data_dir) / "server.lock", "a") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise ValueError(f"another kinema server is using {data_dir}") from None
    try:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        with socket.socket(family) as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn does
            s.bind((host, port))
    except OSError as e:
        raise ValueError(f"cannot listen on {host}:{port}: {e.strerror or e}") from None


# ---- the model, read from its configs (the API process never loads weights) ---------------------------


@dataclass
class ModelInfo:
    name: str
    stride: int
    temporal_ratio: int
    fps: float
    width: int
    height: int
    frames: int
    guidance: float

    @classmethod
    def read(cls, path: Path | None) -> ModelInfo:
        from kinema.checkpoint import CheckpointError, read_config
        from kinema.dit import DiTConfig
        from kinema.pipeline import SHIPPED_MODEL, check_model_defaults, model_guidance
        from kinema.vae import VAEConfig

        folder = Path(path) if path is not None else SHIPPED_MODEL
        meta_file = folder / "model.json"
        if not meta_file.is_file():
            raise CheckpointError(f"no model folder at {folder} (missing model.json)")
        meta = json.loads(meta_file.read_text())
        vae = VAEConfig(**read_config(folder, "vae")["config"])
        dit = DiTConfig(**read_config(folder, "dit")["config"])
        check_model_defaults(meta, meta_file)  # a bad default fails at start, as generation would
        return cls(
            name="kinema-1",
            stride=vae.spatial_ratio * dit.patch[1],
            temporal_ratio=vae.temporal_ratio,
            fps=float(meta.get("fps", 12)),
            width=int(meta.get("width", 64)),
            height=int(meta.get("height", 64)),
            frames=int(meta.get("frames", 25)),
            guidance=model_guidance(meta, meta_file),
        )

    @property
    def default_seconds(self) -> float:
        return (self.frames - 1) / self.fps


def aspect_sizes(stride: int, width: int, height: int, max_pixels: int) -> dict[str, str]:
    """For each studio aspect, the size (multiples of stride) within 3% of the aspect whose area is closest
    to the model's trained size (else the closest aspect): 64x64 at stride 16 gives 112x64 for 16:9."""
    out = {}
    sizes = [
        (w, h)
        for w in range(stride, 8 * max(width, height) + 1, stride)
        for h in range(stride, 8 * max(width, height) + 1, stride)
        if w * h <= max_pixels
    ]
    for name, aspect in ASPECTS.items():

        def cost(wh: tuple[int, int], aspect: float = aspect) -> tuple[bool, float, float]:
            off = abs(math.log(wh[0] / wh[1] / aspect))
            return off > 0.03, abs(math.log(wh[0] * wh[1] / (width * height))), off

        w, h = min(sizes, key=cost)
        out[name] = f"{w}x{h}"
    return out


# ---- requests ------------------------------------------------------------------------------------------


class VideoRef(BaseModel):
    id: str


class KeyframeIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    image: str = Field(description="A base64 image or data: URL.")
    seconds: float


class ShotIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    prompt: str
    seconds: float


class JobOptions(BaseModel):
    """Fields every request that starts a job takes: sampling settings and the state-change callback."""

    model_config = ConfigDict(extra="forbid")
    seed: int | None = Field(None, ge=0, le=2**31 - 1)
    steps: int | None = None
    guidance: float | None = None
    callback_url: str | None = Field(None, max_length=2000)


class CreateVideo(JobOptions):
    """POST /v1/videos (JSON, or the same fields as multipart/form-data with input_reference as a file)."""

    prompt: str = Field("", max_length=4000)
    model: str | None = None
    seconds: str | None = Field(None, description='Duration as a string, e.g. "2".')
    size: str | None = Field(None, description='"WIDTHxHEIGHT", multiples of the model stride.')
    input_reference: str | None = Field(None, description="JSON: a base64 image or data: URL (multipart: a file).")
    keyframes: list[KeyframeIn] | None = Field(None, max_length=8)
    video: VideoRef | None = Field(None, description="Extend this earlier video (see extend).")
    extend: Literal["forward", "backward"] | None = None
    shots: list[ShotIn] | None = Field(None, max_length=16)
    shot_context: Literal["first", "previous", "none"] | None = Field(
        None, description="With shots: the frame later shots are conditioned on (default first)."
    )
    loop: bool = False


class RemixVideo(JobOptions):
    prompt: str = Field(..., max_length=4000)


class ExtendVideo(JobOptions):
    prompt: str = Field(..., max_length=4000)
    video: VideoRef
    seconds: str | None = None
    extend: Literal["forward", "backward"] = "forward"
    model: str | None = None


def check_image(data: bytes, param: str, max_pixels: int) -> Image.Image:
    """Decode an upload with Pillow: 400 invalid_image for anything not an image, image_too_large for a
    decompression bomb (the size is read from the header and checked before any pixel is decoded)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            im = Image.open(io.BytesIO(data))
            if im.format not in IMAGE_FORMATS:
                raise APIError(400, "invalid_image", f"{param}: {im.format} images are not accepted", param)
            w, h = im.size
            if w * h > max_pixels:
                raise APIError(400, "image_too_large", f"{param}: {w}x{h} is more than {max_pixels} pixels", param)
            im.seek(0)
            return im.convert("RGB")
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise APIError(400, "image_too_large", f"{param}: the image is too large to decode", param) from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, EOFError):
        raise APIError(400, "invalid_image", f"{param}: not a readable image (PNG, JPEG, WebP, GIF)", param) from None


def decode_base64_image(text: str, param: str) -> bytes:
    payload = text.split(",", 1)[1] if text.startswith("data:") else text
    try:
        return base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError):
        raise APIError(400, "invalid_image", f"{param}: not valid base64", param) from None


async def read_request(request: Request) -> tuple[dict[str, Any], dict[str, list[bytes]]]:
    """The body as (fields, uploaded files), from JSON or multipart/form-data."""
    ctype = request.headers.get("content-type", "").lower()
    if ctype.startswith("multipart/form-data") or ctype.startswith("application/x-www-form-urlencoded"):
        try:
            form = await request.form(max_files=16, max_fields=64)
        except Exception as e:  # a malformed multipart body
            if isinstance(e, APIError):
                raise
            raise APIError(400, "invalid_request", "the form data could not be parsed") from None
        fields: dict[str, Any] = {}
        files: dict[str, list[bytes]] = {}
        for key, value in form.multi_items():
            if hasattr(value, "read"):
                files.setdefault(key, []).append(await value.read())
            elif key in ("video[id]", "video_id"):
                fields["video"] = {"id": value}
            elif key in ("shots", "keyframes", "video"):
                try:
                    fields[key] = json.loads(value)
                except json.JSONDecodeError:
                    raise APIError(400, "invalid_request", f"{key} must be JSON in a form", key) from None
            elif key == "loop":
                fields[key] = value.lower() in ("1", "true", "yes", "on")
            elif value != "":
                fields[key] = value
        return fields, files
    raw = await request.body()
    if not raw.strip():
        return {}, {}
    try:
        body = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise APIError(400, "invalid_json", "the body is not valid JSON") from None
    if not isinstance(body, dict):
        raise APIError(400, "invalid_json", "the body must be a JSON object")
    if isinstance(body.get("seconds"), int | float) and not isinstance(body.get("seconds"), bool):
        body["seconds"] = str(body["seconds"])  # tolerate a number where OpenAI sends a string
    return body, {}


def parse_model(model_cls: type[BaseModel], fields: dict[str, Any]) -> Any:
    try:
        return model_cls.model_validate(fields)
    except ValidationError as e:
        err = e.errors()[0]
        param = ".".join(str(p) for p in err["loc"]) or None
        raise APIError(400, "invalid_request", f"{param}: {err['msg']}" if param else err["msg"], param) from None


def blocked_category(prompt: str, encoder: Any = None) -> str | None:
    """The usage-policy categories (kinema.moderation) a prompt is refused for, joined, or None."""
    verdict = moderate(prompt, encoder)
    return None if verdict.allowed else ", ".join(verdict.categories)


# ---- the service: store, limits, workers, background threads ----------------------------------------


class Service:
    """Everything the routes share. start() recovers the queue and starts the workers and threads."""

    def __init__(self, config: ServerConfig, pipeline: Any = None) -> None:
        self.config = config
        self.data_dir = Path(config.data_dir)
        self.store = Store(self.data_dir / "kinema.db")
        self.model = ModelInfo.read(config.model)
        self.pipeline = pipeline  # given (tests): workers are threads sharing it; else processes
        self.limiter = Limiter(
            self.store,
            {
                "request": (config.request_rate, config.request_burst),
                "submit": (config.submit_rate, config.submit_burst),
            },
        )
        self.stop = threading.Event()
        self.workers: dict[str, Any] = {}
        self.threads: list[threading.Thread] = []
        self._lock_file: Any = None
        self._moderation_lock = threading.Lock()

    @property
    def retention_s(self) -> float:
        return self.config.retention_hours * 3600

    def start(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self._lock_file = open(self.data_dir / "server.lock", "w")  # held while serving
        try:
            fcntl.flock(self._lock_file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise RuntimeError(f"another kinema server is using {self.data_dir}") from None
        for video_id in self.store.requeue():  # jobs a killed server left in_progress run again
            W.remove_files(self.data_dir, video_id)
        for i in range(self.config.workers):
            self._start_worker(f"w{i}")
        for fn in (self._callback_loop, self._maintenance_loop, self._warm_moderation):
            t = threading.Thread(target=fn, daemon=True, name=fn.__name__)
            t.start()
            self.threads.append(t)

    def _start_worker(self, name: str) -> None:
        if self.pipeline is not None:
            args = (self.store, self.pipeline, self.data_dir, name, self.stop, self.retention_s)
            t = threading.Thread(target=W.work, args=args, daemon=True, name=name)
            t.start()
            self.workers[name] = t
            return
        threads = self.config.threads_per_worker or max(1, (os.cpu_count() or 1) // self.config.workers)
        model = str(self.config.model) if self.config.model is not None else None
        args = (str(self.store.path), str(self.data_dir), model, name, threads, self.retention_s, os.getpid(),
                self.config.compile)  # fmt: skip
        p = mp.get_context("spawn").Process(target=W.process_main, args=args, daemon=True, name=name)
        p.start()
        self.workers[name] = p

    def close(self) -> None:
        self.stop.set()
        for w in self.workers.values():
            if isinstance(w, threading.Thread):
                w.join(timeout=30)
            else:
                w.terminate()
                w.join(timeout=10)
        self.store.requeue()  # whatever was running runs again at the next start
        for t in self.threads:
            t.join(timeout=10)
        if self._lock_file is not None:
            self._lock_file.close()

    def sweep(self, now: float | None = None) -> list[str]:
        """Delete expired videos (rows and files); their ids."""
        ids = self.store.expired(time.time() if now is None else now)
        for video_id in ids:
            W.remove_files(self.data_dir, video_id)
        return ids

    def supervise(self) -> None:
        """Restart worker processes that died; their job goes back to the queue (or fails after 3 tries)."""
        for name, p in list(self.workers.items()):
            if isinstance(p, threading.Thread) or p.is_alive() or self.stop.is_set():
                continue
            log.warning("worker %s exited with %s; restarting it", name, p.exitcode)
            for video_id in self.store.requeue(name):
                W.remove_files(self.data_dir, video_id)
            self._start_worker(name)

    def deliver_callbacks(self, now: float | None = None) -> int:
        """POST each due state change to its callback_url; retry failures with backoff. Returns the count sent.
        The URL's address is checked again before each POST (callbacks.py); redirects are not followed."""
        import httpx

        sent = 0
        for ev in self.store.due_callbacks(time.time() if now is None else now):
            try:
                ok = post_callback(ev["url"], ev["body"], self.config.allow_private_callbacks) < 300
            except UnsafeCallback as e:
                log.warning("not calling back %s for %s: %s", ev["url"], ev["video_id"], e)
                ok = False
            except httpx.HTTPError:
                ok = False
            if ok:
                self.store.callback_done(ev["seq"])
                sent += 1
            elif ev["attempts"] + 1 >= CALLBACK_TRIES:
                log.warning("giving up on callback %s for %s", ev["url"], ev["video_id"])
                self.store.callback_done(ev["seq"])
            else:
                self.store.callback_retry(ev["seq"], time.time() + 2 ** ev["attempts"])
        return sent

    def _callback_loop(self) -> None:
        while not self.stop.wait(0.2):
            try:
                self.deliver_callbacks()
            except Exception:
                log.exception("callback delivery")

    def _warm_moderation(self) -> None:
        """Load the moderation model now, not on the first submission (which would wait seconds for it)."""
        try:
            with self._moderation_lock:
                blocked_category("a red circle falls and bounces")
        except Exception:
            log.exception("loading the moderation model")

    def _maintenance_loop(self) -> None:
        last_sweep = 0.0
        while not self.stop.wait(0.5):
            try:
                self.supervise()
                if time.time() - last_sweep >= self.config.sweep_every_s:
                    last_sweep = time.time()
                    self.sweep()
            except Exception:
                log.exception("maintenance")

    # ---- building jobs -----------------------------------------------------------------------------------

    def check_prompt(self, prompt: str, param: str = "prompt") -> None:
        """Prompt moderation at submit time (kinema.moderation; the worker's generate() checks again)."""
        if not prompt.strip():
            return
        with self._moderation_lock:  # submit runs in a thread pool; the tokenizer is not thread-safe
            category = blocked_category(prompt)
        if category is not None:
            raise APIError(400, "moderation_blocked", f"the prompt was refused by moderation: {category}", param)

    def source(self, video_id: str, owner: str) -> Any:
        row = self.store.get(video_id, owner)
        if row is None:
            raise APIError(404, "video_not_found", f"no video {video_id}", "video")
        if row["status"] != "completed":
            raise APIError(409, "video_not_ready", f"video {video_id} is {row['status']}, not completed", "video")
        return row

    def save_image(self, video_id: str, name: str, data: bytes, param: str) -> str:
        im = check_image(data, param, self.config.max_image_pixels)
        rel = f"inputs/{video_id}/{name}.png"
        from kinema.checkpoint import atomic_write

        atomic_write(self.data_dir / rel, lambda p: im.save(p, format="PNG"))
        return rel

    def submit(
        self,
        owner: str,
        spec: CreateVideo,
        files: dict[str, list[bytes]],
        idempotency_key: str | None,
        edit_of: Any = None,
    ) -> tuple[Any, bool]:
        """Validate a request, store its inputs and queue it; (row, created)."""
        from kinema.pipeline import KinemaError, check_options, check_seconds, check_task

        cfg, model = self.config, self.model
        if spec.model is not None and spec.model not in MODEL_ALIASES:
            raise APIError(400, "model_not_found", f"unknown model {spec.model!r}; this server has kinema-1", "model")
        if spec.callback_url is not None:
            try:
                check_callback_url(spec.callback_url, cfg.allow_private_callbacks)
            except UnsafeCallback as e:
                raise APIError(400, "invalid_callback_url", str(e), "callback_url") from None
        src = self.source(spec.video.id, owner) if spec.video is not None else edit_of
        size_text = spec.size or (src["size"] if src is not None else f"{model.width}x{model.height}")
        try:
            w, h = (int(v) for v in size_text.lower().split("x"))
        except ValueError:
            raise APIError(
                400, "invalid_size", f"size must look like WIDTHxHEIGHT, got {size_text!r}", "size"
            ) from None
        if w * h > cfg.max_pixels:
            raise APIError(400, "invalid_size", f"size {w}x{h} is over this server's {cfg.max_pixels} pixels", "size")
        try:
            seconds = float(spec.seconds) if spec.seconds is not None else None
        except ValueError:
            raise APIError(
                400, "invalid_seconds", f"seconds must be a number, got {spec.seconds!r}", "seconds"
            ) from None
        if seconds is not None and not (0 < seconds <= cfg.max_seconds):
            raise APIError(400, "invalid_seconds", f"seconds must be in (0, {cfg.max_seconds:g}]", "seconds")
        steps = spec.steps if spec.steps is not None else cfg.default_steps
        if not (1 <= steps <= cfg.max_steps):
            raise APIError(400, "invalid_steps", f"steps must be in [1, {cfg.max_steps}], got {steps}", "steps")
        guidance = model.guidance if spec.guidance is None else spec.guidance
        shots = [s.model_dump() for s in spec.shots] if spec.shots else None
        if shots and sum(s["seconds"] for s in shots) > cfg.max_seconds:
            raise APIError(400, "invalid_shots", f"the shots add up to more than {cfg.max_seconds:g} s", "shots")
        images = files.get("input_reference", [])
        if len(images) > 1 or (images and spec.input_reference):
            raise APIError(400, "invalid_request", "give one input_reference", "input_reference")
        try:
            check_options(model, (w, h), model.fps, steps, guidance)  # type: ignore[arg-type]
            check_task(
                {
                    "image": True if images or spec.input_reference else None,
                    "video": True if spec.video is not None else None,
                    "keyframes": True if spec.keyframes else None,
                    "fill": None,
                    "edit": True if edit_of is not None else None,
                    "shots": shots,
                },
                prompt=spec.prompt,
                loop=spec.loop,
                frames=None,
                seconds=None if edit_of is not None else seconds,
                extend=spec.extend or "forward",
                missing=None,
                strength=None,
                shot_context=spec.shot_context,
            )
            if seconds is not None:
                check_seconds(seconds)
        except KinemaError as e:
            raise kinema_error(e) from None
        if spec.extend is not None and spec.video is None:
            raise APIError(400, "invalid_extend", "extend applies with video: {id}", "extend")
        for i, shot in enumerate(shots or []):
            self.check_prompt(shot["prompt"], f"shots.{i}.prompt")
        self.check_prompt(spec.prompt)
        wait = self.limiter.take(owner, "submit")
        if wait:
            raise APIError(
                429,
                "rate_limit_exceeded",
                "too many new videos; slow down",
                None,
                retry_after(wait),
            )
        video_id = "video_" + secrets.token_hex(12)
        request: dict[str, Any] = {
            "prompt": spec.prompt,
            "seconds": seconds,
            "size": [w, h],
            "steps": steps,
            "guidance": guidance,
            "seed": spec.seed if spec.seed is not None else secrets.randbelow(2**31),
            "loop": spec.loop,
        }
        if images or spec.input_reference:
            data = images[0] if images else decode_base64_image(spec.input_reference or "", "input_reference")
            request["image"] = self.save_image(video_id, "input_reference", data, "input_reference")
        if spec.keyframes:
            request["keyframes"] = [
                [
                    self.save_image(video_id, f"keyframe{i}", decode_base64_image(k.image, "keyframes"), "keyframes"),
                    k.seconds,
                ]
                for i, k in enumerate(spec.keyframes)
            ]
        if shots:
            request["shots"] = shots
            if spec.shot_context is not None:
                request["shot_context"] = spec.shot_context
        if spec.video is not None:
            request["video"] = f"videos/{src['id']}/video.mp4"
            request["extend"] = spec.extend or "forward"
        if edit_of is not None:
            request["edit"] = f"videos/{edit_of['id']}/video.mp4"
        seconds_text = spec.seconds if spec.seconds is not None else f"{model.default_seconds:g}"
        if edit_of is not None:
            seconds_text = edit_of["seconds"]
        row = {
            "id": video_id,
            "owner": owner,
            "idempotency_key": idempotency_key,
            "status": "queued",
            "model": model.name,
            "prompt": spec.prompt if not shots else " | ".join(s["prompt"] for s in shots),
            "seconds": seconds_text,
            "size": f"{w}x{h}",
            "request": json.dumps(request),
            "created_at": int(time.time()),
            "remixed_from_video_id": edit_of["id"] if edit_of is not None else None,
            "callback_url": spec.callback_url,
        }
        result = self.store.insert(row, cfg.max_active_jobs)
        if result is None:
            W.remove_files(self.data_dir, video_id)
            raise APIError(
                429,
                "too_many_active_jobs",
                f"this key has {cfg.max_active_jobs} videos queued or in progress; wait for one to finish",
                None,
                retry_after(5 * cfg.poll_after_ms / 1000),
            )
        if not result[1]:
            W.remove_files(self.data_dir, video_id)
        return result


# ---- the app -----------------------------------------------------------------------------------------

bearer = HTTPBearer(auto_error=False, description="Authorization: Bearer KEY (`kinema keys create NAME`).")


def authenticate(request: Request, creds: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]) -> str:
    """The key id behind the request (401 without a valid key), after the per-key request limit (429)."""
    svc: Service = request.app.state.service
    if svc.config.insecure_no_auth:
        owner = "local"
    else:
        if creds is None or not creds.credentials.strip():
            raise APIError(401, "missing_api_key", "send Authorization: Bearer KEY (kinema keys create NAME)")
        owner = check_key(svc.store, creds.credentials.strip())
        if owner is None:
            raise APIError(401, "invalid_api_key", "the API key is not valid")
    wait = svc.limiter.take(owner, "request")
    if wait:
        raise APIError(429, "rate_limit_exceeded", "too many requests; slow down", None, retry_after(wait))
    return owner


def body_limit(app: Any, max_bytes: int) -> Callable:
    """ASGI middleware: 413 for a body over max_bytes, by Content-Length or as it streams in."""

    async def middleware(scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] != "http":
            return await app(scope, receive, send)
        length = dict(scope["headers"]).get(b"content-length")
        if length is not None and (not length.isdigit() or int(length) > max_bytes):
            response = error_response(413, "request_too_large", f"the body is over {max_bytes} bytes")
            return await response(scope, receive, send)
        seen = 0

        async def counted() -> dict:
            nonlocal seen
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > max_bytes:
                raise APIError(413, "request_too_large", f"the body is over {max_bytes} bytes")
            return message

        return await app(scope, counted, send)

    return middleware


def create_app(config: ServerConfig, pipeline: Any = None) -> FastAPI:
    """The ASGI app. With `pipeline`, workers are threads sharing it (tests); else spawned processes."""
    service = Service(config, pipeline)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        service.start()
        yield
        service.close()

    app = FastAPI(
        title="kinema",
        version="0.1.0",
        summary="Text-to-video jobs, compatible with the OpenAI Videos API.",
        lifespan=lifespan,
        docs_url=None,  # the Swagger page loads scripts from a CDN; /openapi.json is served
        redoc_url=None,
    )
    app.state.service = service
    app.add_middleware(lambda a: body_limit(a, int(config.max_body_mb * 1024 * 1024)))
    poll = {"openai-poll-after-ms": str(config.poll_after_ms)}

    @app.exception_handler(APIError)
    async def on_api_error(request: Request, e: APIError) -> JSONResponse:
        return error_response(e.status, e.code, e.message, e.param, e.headers)

    @app.exception_handler(RequestValidationError)
    async def on_validation(request: Request, e: RequestValidationError) -> JSONResponse:
        err = e.errors()[0] if e.errors() else {"loc": (), "msg": "invalid request"}
        param = str(err["loc"][-1]) if err.get("loc") else None
        return error_response(400, "invalid_request", f"{param}: {err['msg']}" if param else err["msg"], param)

    @app.exception_handler(StarletteHTTPException)
    async def on_http(request: Request, e: StarletteHTTPException) -> JSONResponse:
        codes = {404: "not_found", 405: "method_not_allowed"}
        return error_response(e.status_code, codes.get(e.status_code, "http_error"), str(e.detail))

    @app.exception_handler(Exception)
    async def on_crash(request: Request, e: Exception) -> JSONResponse:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return error_response(500, "internal_error", "internal server error")

    def owned(video_id: str, owner: str) -> Any:
        row = service.store.get(video_id, owner)
        if row is None:
            raise APIError(404, "video_not_found", f"no video {video_id}", "video_id")
        return row

    def created(row: Any, fresh: bool) -> JSONResponse:
        return JSONResponse(video_object(row), 200, headers=poll | ({} if fresh else {"idempotent-replayed": "true"}))

    video_schema = {"application/json": {"schema": {"$ref": "#/components/schemas/Video"}}}

    @app.post(
        "/v1/videos",
        tags=["videos"],
        responses={200: {"content": video_schema, "description": "The new video job."}},
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {
                    "application/json": {"schema": {"$ref": "#/components/schemas/CreateVideo"}},
                    "multipart/form-data": {"schema": {"$ref": "#/components/schemas/CreateVideoForm"}},
                },
            }
        },
    )
    async def create_video(request: Request, owner: str = Depends(authenticate)) -> JSONResponse:
        """Create a video job from a prompt, optionally an image (input_reference), keyframes, an earlier
        video to extend, or shots."""
        fields, files = await read_request(request)
        if "keyframe" in files:
            seconds = [s for s in str(fields.pop("keyframe_seconds", "")).split(",") if s.strip()]
            if len(seconds) != len(files["keyframe"]):
                raise APIError(400, "invalid_keyframes", "give one keyframe_seconds value per keyframe", "keyframes")
            fields["keyframes"] = [
                {"image": base64.b64encode(d).decode(), "seconds": s}
                for d, s in zip(files.pop("keyframe"), seconds, strict=True)
            ]
        spec = parse_model(CreateVideo, fields)
        row, fresh = await run_in_threadpool(service.submit, owner, spec, files, request.headers.get("idempotency-key"))
        return created(row, fresh)

    @app.post("/v1/videos/extensions", tags=["videos"], responses={200: {"content": video_schema}})
    async def extend_video(request: Request, owner: str = Depends(authenticate)) -> JSONResponse:
        """Continue a completed video (extend "forward") or lead into it ("backward") by `seconds`."""
        fields, _ = await read_request(request)
        ext = parse_model(ExtendVideo, fields)
        spec = CreateVideo(**ext.model_dump(exclude={"extend"}), extend=ext.extend)
        row, fresh = await run_in_threadpool(service.submit, owner, spec, {}, request.headers.get("idempotency-key"))
        return created(row, fresh)

    @app.get("/v1/videos", tags=["videos"])
    def list_videos(
        owner: str = Depends(authenticate),
        after: str | None = Query(None, max_length=64, description="The id of the last video of the previous page."),
        limit: int = Query(20, ge=1, le=100),
        order: Literal["asc", "desc"] = Query("desc"),
    ) -> JSONResponse:
        """This key's videos, newest first by default, in pages."""
        if after is not None and service.store.get(after, owner) is None:
            raise APIError(400, "invalid_cursor", f"no video {after} to page after", "after")
        rows, more = service.store.page(owner, after, limit, order)
        data = [video_object(r) for r in rows]
        body = {
            "object": "list",
            "data": data,
            "first_id": data[0]["id"] if data else None,
            "last_id": data[-1]["id"] if data else None,
            "has_more": more,
        }
        return JSONResponse(body)

    @app.get("/v1/videos/{video_id}", tags=["videos"], responses={200: {"content": video_schema}})
    def get_video(video_id: str, owner: str = Depends(authenticate)) -> JSONResponse:
        return JSONResponse(video_object(owned(video_id, owner)), headers=poll)

    @app.delete("/v1/videos/{video_id}", tags=["videos"])
    def delete_video(video_id: str, owner: str = Depends(authenticate)) -> JSONResponse:
        """Delete a video; a queued or running job is cancelled (a running one stops at its next step)."""
        found, gone = service.store.delete(video_id, owner)
        if not found:
            raise APIError(404, "video_not_found", f"no video {video_id}", "video_id")
        if gone:
            W.remove_files(service.data_dir, video_id)
        return JSONResponse({"id": video_id, "object": "video.deleted", "deleted": True})

    @app.get(
        "/v1/videos/{video_id}/content",
        tags=["videos"],
        response_class=FileResponse,
        responses={200: {"content": {"video/mp4": {}, "image/webp": {}, "image/jpeg": {}}}},
    )
    def video_content(
        video_id: str,
        owner: str = Depends(authenticate),
        variant: Literal["video", "thumbnail", "spritesheet"] = Query("video"),
    ) -> FileResponse:
        row = owned(video_id, owner)
        if row["status"] != "completed":
            raise APIError(409, "video_not_ready", f"video {video_id} is {row['status']}", "video_id")
        name, media = CONTENT[variant]
        path = W.video_dir(service.data_dir, video_id) / name
        if not path.is_file():
            raise APIError(404, "content_not_found", f"the {variant} of {video_id} is gone (expired?)", "variant")
        return FileResponse(path, media_type=media, filename=f"{video_id}{path.suffix}")

    def remix(video_id: str, fields: dict, owner: str, idempotency_key: str | None) -> JSONResponse:
        remix = parse_model(RemixVideo, fields)
        src = owned(video_id, owner)
        if src["status"] != "completed":
            raise APIError(409, "video_not_ready", f"video {video_id} is {src['status']}, not completed", "video_id")
        old = json.loads(src["request"])
        spec = CreateVideo(
            prompt=remix.prompt,
            size=src["size"],
            seed=remix.seed if remix.seed is not None else old.get("seed"),
            steps=remix.steps if remix.steps is not None else old.get("steps"),
            guidance=remix.guidance if remix.guidance is not None else old.get("guidance"),
            callback_url=remix.callback_url,
        )
        row, fresh = service.submit(owner, spec, {}, idempotency_key, edit_of=src)
        return created(row, fresh)

    @app.post("/v1/videos/{video_id}/remix", tags=["videos"], responses={200: {"content": video_schema}})
    async def remix_video(video_id: str, request: Request, owner: str = Depends(authenticate)) -> JSONResponse:
        """Re-render a completed video to a new prompt (an SDEdit of it: layout and timing kept)."""
        fields, _ = await read_request(request)
        return await run_in_threadpool(remix, video_id, fields, owner, request.headers.get("idempotency-key"))

    @app.post("/v1/videos/edits", tags=["videos"], responses={200: {"content": video_schema}})
    async def edit_video(request: Request, owner: str = Depends(authenticate)) -> JSONResponse:
        """The newer name of remix: {prompt, video: {id}}."""
        fields, _ = await read_request(request)
        ref = fields.pop("video", None)
        if not isinstance(ref, dict) or not isinstance(ref.get("id"), str):
            raise APIError(400, "invalid_request", "video: {id} is required", "video")
        return await run_in_threadpool(remix, ref["id"], fields, owner, request.headers.get("idempotency-key"))

    @app.get("/v1/models", tags=["models"])
    def list_models(owner: str = Depends(authenticate)) -> JSONResponse:
        m = {"id": service.model.name, "object": "model", "created": 0, "owned_by": "kinema"}
        return JSONResponse({"object": "list", "data": [m]})

    @app.get("/healthz", include_in_schema=False)
    def healthz() -> JSONResponse:
        """Workers alive, and how many of them have loaded the model (threads count as ready)."""
        alive = [w for w in service.workers.values() if w.is_alive()]
        pids = [w.pid for w in alive if hasattr(w, "pid")]
        ready = len(alive) - len(pids) + len(set(pids) & service.store.ready_pids())
        return JSONResponse({"status": "ok", "workers": len(alive), "ready": ready, "worker_pids": pids})

    @app.get("/studio/config", include_in_schema=False)
    def studio_config() -> JSONResponse:
        m = service.model
        return JSONResponse(
            {
                "auth": not config.insecure_no_auth,
                "model": m.name,
                "stride": m.stride,
                "fps": m.fps,
                "default_seconds": m.default_seconds,
                "max_seconds": config.max_seconds,
                "sizes": aspect_sizes(m.stride, m.width, m.height, config.max_pixels),
                "poll_ms": config.poll_after_ms,
            }
        )

    @app.get("/", include_in_schema=False)
    def studio() -> FileResponse:
        return FileResponse(STATIC / "index.html", media_type="text/html")

    def openapi() -> dict:
        if app.openapi_schema is None:
            from fastapi.openapi.utils import get_openapi

            doc = get_openapi(title=app.title, version=app.version, summary=app.summary, routes=app.routes)
            schemas = doc.setdefault("components", {}).setdefault("schemas", {})
            for model_cls in (CreateVideo,):
                s = model_cls.model_json_schema(ref_template="#/components/schemas/{model}")
                schemas.update(s.pop("$defs", {}))
                schemas[model_cls.__name__] = s
            form = json.loads(json.dumps(schemas["CreateVideo"]))
            form["properties"]["input_reference"] = {"type": "string", "format": "binary"}
            for k in ("keyframes", "video", "shots"):
                form["properties"][k] = {"type": "string", "description": f"{k} as JSON text"}
            schemas["CreateVideoForm"] = form
            schemas["Video"] = VIDEO_SCHEMA
            app.openapi_schema = doc
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
    return app


_nullable_int = {"anyOf": [{"type": "integer"}, {"type": "null"}]}
_nullable_str = {"anyOf": [{"type": "string"}, {"type": "null"}]}
VIDEO_SCHEMA = {
    "type": "object",
    "required": ["id", "object", "model", "status", "progress", "created_at", "seconds", "size"],
    "properties": {
        "id": {"type": "string"},
        "object": {"type": "string", "enum": ["video"]},
        "model": {"type": "string"},
        "status": {"type": "string", "enum": ["queued", "in_progress", "completed", "failed"]},
        "progress": {"type": "integer", "minimum": 0, "maximum": 100},
        "created_at": {"type": "integer"},
        "completed_at": _nullable_int,
        "expires_at": _nullable_int,
        "seconds": {"type": "string"},
        "size": {"type": "string"},
        "remixed_from_video_id": _nullable_str,
        "error": {
            "anyOf": [
                {"type": "object", "properties": {"code": {"type": "string"}, "message": {"type": "string"}}},
                {"type": "null"},
            ]
        },
    },
}
