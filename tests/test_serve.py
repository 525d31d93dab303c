"""`kinema serve` in process: FastAPI's TestClient, the debug model, one sampling step, worker threads.

The kill -9 restart test with a real server process is in test_serve_process.py, the browser test in
test_serve_studio.py.
"""

from __future__ import annotations

import io
import json
import struct
import threading
import time
import zlib
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import ClassVar

import pytest
from fastapi.testclient import TestClient
from PIL import Image

from kinema.server import ServerConfig, create_app
from kinema.server.app import aspect_sizes, blocked_category
from kinema.server.auth import create_key
from kinema.server.jobs import Store

PROMPT = "a red circle falls and bounces"


@contextmanager
def serving(tmp_path: Path, model: Path, pipe=None, **overrides):
    """A running app (lifespan started) and two keys; workers=0 unless a pipeline is given."""
    kw = dict(data_dir=tmp_path / "data", model=model, workers=1 if pipe is not None else 0, default_steps=1)
    config = ServerConfig(**(kw | overrides))
    app = create_app(config, pipeline=pipe)
    store = app.state.service.store
    keys = [create_key(store, "alice"), create_key(store, "bob")]
    with TestClient(app) as client:
        client.headers["Authorization"] = f"Bearer {keys[0]}"
        yield client, app.state.service, keys


def wait_for(client: TestClient, video_id: str, statuses=("completed", "failed"), timeout: float = 60) -> dict:
    end = time.time() + timeout
    while time.time() < end:
        v = client.get(f"/v1/videos/{video_id}").json()
        if v["status"] in statuses:
            return v
        time.sleep(0.05)
    raise AssertionError(f"{video_id} still {v['status']} after {timeout} s")


def png_bytes(size=(16, 16), color=(200, 30, 30)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, color).save(buf, format="PNG")
    return buf.getvalue()


def bomb_png(width: int = 60000, height: int = 60000) -> bytes:
    """A valid PNG whose header claims width x height pixels (a decompression bomb's calling card)."""
    data = bytearray(png_bytes((1, 1)))
    ihdr = struct.pack(">II", width, height) + bytes(data[24:29])
    data[16:29] = ihdr
    data[29:33] = struct.pack(">I", zlib.crc32(b"IHDR" + ihdr))
    return bytes(data)


def assert_error(r, status: int, code: str, param: str | None = "any") -> dict:
    assert r.status_code == status, r.text
    err = r.json()["error"]
    assert set(err) == {"code", "message", "param"} and err["code"] == code and err["message"], err
    if param != "any":
        assert err["param"] == param, err
    return err


class Hooks(BaseHTTPRequestHandler):
    """Records callback POSTs; answers 500 to the very first one so the retry path runs."""

    received: ClassVar[list[dict]] = []
    calls = 0

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["content-length"])))
        type(self).calls += 1
        if type(self).calls == 1:
            self.send_response(500)
        else:
            type(self).received.append(body)
            self.send_response(200)
        self.end_headers()

    def log_message(self, *args) -> None:
        pass


