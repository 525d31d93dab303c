"""A small Python client for a kinema server (or any OpenAI Videos API).

    client = kinema.Client("http://127.0.0.1:8000", api_key="kn-...")
    video = client.create("a red circle falls and bounces", seconds="2", size="64x64", seed=0)
    video = client.wait(video["id"])                  # polls at the server's openai-poll-after-ms
    client.download(video["id"], "red_circle.mp4")    # or variant="thumbnail" / "spritesheet"

Errors come back as KinemaAPIError with the server's stable code (e.g. invalid_size, rate_limit_exceeded).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import httpx

from kinema.checkpoint import atomic_write


class KinemaAPIError(RuntimeError):
    def __init__(self, status: int, code: str, message: str, param: str | None = None) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status, self.code, self.message, self.param = status, code, message, param


class Client:
    def __init__(self, base_url: str = "http://127.0.0.1:8000", api_key: str | None = None, timeout: float = 30):
        base = base_url.rstrip("/")
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self.http = httpx.Client(
            base_url=base if base.endswith("/v1") else base + "/v1", headers=headers, timeout=timeout
        )

    def _call(self, method: str, path: str, **kw: Any) -> httpx.Response:
        r = self.http.request(method, path, **kw)
        if r.status_code >= 400:
            try:
                err = r.json()["error"]
            except (ValueError, KeyError, TypeError):
                err = {"code": "http_error", "message": r.text[:200]}
            raise KinemaAPIError(r.status_code, err.get("code", "http_error"), err.get("message", ""), err.get("param"))
        return r

    def create(self, prompt: str = "", image: str | Path | None = None, **fields: Any) -> dict:
        """Queue a video. fields: seconds ("2"), size ("64x64"), seed, steps, guidance, keyframes, video
        ({"id": ...}) with extend, shots, loop, callback_url. image: a file to animate (input_reference)."""
        body = {"prompt": prompt, **{k: v for k, v in fields.items() if v is not None}}
        if "seconds" in body:
            body["seconds"] = str(body["seconds"])
        if image is None:
            return self._call("POST", "/videos", json=body).json()
        form = {
            k: v if isinstance(v, str) else str(v).lower() if isinstance(v, bool) else str(v) for k, v in body.items()
        }
        with open(image, "rb") as f:
            return self._call("POST", "/videos", data=form, files={"input_reference": (Path(image).name, f)}).json()

    def get(self, video_id: str) -> dict:
        return self._call("GET", f"/videos/{video_id}").json()

    def list(self, after: str | None = None, limit: int = 20, order: str = "desc") -> dict:
        params = {"limit": limit, "order": order} | ({"after": after} if after else {})
        return self._call("GET", "/videos", params=params).json()

    def delete(self, video_id: str) -> dict:
        return self._call("DELETE", f"/videos/{video_id}").json()

    def remix(self, video_id: str, prompt: str, **fields: Any) -> dict:
        return self._call("POST", f"/videos/{video_id}/remix", json={"prompt": prompt, **fields}).json()

    def extend(self, video_id: str, prompt: str, seconds: str | float = "2", **fields: Any) -> dict:
        body = {"prompt": prompt, "seconds": str(seconds), "video": {"id": video_id}, **fields}
        return self._call("POST", "/videos/extensions", json=body).json()

    def wait(self, video_id: str, timeout: float = 600) -> dict:
        """Poll until the video is completed or failed (returned either way); TimeoutError after timeout."""
        end = time.monotonic() + timeout
        while True:
            r = self._call("GET", f"/videos/{video_id}")
            video = r.json()
            if video["status"] in ("completed", "failed"):
                return video
            if time.monotonic() > end:
                raise TimeoutError(f"{video_id} is still {video['status']} after {timeout:g} s")
            time.sleep(int(r.headers.get("openai-poll-after-ms", "1000")) / 1000)

    def download(self, video_id: str, path: str | Path, variant: str = "video") -> Path:
        """Write the video (or its thumbnail or spritesheet) to path, atomically."""
        data = self._call("GET", f"/videos/{video_id}/content", params={"variant": variant}).content
        atomic_write(Path(path), lambda tmp: Path(tmp).write_bytes(data))
        return Path(path)

    def close(self) -> None:
        self.http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
