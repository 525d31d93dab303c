"""A real `kinema serve` process: kill -9 in the middle of a job, restart, nothing lost; the worker process
dies with its server; cancellation reaches a worker process; the official `openai` client and kinema.Client
talk to it."""

from __future__ import annotations

import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

ROOT = Path(__file__).resolve().parents[1]
PROMPT = "a red circle falls and bounces"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(data: Path, model: Path, port: int, log: Path) -> subprocess.Popen:
    env = os.environ | {"PYTHONPATH": str(ROOT / "src"), "OMP_NUM_THREADS": "1"}
    args = ["--data-dir", str(data), "--model", str(model), "--port", str(port), "--workers", "1"]
    args += ["--insecure-no-auth", "--default-steps", "1", "--max-steps", "1000", "--submit-burst", "50"]
    with open(log, "ab") as out:
        proc = subprocess.Popen([sys.executable, "-m", "kinema", "serve", *args], env=env, stdout=out, stderr=out)
    end = time.time() + 300  # a cold worker imports torch and transformers: minutes on a busy 2-core machine
    while time.time() < end:
        assert proc.poll() is None, log.read_text()[-3000:]
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2).json()["ready"] == 1:
                return proc
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    proc.kill()
    raise AssertionError("server did not start:\n" + log.read_text()[-3000:])


def row(data: Path, video_id: str) -> dict | None:
    with sqlite3.connect(data / "kinema.db", timeout=30) as db:
        db.row_factory = sqlite3.Row
        r = db.execute("SELECT * FROM videos WHERE id = ?", (video_id,)).fetchone()
        return dict(r) if r else None


def wait_until(check, timeout: float = 90, what: str = "condition"):
    end = time.time() + timeout
    while time.time() < end:
        value = check()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


@pytest.mark.slow
def test_kill9_restart_loses_nothing(tmp_path, debug_model):
    data, port, log = tmp_path / "data", free_port(), tmp_path / "server.log"
    api = httpx.Client(base_url=f"http://127.0.0.1:{port}/v1", timeout=30)
    server = start_server(data, debug_model, port, log)
    try:
        pid = httpx.get(f"http://127.0.0.1:{port}/healthz").json()["worker_pids"][0]
        first = api.post("/videos", json={"prompt": PROMPT, "seconds": "1"}).json()
        wait_until(lambda: api.get(f"/videos/{first['id']}").json()["status"] == "completed", what="first video")
        long = api.post("/videos", json={"prompt": PROMPT, "seconds": "1", "steps": 1000}).json()
        queued = [api.post("/videos", json={"prompt": f"{PROMPT} {i}", "seconds": "1"}).json() for i in range(2)]
        wait_until(lambda: api.get(f"/videos/{long['id']}").json()["progress"] > 0, what="the long job to run")
        server.send_signal(signal.SIGKILL)
        server.wait(10)
        wait_until(lambda: gone(pid), 10, "the worker to die with its server")
        assert row(data, long["id"])["status"] == "in_progress"  # as the killed server left it

        server = start_server(data, debug_model, port, log)
        assert api.get(f"/videos/{first['id']}/content").content[4:8] == b"ftyp"  # finished files still served
        wait_until(lambda: (row(data, long["id"]) or {}).get("attempts") == 2, what="the interrupted job to re-run")
        assert api.get(f"/videos/{long['id']}").json()["status"] == "in_progress"
        assert api.delete(f"/videos/{long['id']}").json()["deleted"] is True  # cancels it in the worker process
        wait_until(lambda: row(data, long["id"]) is None, 30, "the cancelled job to be removed")
        for v in queued:
            wait_until(lambda v=v: api.get(f"/videos/{v['id']}").json()["status"] == "completed", what=v["id"])
        assert len(api.get("/videos").json()["data"]) == 3

        # the official openai client, pointed at kinema
        openai = pytest.importorskip("openai")
        oa = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="unused-with-insecure-no-auth")
        video = oa.videos.create(prompt=PROMPT, model="kinema", seconds="1", size="64x64")
        assert video.status in ("queued", "in_progress") and video.id.startswith("video_")
        video = wait_until(lambda: (v := oa.videos.retrieve(video.id)).status == "completed" and v, what="openai video")
        assert video.progress == 100 and video.size == "64x64" and video.seconds == "1"
        assert oa.videos.download_content(video.id).read()[4:8] == b"ftyp"
        assert oa.videos.download_content(video.id, variant="thumbnail").read()[:4] == b"RIFF"

        import kinema

        with kinema.Client(f"http://127.0.0.1:{port}") as client:
            v = client.wait(client.create(PROMPT, seconds=1, seed=7)["id"], timeout=90)
            assert v["status"] == "completed" and v["seed"] == 7
            assert client.download(v["id"], tmp_path / "out.mp4").read_bytes()[4:8] == b"ftyp"
            with pytest.raises(kinema.KinemaAPIError) as e:
                client.create(PROMPT, size="65x64")
            assert e.value.code == "invalid_size" and e.value.status == 400
    finally:
        server.kill()
        server.wait(10)