def test_lifecycle_remix_extension_callbacks_expiry(tmp_path, debug_model, debug_pipe):
    hooks = HTTPServer(("127.0.0.1", 0), Hooks)
    threading.Thread(target=hooks.serve_forever, daemon=True).start()
    callback = f"http://127.0.0.1:{hooks.server_port}/hook"
    with serving(tmp_path, debug_model, debug_pipe, allow_private_callbacks=True) as (client, service, _):
        r = client.post(
            "/v1/videos", json={"prompt": PROMPT, "seconds": "1", "size": "64x64", "seed": 3, "callback_url": callback}
        )
        assert r.status_code == 200, r.text
        assert r.headers["openai-poll-after-ms"] == "1000"
        v = r.json()
        assert v["object"] == "video" and v["status"] in ("queued", "in_progress") and v["seconds"] == "1"
        assert v["size"] == "64x64" and v["model"] == "kinema-1" and v["seed"] == 3 and v["id"].startswith("video_")
        done = wait_for(client, v["id"])
        assert done["status"] == "completed" and done["progress"] == 100 and done["error"] is None, done
        assert done["completed_at"] >= done["created_at"] and done["expires_at"] > done["completed_at"]
        prov = done["provenance"]  # read back from the served MP4
        assert prov["signature"]["status"] in ("Valid", "Trusted") and prov["watermark"]["status"] == "detected", prov
        mp4 = client.get(f"/v1/videos/{v['id']}/content")
        assert mp4.status_code == 200 and mp4.headers["content-type"] == "video/mp4" and mp4.content[4:8] == b"ftyp"
        thumb = client.get(f"/v1/videos/{v['id']}/content", params={"variant": "thumbnail"})
        assert thumb.content[:4] == b"RIFF" and Image.open(io.BytesIO(thumb.content)).size == (64, 64)
        sheet = client.get(f"/v1/videos/{v['id']}/content", params={"variant": "spritesheet"})
        assert sheet.headers["content-type"] == "image/jpeg" and sheet.content[:2] == b"\xff\xd8"
        assert_error(client.get(f"/v1/videos/{v['id']}/content", params={"variant": "gif"}), 400, "invalid_request")

        remix = client.post(f"/v1/videos/{v['id']}/remix", json={"prompt": "a blue circle falls and bounces"}).json()
        ext = client.post("/v1/videos/extensions", json={"prompt": PROMPT, "seconds": "1", "video": {"id": v["id"]}})
        assert ext.status_code == 200, ext.text
        remix, ext = wait_for(client, remix["id"]), wait_for(client, ext.json()["id"])
        assert remix["status"] == "completed" and remix["remixed_from_video_id"] == v["id"] and remix["task"] == "edit"
        assert ext["status"] == "completed" and ext["task"] == "video", ext
        ids = [x["id"] for x in client.get("/v1/videos").json()["data"]]
        assert ids == [ext["id"], remix["id"], v["id"]]  # newest first

        end = time.time() + 20  # queued, in_progress, completed; the first POST failed and was retried
        while time.time() < end and len([b for b in Hooks.received if b["id"] == v["id"]]) < 3:
            time.sleep(0.1)
        states = [b["status"] for b in Hooks.received if b["id"] == v["id"]]
        assert states == ["queued", "in_progress", "completed"] and Hooks.calls >= 4, (states, Hooks.calls)

        gone = service.sweep(now=time.time() + service.retention_s + 1)
        assert set(gone) == {v["id"], remix["id"], ext["id"]}
        assert_error(client.get(f"/v1/videos/{v['id']}"), 404, "video_not_found")
        assert not (service.data_dir / "videos" / v["id"]).exists()
    hooks.shutdown()


def test_image_upload_and_delete(tmp_path, debug_model, debug_pipe):
    with serving(tmp_path, debug_model, debug_pipe) as (client, service, _):
        files = {"input_reference": ("start.png", png_bytes((40, 30)), "image/png")}
        r = client.post("/v1/videos", data={"prompt": PROMPT, "seconds": "1", "size": "64x48"}, files=files)
        assert r.status_code == 200, r.text
        v = wait_for(client, r.json()["id"])
        assert v["status"] == "completed" and v["task"] == "image" and v["size"] == "64x48"
        assert client.delete(f"/v1/videos/{v['id']}").json() == {
            "id": v["id"],
            "object": "video.deleted",
            "deleted": True,
        }
        assert_error(client.get(f"/v1/videos/{v['id']}"), 404, "video_not_found")
        assert not (service.data_dir / "videos" / v["id"]).exists()
        assert not (service.data_dir / "inputs" / v["id"]).exists()


