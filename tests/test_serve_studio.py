"""The web studio end to end in headless Chromium (Debian's `chromium` + the Playwright client): paste a key,
type a prompt, pick 16:9, upload an image, generate, watch it finish, play it, see provenance and the gallery.

Skips with a reason when Playwright or a Chromium binary is missing. To refresh docs/studio.png with the
shipped model:  KINEMA_STUDIO_SCREENSHOT=docs/studio.png KINEMA_STUDIO_SHIPPED=1 pytest tests/test_serve_studio.py
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from PIL import Image

from kinema.server import ServerConfig, create_app
from kinema.server.auth import create_key
from tests.conftest import serve_in_thread

CHROMIUM = next((p for p in ("/usr/bin/chromium", shutil.which("chromium") or "") if p and Path(p).is_file()), None)


@pytest.fixture()
def browser():
    sync_api = pytest.importorskip("playwright.sync_api", reason="pip install playwright to run the studio test")
    if CHROMIUM is None:
        pytest.skip("no Chromium binary: apt-get install -y chromium to run the studio test")
    with sync_api.sync_playwright() as p:
        try:
            b = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        except Exception as e:  # an unusable browser is a skip, not a failure of kinema
            pytest.skip(f"Chromium at {CHROMIUM} did not start: {str(e).splitlines()[0]}")
        yield b
        b.close()


def test_studio_end_to_end(tmp_path, debug_model, debug_pipe, text_encoder, browser):
    shot = os.environ.get("KINEMA_STUDIO_SCREENSHOT")
    model, pipe, steps = debug_model, debug_pipe, 1
    if os.environ.get("KINEMA_STUDIO_SHIPPED"):  # the shipped model, for a picture worth looking at
        from kinema.pipeline import Pipeline

        model, pipe, steps = None, Pipeline.from_pretrained(None, text_encoder=text_encoder), 20
    app = create_app(ServerConfig(data_dir=tmp_path / "data", model=model, default_steps=steps), pipeline=pipe)
    key = create_key(app.state.service.store, "studio")
    Image.new("RGB", (48, 48), (230, 200, 40)).save(tmp_path / "start.png")
    server, thread, url = serve_in_thread(app)
    try:
        page = browser.new_page(viewport={"width": 1100, "height": 760})
        errors: list[str] = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.on(
            "request",
            lambda r: (
                errors.append(f"remote request {r.url}") if not r.url.startswith((url, "blob:", "data:")) else None
            ),
        )
        page.goto(url)
        page.fill("#key", key)
        page.click("#savekey")
        page.fill("#prompt", "a yellow square slides to the right")
        page.click("button[data-aspect='16:9']")
        page.set_input_files("#image", str(tmp_path / "start.png"))
        page.click("#go")
        page.wait_for_selector("#details .status-completed", timeout=180_000)
        page.wait_for_function("document.querySelector('#result') && document.querySelector('#result').readyState >= 2")
        assert page.eval_on_selector("#result", "v => [v.videoWidth, v.videoHeight]") == [112, 64]
        details = page.inner_text("#details")
        assert "112x64" in details and "not available" not in details, details
        assert ("Trusted" in details or "Valid" in details) and "detected (" in details  # signature, watermark
        assert page.get_attribute("a.download", "download").endswith(".mp4")
        page.wait_for_function(
            "document.querySelector('.card img') && document.querySelector('.card img').naturalWidth > 0"
        )
        assert page.evaluate("localStorage.getItem('kinema_key')") == key
        page.click("#result")  # pause on a frame for the picture
        page.screenshot(path=shot or str(tmp_path / "studio.png"), full_page=True)
        assert not errors, errors
    finally:
        server.should_exit = True
        thread.join(30)
