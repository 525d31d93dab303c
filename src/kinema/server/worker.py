"""Generation workers for `kinema serve`: each claims queued jobs from the database and runs `generate()`.

Why processes: generation is CPU-bound torch; threads in the server process would share its GIL-holding
Python parts and its memory, and a crash or an OOM in torch would take the API down with it. So `kinema
serve --workers N` starts N spawned processes, each loading the model once and splitting the cores between
them (torch.set_num_threads), while the API process never imports a model. The database is the queue:
nothing is handed over in memory, so nothing is lost when either side dies. A worker process asks the
kernel to kill it when its parent dies (PR_SET_PDEATHSIG), so a server killed with -9 leaves no orphan that
would race the restarted server's re-run of the same job. Tests run the same loop in a thread (`work`).

Files of a video go to DATA/videos/<id>/ (video.mp4, thumbnail.webp, spritesheet.jpg), each written to a
temporary name and renamed, so a reader never sees half a file.
"""

from __future__ import annotations

import ctypes
import json
import logging
import math
import os
import shutil
import signal
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from kinema.checkpoint import atomic_write
from kinema.server.jobs import Store

log = logging.getLogger("kinema.server")

PROGRESS_EVERY_S = 0.25  # at most four progress writes a second per worker
SPRITES = 16  # frames in the spritesheet (a 4 x 4 grid)


class JobCancelled(Exception):
    """Raised inside generate() by the progress callback when the job was deleted."""


def video_dir(data_dir: Path, video_id: str) -> Path:
    return data_dir / "videos" / video_id


def remove_files(data_dir: Path, video_id: str) -> None:
    for folder in (video_dir(data_dir, video_id), data_dir / "inputs" / video_id):
        shutil.rmtree(folder, ignore_errors=True)


def generate_kwargs(request: dict[str, Any], data_dir: Path) -> dict[str, Any]:
    """The stored request (paths relative to the data dir) as generate() keyword arguments."""
    kw = dict(request)
    for name in ("image", "video", "edit"):
        if kw.get(name):
            kw[name] = data_dir / kw[name]
    if kw.get("keyframes"):
        kw["keyframes"] = [(data_dir / path, float(sec)) for path, sec in kw["keyframes"]]
    if kw.get("size"):
        kw["size"] = tuple(kw["size"])
    return kw