def test_cancel_running_job(tmp_path, debug_model, debug_pipe, monkeypatch):
    import kinema.pipeline

    real, started, release = kinema.pipeline.generate, threading.Event(), threading.Event()

    def held(pipe, prompt, progress=None, **kw):  # holds the first step until the test has deleted the job
        def hold(i, n):
            started.set()
            release.wait(30)
            progress(i, n)

        return real(pipe, prompt, progress=hold, **kw)

    monkeypatch.setattr(kinema.pipeline, "generate", held)
    with serving(tmp_path, debug_model, debug_pipe) as (client, service, _):
        v = client.post("/v1/videos", json={"prompt": PROMPT, "steps": 5}).json()
        assert started.wait(60)
        assert client.get(f"/v1/videos/{v['id']}").json()["status"] == "in_progress"
        assert client.delete(f"/v1/videos/{v['id']}").json()["deleted"] is True
        assert_error(client.get(f"/v1/videos/{v['id']}"), 404, "video_not_found")  # gone at once for the owner
        release.set()
        end = time.time() + 30
        while service.store.db().execute("SELECT COUNT(*) FROM videos").fetchone()[0] and time.time() < end:
            time.sleep(0.05)
        assert service.store.db().execute("SELECT COUNT(*) FROM videos").fetchone()[0] == 0  # the worker removed it
        assert not (service.data_dir / "videos" / v["id"]).exists()


def test_output_failing_frame_review_is_a_failed_job(tmp_path, debug_model, debug_pipe, monkeypatch):
    import numpy as np

    import kinema.review as R

    class Flagged:
        def scores(self, frames):
            return {lab: np.full(len(frames), 0.9 if lab == "ANUS_EXPOSED" else 0.0) for lab in R.EXPOSED}

    monkeypatch.setattr(R, "_detector", lambda: Flagged())
    with serving(tmp_path, debug_model, debug_pipe) as (client, service, _):
        v = wait_for(client, client.post("/v1/videos", json={"prompt": PROMPT}).json()["id"])
        assert v["status"] == "failed", v
        assert v["error"]["code"] == "moderation_blocked" and "frame review: nudity" in v["error"]["message"]
        assert client.get(f"/v1/videos/{v['id']}/content").status_code >= 400
        assert not list((service.data_dir / "videos").rglob("*.mp4"))


def test_interrupted_job_is_requeued_at_startup(tmp_path, debug_model, debug_pipe):
    with serving(tmp_path, debug_model) as (client, service, keys):  # no workers: the job stays queued
        v = client.post("/v1/videos", json={"prompt": PROMPT}).json()
    Store(tmp_path / "data" / "kinema.db").claim("w0")  # as if a worker was mid-job when the server died
    with serving(tmp_path, debug_model, debug_pipe) as (client, service, _):
        client.headers["Authorization"] = f"Bearer {keys[0]}"
        done = wait_for(client, v["id"])
        assert done["status"] == "completed"
        row = service.store.get(v["id"], None)
        assert row["attempts"] == 2


def test_auth_and_isolation(tmp_path, debug_model):
    with serving(tmp_path, debug_model) as (client, service, (alice, bob)):
        v = client.post("/v1/videos", json={"prompt": PROMPT}).json()
        anon = {"Authorization": ""}
        assert_error(client.get("/v1/videos", headers=anon), 401, "missing_api_key")
        assert_error(client.get("/v1/videos", headers={"Authorization": "Bearer kn-nope-nope"}), 401, "invalid_api_key")
        assert_error(
            client.get("/v1/videos", headers={"Authorization": f"Bearer {alice[:-2]}xx"}), 401, "invalid_api_key"
        )
        as_bob = {"Authorization": f"Bearer {bob}"}
        assert client.get("/v1/videos", headers=as_bob).json()["data"] == []
        assert_error(client.get(f"/v1/videos/{v['id']}", headers=as_bob), 404, "video_not_found")
        assert_error(client.get(f"/v1/videos/{v['id']}/content", headers=as_bob), 404, "video_not_found")
        assert_error(client.delete(f"/v1/videos/{v['id']}", headers=as_bob), 404, "video_not_found")
        assert_error(
            client.post(f"/v1/videos/{v['id']}/remix", json={"prompt": "x"}, headers=as_bob), 404, "video_not_found"
        )
        assert client.get(f"/v1/videos/{v['id']}").status_code == 200
        assert_error(client.get(f"/v1/videos/{v['id']}/content"), 409, "video_not_ready")
        digests = [r[0] for r in service.store.db().execute("SELECT hash FROM keys")]
        assert alice not in digests and all(len(d) == 64 for d in digests)  # only hashes are stored
        assert service.store.revoke_key(alice.split("-")[1])
        assert_error(client.get("/v1/videos"), 401, "invalid_api_key")


