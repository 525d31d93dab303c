"""API keys and per-key limits for `kinema serve`.

A key reads `kn-<id>-<secret>`: the id finds the row, and only sha256("<id>:<secret>") is stored, so the
database never holds a usable key and two keys with the same secret would not share a hash. Limits are
token buckets (the meter of RFC 2697 and of most API gateways): `burst` tokens refilled at `rate` per
second; a request that finds no token is told the seconds until the next one (Retry-After).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import threading
import time

from kinema.server.jobs import Store

KEY_PREFIX = "kn"


def digest(key_id: str, secret: str) -> str:
    return hashlib.sha256(f"{key_id}:{secret}".encode()).hexdigest()


def create_key(store: Store, name: str) -> str:
    """Store a new key's hash and return the key (the only time it is seen)."""
    if not name.strip():
        raise ValueError("a key needs a name")
    key_id, secret = secrets.token_hex(6), secrets.token_urlsafe(32)
    store.add_key(key_id, name.strip(), digest(key_id, secret))
    return f"{KEY_PREFIX}-{key_id}-{secret}"


def check_key(store: Store, key: str) -> str | None:
    """The key's id if the key is valid and not revoked, else None."""
    prefix, _, rest = key.partition("-")
    key_id, _, secret = rest.partition("-")
    if prefix != KEY_PREFIX or not key_id or not secret:
        return None
    row = store.key(key_id)
    if row is None or not hmac.compare_digest(row["hash"], digest(key_id, secret)):
        return None
    return key_id


class TokenBucket:
    """`burst` tokens, refilled at `rate` per second. take() -> 0.0 when allowed, else seconds to wait."""

    def __init__(self, rate: float, burst: float) -> None:
        self.rate, self.burst = rate, burst
        self.tokens, self.stamp = burst, time.monotonic()
        self.lock = threading.Lock()

    def take(self) -> float:
        with self.lock:
            now = time.monotonic()
            self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
            self.stamp = now
            if self.tokens >= 1:
                self.tokens -= 1
                return 0.0
            return (1 - self.tokens) / self.rate


class Limiter:
    """One bucket per (key, kind): kind "request" meters every call, "submit" meters new jobs."""

    def __init__(self, limits: dict[str, tuple[float, float]]) -> None:
        self.limits = limits
        self.buckets: dict[tuple[str, str], TokenBucket] = {}
        self.lock = threading.Lock()

    def take(self, owner: str, kind: str) -> float:
        with self.lock:
            bucket = self.buckets.get((owner, kind))
            if bucket is None:
                bucket = self.buckets[(owner, kind)] = TokenBucket(*self.limits[kind])
        return bucket.take()