def write_outputs(video: Any, folder: Path) -> None:
    """video.mp4, a thumbnail (the middle frame, WebP) and a spritesheet (up to 16 frames in a grid, JPEG)."""
    frames: np.ndarray = video.frames
    folder.mkdir(parents=True, exist_ok=True)
    video.save(folder / "video.mp4")
    thumb = Image.fromarray(frames[len(frames) // 2])
    atomic_write(folder / "thumbnail.webp", lambda p: thumb.save(p, format="WEBP", quality=90))
    picks = np.linspace(0, len(frames) - 1, min(SPRITES, len(frames))).round().astype(int)
    cols = math.ceil(math.sqrt(len(picks)))
    rows = math.ceil(len(picks) / cols)
    h, w = frames.shape[1:3]
    sheet = np.zeros((rows * h, cols * w, 3), np.uint8)
    for k, i in enumerate(picks):
        r, c = divmod(k, cols)
        sheet[r * h : (r + 1) * h, c * w : (c + 1) * w] = frames[i]
    atomic_write(folder / "spritesheet.jpg", lambda p: Image.fromarray(sheet).save(p, format="JPEG", quality=90))


def read_provenance(path: Path, payload: str) -> dict[str, Any]:
    """What the saved MP4 itself says (as `kinema verify` reads it): the C2PA signature's validation state
    and whether the invisible watermark with this video's payload is found in the decoded frames."""
    from kinema import watermark
    from kinema.provenance import read_state
    from kinema.video_io import read_video

    try:
        c2pa = read_state(path)
        mark = watermark.detect(read_video(path)[0], payload)
    except Exception as e:  # a reading problem must not fail a finished video
        log.warning("could not read the provenance of %s: %s", path, e)
        return {"signature": {"status": "unreadable"}, "watermark": {"status": "unreadable"}}
    return {
        "signature": {"status": c2pa["state"], "failures": c2pa["failures"]},
        "watermark": {
            "status": "detected" if mark.detected else "not detected",
            "payload": payload,
            "bit_accuracy": round(mark.bit_accuracy, 4),
        },
    }


def run_job(store: Store, pipe: Any, data_dir: Path, job: Any, retention_s: float) -> None:
    """Generate one claimed job and record how it ended (completed, failed, or removed if it was deleted)."""
    from kinema.pipeline import generate
    from kinema.review import ReviewError

    video_id, attempt = job["id"], job["attempts"]
    last = {"t": 0.0, "pct": -1}

    def progress(done: int, total: int) -> None:
        pct = min(99, int(100 * done / max(total, 1)))
        now = time.monotonic()
        write = pct != last["pct"] and now - last["t"] >= PROGRESS_EVERY_S
        if write:
            last.update(t=now, pct=pct)
        if not store.progress(video_id, attempt, pct if write else None):
            raise JobCancelled

    request = json.loads(job["request"])
    try:
        if not store.progress(video_id, attempt, 0):
            raise JobCancelled
        video = generate(pipe, request.pop("prompt", ""), progress=progress, **generate_kwargs(request, data_dir))
        write_outputs(video, video_dir(data_dir, video_id))
        provenance = read_provenance(video_dir(data_dir, video_id) / "video.mp4", video.watermark)
        result = {**video.info, "expanded_prompt": video.expanded_prompt, "provenance": provenance}
        if not store.finish(video_id, attempt, "completed", retention_s, result=json.dumps(result)):
            raise JobCancelled
        log.info("completed %s (%s s)", video_id, video.info.get("wall_s"))
    except JobCancelled:  # deleted by its owner, or no longer this attempt's (then the row stays)
        if store.drop_deleted(video_id, attempt):
            remove_files(data_dir, video_id)
            log.info("cancelled %s", video_id)
    except ReviewError as e:  # the output failed frame review: nothing was written
        store.finish(video_id, attempt, "failed", retention_s, error_code="moderation_blocked", error_message=str(e))
    except ValueError as e:  # KinemaError, VideoError: the request could not be served
        message = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        store.finish(video_id, attempt, "failed", retention_s, error_code="invalid_input", error_message=message)
    except Exception:
        log.exception("job %s failed", video_id)
        store.finish(
            video_id, attempt, "failed", retention_s, error_code="internal_error", error_message="generation failed"
        )


def work(
    store: Store,
    pipe: Any,
    data_dir: Path,
    name: str,
    stop: threading.Event,
    retention_s: float,
    poll_s: float = 0.2,
    parent: int | None = None,
) -> None:
    """Claim and run jobs until `stop` is set (or, in a process, until the parent is gone)."""
    while not stop.is_set():
        if parent is not None and os.getppid() != parent:
            return
        job = store.claim(name)
        if job is None:
            stop.wait(poll_s)
            continue
        run_job(store, pipe, data_dir, job, retention_s)


def _die_with_parent() -> None:
    """Linux: SIGKILL this process when the thread that spawned it dies (prctl PR_SET_PDEATHSIG = 1)."""
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL, 0, 0, 0)
    except (OSError, AttributeError):
        pass  # elsewhere the loop's getppid() check ends an orphan after its current job


def process_main(
    db_path: str,
    data_dir: str,
    model: str | None,
    name: str,
    threads: int,
    retention_s: float,
    parent: int,
    compile: bool = False,
) -> None:
    """Entry point of one worker process (multiprocessing spawn)."""
    _die_with_parent()
    if os.getppid() != parent:
        return
    import torch

    from kinema.pipeline import Pipeline

    torch.set_num_threads(max(1, threads))
    logging.basicConfig(level=logging.INFO, format=f"%(asctime)s {name} %(message)s")
    pipe = Pipeline.from_pretrained(model, compile=compile)
    store = Store(db_path)
    store.worker_ready(name, os.getpid())
    stop = threading.Event()  # never set: SIGTERM ends the process, and the server re-queues its job
    work(store, pipe, Path(data_dir), name, stop, retention_s, parent=parent)