def test_limits(tmp_path, debug_model):
    with serving(tmp_path / "a", debug_model, submit_burst=2, submit_rate=0.01) as (client, _, (_, bob)):
        for _ in range(2):
            assert client.post("/v1/videos", json={"prompt": PROMPT}).status_code == 200
            assert client.post("/v1/videos", json={"prompt": ""}).status_code == 400  # refused before a token
        r = client.post("/v1/videos", json={"prompt": PROMPT})
        assert_error(r, 429, "rate_limit_exceeded")
        assert 1 <= int(r.headers["Retry-After"]) <= 100
        as_bob = {"Authorization": f"Bearer {bob}"}
        assert client.post("/v1/videos", json={"prompt": PROMPT}, headers=as_bob).status_code == 200  # his own bucket
    with serving(tmp_path / "b", debug_model, max_active_jobs=1) as (client, _, _):
        assert client.post("/v1/videos", json={"prompt": PROMPT}).status_code == 200
        r = client.post("/v1/videos", json={"prompt": PROMPT})
        assert_error(r, 429, "too_many_active_jobs")
        assert int(r.headers["Retry-After"]) >= 1
    with serving(tmp_path / "c", debug_model, request_rate=0.01, request_burst=2) as (client, _, _):
        assert [client.get("/v1/videos").status_code for _ in range(3)] == [200, 200, 429]


def test_rate_limits_survive_a_restart(tmp_path, debug_model):
    limits = dict(submit_burst=2, submit_rate=0.01, request_burst=6, request_rate=0.01)
    with serving(tmp_path, debug_model, **limits) as (client, _, keys):
        as_bob = {"Authorization": f"Bearer {keys[1]}"}
        assert [client.post("/v1/videos", json={"prompt": PROMPT}).status_code for _ in range(3)] == [200, 200, 429]
        assert [client.get("/v1/videos", headers=as_bob).status_code for _ in range(7)] == [200] * 6 + [429]
    with serving(tmp_path, debug_model, **limits) as (client, service, _):  # a new server on the same data dir
        r = client.post("/v1/videos", json={"prompt": PROMPT}, headers={"Authorization": f"Bearer {keys[0]}"})
        err = assert_error(r, 429, "rate_limit_exceeded")
        assert "new videos" in err["message"] and 50 <= int(r.headers["Retry-After"]) <= 100
        r = client.get("/v1/videos", headers={"Authorization": f"Bearer {keys[1]}"})
        assert_error(r, 429, "rate_limit_exceeded")
        assert 50 <= int(r.headers["Retry-After"]) <= 100
        rows = service.store.db().execute("SELECT owner, kind FROM buckets").fetchall()
        assert {(o, k) for o, k in rows} >= {(keys[0].split("-")[1], "submit"), (keys[1].split("-")[1], "request")}


class Receiver(BaseHTTPRequestHandler):
    """Records every request (path, Host header); /hook answers a redirect to /elsewhere."""

    seen: ClassVar[list[tuple[str, str]]] = []

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers["content-length"]))
        type(self).seen.append((self.path, self.headers["host"]))
        self.send_response(307 if self.path == "/hook" else 200)
        self.send_header("location", "/elsewhere")
        self.end_headers()

    def log_message(self, *args) -> None:
        pass


@contextmanager
def fake_dns(monkeypatch, table: dict[str, str]):
    """socket.getaddrinfo that answers names in `table` (changeable while in use), the real one for the rest."""
    import socket

    real = socket.getaddrinfo

    def lookup(host, port, *args, **kw):
        if host in table:
            return real(table[host], port, *args, **kw)
        return real(host, port, *args, **kw)

    monkeypatch.setattr(socket, "getaddrinfo", lookup)
    yield table


