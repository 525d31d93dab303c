"""Fuzz every operation of the served OpenAPI document (schemathesis: bodies, query strings and paths drawn
from the schema, valid and not): no answer is a 500, and every error has the {"error": {code, message,
param}} shape. Bounded: a few dozen examples per operation, no workers (nothing is generated)."""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest

schemathesis = pytest.importorskip("schemathesis", reason="pip install schemathesis to fuzz the API")
from hypothesis import HealthCheck, settings  # noqa: E402 (after the skip)

from kinema.server import ServerConfig, create_app  # noqa: E402
from kinema.server.auth import create_key  # noqa: E402
from tests.conftest import make_debug_model  # noqa: E402

_tmp = Path(tempfile.mkdtemp(prefix="kinema_fuzz_"))
(_tmp / "model").mkdir()
app = create_app(
    ServerConfig(
        data_dir=_tmp / "data",
        model=make_debug_model(_tmp / "model"),
        workers=0,
        max_active_jobs=10_000,
        submit_burst=10_000,
        request_burst=10_000,
        max_body_mb=1,
    )
)
KEY = create_key(app.state.service.store, "fuzz")
schema = schemathesis.openapi.from_asgi("/openapi.json", app)


@schema.parametrize()
@settings(max_examples=15, deadline=None, suppress_health_check=list(HealthCheck))
def test_no_500(case):
    response = case.call(headers={"Authorization": f"Bearer {KEY}"})
    assert response.status_code < 500, (case.method, case.path, response.text[:300])
    if response.status_code >= 400:
        err = response.json()["error"]
        assert set(err) == {"code", "message", "param"} and err["code"], err