def test_callback_url_guard(tmp_path, debug_model, monkeypatch):
    refused = [
        "ftp://93.184.216.34/hook",
        "http:///hook",
        "http://nonexistent.invalid/hook",
        "http://localhost:8000/hook",
        "http://127.0.0.1/hook",
        "http://2130706433/hook",  # 127.0.0.1 as one number
        "http://0.0.0.0/hook",
        "http://10.0.0.7/hook",
        "http://192.168.1.1/hook",
        "http://169.254.169.254/latest/meta-data",  # the cloud metadata service
        "http://100.64.0.1/hook",
        "http://224.0.0.1/hook",
        "http://240.0.0.1/hook",
        "http://[::1]/hook",
        "http://[::]/hook",
        "http://[::ffff:127.0.0.1]/hook",  # IPv4-mapped IPv6
        "http://[::ffff:10.0.0.1]/hook",
        "http://[fe80::1]/hook",
        "http://[fd00::1]/hook",
        "http://[ff02::1]/hook",
        "http://[2002:7f00:1::]/hook",  # 6to4 of 127.0.0.1
    ]
    hooks = HTTPServer(("127.0.0.1", 0), Receiver)
    threading.Thread(target=hooks.serve_forever, daemon=True).start()
    port = hooks.server_port
    with fake_dns(monkeypatch, {"hooks.example": "93.184.216.34"}) as dns:
        with serving(tmp_path / "a", debug_model) as (client, service, _):
            deliver = type(service).deliver_callbacks
            service.deliver_callbacks = lambda now=None: 0  # the background loop sends nothing: no real network
            post = lambda url: client.post("/v1/videos", json={"prompt": PROMPT, "callback_url": url})
            for url in refused:
                assert_error(post(url), 400, "invalid_callback_url", "callback_url")
            for url in ("http://93.184.216.34/hook", "https://[2606:4700:4700::1111]:8443/hook"):
                assert post(url).status_code == 200, url
            service.store.db().execute("DELETE FROM outbox")
            # public at submit time, loopback at delivery (DNS rebinding): checked again, not sent
            assert post(f"http://hooks.example:{port}/hook").status_code == 200
            dns["hooks.example"] = "127.0.0.1"
            assert deliver(service, now=time.time() + 100) == 0
            assert Receiver.seen == []
            pending = service.store.db().execute("SELECT attempts FROM outbox").fetchall()
            assert pending and all(r["attempts"] >= 1 for r in pending)
        with serving(tmp_path / "b", debug_model, allow_private_callbacks=True) as (client, service, _):
            post = lambda url: client.post("/v1/videos", json={"prompt": PROMPT, "callback_url": url})
            assert_error(post("file:///etc/passwd"), 400, "invalid_callback_url", "callback_url")
            assert post(f"http://hooks.example:{port}/hook").status_code == 200  # now 127.0.0.1: allowed
            end = time.time() + 10
            while not Receiver.seen and time.time() < end:
                time.sleep(0.05)
            time.sleep(0.3)
            # sent to the address checked, with the client's Host; the 307 was not followed
            assert Receiver.seen[0] == ("/hook", f"hooks.example:{port}")
            assert all(path == "/hook" for path, _ in Receiver.seen), Receiver.seen
    hooks.shutdown()


def test_bad_uploads_and_body_limit(tmp_path, debug_model):
    with serving(tmp_path, debug_model, max_body_mb=0.05) as (client, service, _):

        def upload(data: bytes, name="x.png"):
            return client.post(
                "/v1/videos", data={"prompt": PROMPT}, files={"input_reference": (name, data, "image/png")}
            )

        assert_error(upload(b"%PDF-1.4 not an image at all"), 400, "invalid_image", "input_reference")
        assert_error(upload(png_bytes()[:40]), 400, "invalid_image", "input_reference")  # truncated
        assert_error(upload(bomb_png()), 400, "image_too_large", "input_reference")
        assert_error(upload(bomb_png(5000, 5000)), 400, "image_too_large", "input_reference")  # over our 4096^2
        big = client.post(
            "/v1/videos", content=b"{" + b" " * 60000 + b"}", headers={"content-type": "application/json"}
        )
        assert_error(big, 413, "request_too_large")
        b64 = "data:image/png;base64,AAAA"
        assert_error(client.post("/v1/videos", json={"prompt": PROMPT, "input_reference": b64}), 400, "invalid_image")
        assert service.store.db().execute("SELECT COUNT(*) FROM videos").fetchone()[0] == 0
        assert not list((service.data_dir / "inputs").rglob("*.png"))


def test_error_shapes_and_codes(tmp_path, debug_model):
    with serving(tmp_path, debug_model) as (client, _, _):
        post = lambda body: client.post("/v1/videos", json=body)
        assert_error(post({"prompt": PROMPT, "size": "65x64"}), 400, "invalid_size", "size")
        assert_error(post({"prompt": PROMPT, "size": "big"}), 400, "invalid_size", "size")
        assert_error(post({"prompt": PROMPT, "seconds": "-1"}), 400, "invalid_seconds", "seconds")
        assert_error(post({"prompt": PROMPT, "seconds": "four"}), 400, "invalid_seconds", "seconds")
        assert_error(post({"prompt": PROMPT, "steps": 0}), 400, "invalid_steps", "steps")
        assert_error(post({"prompt": PROMPT, "guidance": 99}), 400, "invalid_guidance", "guidance")
        assert_error(post({"prompt": "   "}), 400, "empty_prompt", "prompt")
        assert_error(post({"prompt": PROMPT, "model": "sora-2"}), 400, "model_not_found", "model")
        assert_error(post({"prompt": PROMPT, "colour": "red"}), 400, "invalid_request", "colour")
        assert_error(post({"prompt": PROMPT, "video": {"id": "video_nope"}}), 404, "video_not_found", "video")
        assert_error(post({"prompt": PROMPT, "callback_url": "file:///etc/passwd"}), 400, "invalid_callback_url")
        assert_error(post({"prompt": PROMPT, "callback_url": "http://127.0.0.1/x"}), 400, "invalid_callback_url")
        shots = [{"prompt": "a red circle", "seconds": 1}, {"prompt": "a blue square", "seconds": 1}]
        assert_error(post({"prompt": PROMPT, "shots": shots}), 400, "conflicting_inputs", "prompt")
        assert post({"shots": shots}).status_code == 200
        assert post({"shots": shots, "shot_context": "previous"}).status_code == 200
        assert_error(post({"prompt": PROMPT, "shot_context": "first"}), 400, "invalid_shot_context", "shot_context")
        bad = client.post("/v1/videos", content=b"{nope", headers={"content-type": "application/json"})
        assert_error(bad, 400, "invalid_json")
        assert_error(client.get("/v1/nothing"), 404, "not_found")
        assert_error(client.get("/v1/videos", params={"limit": 0}), 400, "invalid_request", "limit")
        err = assert_error(post({"prompt": "a pikachu dances on a stage"}), 400, "moderation_blocked", "prompt")
        assert "ip" in err["message"]
        doc = client.get("/openapi.json").json()
        assert {"/v1/videos", "/v1/videos/{video_id}", "/v1/videos/{video_id}/content"} <= set(doc["paths"])
        assert "CreateVideo" in doc["components"]["schemas"]


def test_cursor_paging_and_idempotency(tmp_path, debug_model):
    with serving(tmp_path, debug_model, max_active_jobs=20, submit_burst=20) as (client, _, _):
        ids = [client.post("/v1/videos", json={"prompt": f"{PROMPT} {i}"}).json()["id"] for i in range(5)]
        pages, after = [], None
        while True:
            params = {"limit": 2, "order": "asc"} | ({"after": after} if after else {})
            page = client.get("/v1/videos", params=params).json()
            pages.append([v["id"] for v in page["data"]])
            after = page["last_id"]
            if not page["has_more"]:
                break
        assert pages == [ids[0:2], ids[2:4], ids[4:]]
        desc = client.get("/v1/videos", params={"limit": 3, "after": ids[3]}).json()
        assert [v["id"] for v in desc["data"]] == ids[2::-1] and desc["has_more"] is False
        assert_error(client.get("/v1/videos", params={"after": "video_nope"}), 400, "invalid_cursor", "after")
        one = client.post("/v1/videos", json={"prompt": PROMPT}, headers={"Idempotency-Key": "k1"}).json()
        again = client.post("/v1/videos", json={"prompt": PROMPT}, headers={"Idempotency-Key": "k1"})
        assert again.json()["id"] == one["id"] and again.headers["idempotent-replayed"] == "true"
        assert len(client.get("/v1/videos", params={"limit": 100}).json()["data"]) == 6


def test_studio_page_and_config(tmp_path, debug_model):
    with serving(tmp_path, debug_model) as (client, _, _):
        page = client.get("/", headers={"Authorization": ""})
        assert page.status_code == 200 and "kinema studio" in page.text and "://" not in page.text  # nothing remote
        cfg = client.get("/studio/config").json()
        assert cfg["auth"] is True and cfg["stride"] == 16
    assert aspect_sizes(16, 64, 64, 256 * 256) == {"1:1": "64x64", "16:9": "112x64", "9:16": "64x112", "4:3": "64x48"}


def test_moderation_results_and_keys_cli(tmp_path):
    assert blocked_category("a red circle falls and bounces") is None
    assert blocked_category("a spider spins a web") is None
    assert blocked_category("t.r.u.m.p dancing") == "real_people"
    from typer.testing import CliRunner

    from kinema.cli import app
    from kinema.server.auth import check_key

    out = CliRunner().invoke(app, ["keys", "create", "carol", "--data-dir", str(tmp_path)])
    assert out.exit_code == 0, out.output
    key = out.output.split()[-1]
    assert check_key(Store(tmp_path / "kinema.db"), key) == key.split("-")[1]
    assert "carol" in CliRunner().invoke(app, ["keys", "list", "--data-dir", str(tmp_path)]).output


@pytest.mark.filterwarnings("ignore:The Sora API:DeprecationWarning")  # the SDK's notice on every videos call
def test_official_openai_client(tmp_path, debug_model, debug_pipe):
    """The `openai` package, pointed at kinema with a key: create (multipart), retrieve, content, list,
    remix, edits, extensions, errors with kinema's codes, delete."""
    from tests.conftest import serve_in_thread

    openai = pytest.importorskip("openai", reason="pip install openai to test the official client")
    config = ServerConfig(data_dir=tmp_path / "data", model=debug_model, default_steps=1, poll_after_ms=100)
    app = create_app(config, pipeline=debug_pipe)
    key = create_key(app.state.service.store, "openai")
    server, thread, url = serve_in_thread(app)

    def done(oa, video_id: str, timeout: float = 60):
        end = time.time() + timeout
        while (v := oa.videos.retrieve(video_id)).status not in ("completed", "failed") and time.time() < end:
            time.sleep(0.1)
        assert v.status == "completed", v
        return v

    try:
        oa = openai.OpenAI(base_url=f"{url}/v1", api_key=key, max_retries=0)
        video = oa.videos.create(prompt=PROMPT, model="kinema", seconds="1", size="64x64")
        assert video.status in ("queued", "in_progress") and video.id.startswith("video_")
        video = done(oa, video.id)
        assert video.progress == 100 and video.size == "64x64" and video.seconds == "1"
        assert oa.videos.download_content(video.id).read()[4:8] == b"ftyp"
        assert oa.videos.download_content(video.id, variant="spritesheet").read()[:2] == b"\xff\xd8"
        remix = done(oa, oa.videos.remix(video.id, prompt="a blue circle falls and bounces").id)
        assert remix.remixed_from_video_id == video.id
        # videos.edit and videos.extend of this SDK refuse a {"id"} reference client-side (they expect a file
        # there), so these two go through its generic post with the JSON body the API documents
        Video = openai.types.Video
        body = {"prompt": "a green circle falls", "video": {"id": video.id}}
        edit = done(oa, oa.post("/videos/edits", body=body, cast_to=Video).id)
        body = {"prompt": PROMPT, "seconds": "1", "video": {"id": video.id}}
        ext = done(oa, oa.post("/videos/extensions", body=body, cast_to=Video).id)
        listed = [v.id for v in oa.videos.list(limit=10, order="asc")]
        assert listed == [video.id, remix.id, edit.id, ext.id]
        with pytest.raises(openai.BadRequestError) as e:
            oa.videos.create(prompt=PROMPT, size="65x64")
        assert e.value.code == "invalid_size" and e.value.param == "size"
        with pytest.raises(openai.NotFoundError):
            oa.videos.retrieve("video_nope")
        with pytest.raises(openai.AuthenticationError):
            openai.OpenAI(base_url=f"{url}/v1", api_key="kn-nope-nope", max_retries=0).videos.list()
        deleted = oa.videos.delete(ext.id)
        assert deleted.deleted is True and deleted.id == ext.id
    finally:
        server.should_exit = True
        thread.join(30)


def test_serve_cli_refuses_a_busy_data_dir_or_port(tmp_path):
    import fcntl
    import socket

    from typer.testing import CliRunner

    from kinema.cli import app

    (tmp_path / "busy").mkdir()
    with open(tmp_path / "busy" / "server.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # as a running server holds it
        out = CliRunner().invoke(app, ["serve", "--data-dir", str(tmp_path / "busy")])
    assert out.exit_code == 2 and "another kinema server is using" in out.output, out.output
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = str(s.getsockname()[1])
        out = CliRunner().invoke(app, ["serve", "--data-dir", str(tmp_path / "free"), "--port", port])
    assert out.exit_code == 2 and "cannot listen on" in out.output and "Traceback" not in out.output, out.output
    out = CliRunner().invoke(app, ["serve", "--data-dir", str(tmp_path / "free"), "--submit-rate", "0"])
    assert out.exit_code == 2 and "must be > 0" in out.output, out.output


def test_serve_compile_reaches_the_worker_processes(tmp_path: Path, debug_model: Path, monkeypatch) -> None:
    """ServerConfig(compile=True) (kinema serve --compile) is passed to each spawned worker's process_main,
    which hands it to Pipeline.from_pretrained."""
    import inspect

    from kinema.server import app as server_app
    from kinema.server import worker

    started = []

    class FakeProcess:
        def __init__(self, target, args, daemon, name) -> None:
            started.append(dict(zip(inspect.signature(target).parameters, args, strict=False)))

        def start(self) -> None:
            pass

    monkeypatch.setattr(server_app.mp, "get_context", lambda kind: type("Ctx", (), {"Process": FakeProcess}))
    for flag in (False, True):
        service = server_app.Service(ServerConfig(data_dir=tmp_path / str(flag), model=debug_model, compile=flag))
        service._start_worker("w0")
    assert [s["compile"] for s in started] == [False, True] and started[0]["model"] == str(debug_model)
    assert "compile" in inspect.signature(worker.process_main).parameters


@pytest.mark.parametrize("bad", [{"guidance": "strong"}, {"guidance_interval": [0.9, 0.1]}])
def test_bad_model_defaults_fail_at_server_start(debug_model: Path, tmp_path: Path, bad: dict) -> None:
    """A model.json whose default guidance or guidance interval is malformed stops the server from starting
    (ModelInfo.read), not the first request."""
    import shutil

    from kinema.checkpoint import CheckpointError
    from kinema.server.app import ModelInfo

    shutil.copytree(debug_model, tmp_path / "m")
    meta = json.loads((tmp_path / "m" / "model.json").read_text())
    (tmp_path / "m" / "model.json").write_text(json.dumps(meta | bad))
    with pytest.raises(CheckpointError, match=r"model config .*model\.json: guidance"):
        ModelInfo.read(tmp_path / "m")
