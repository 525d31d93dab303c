"""API keys and per-key limits for `kinema serve`.

A key reads `kn-<id>-<secret>`: the id finds the row, and only sha256("<id>:<secret>") is stored, so the
database never holds a usable key and two keys with the same secret would not share a hash. Limits are
token buckets (the meter of RFC 2697 and of most API gateways): `burst` tokens refilled at `rate` per
second; a request that finds no token is told the seconds until the next one (Retry-After). The buckets
are rows of the server's database, so restarting the server does not hand every key a fresh burst.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
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


def refill(tokens: float, stamp: float, now: float, rate: float, burst: float) -> float:
    """The tokens of a bucket that held `tokens` at time `stamp` (Unix seconds), at time `now`. A clock that
    went back counts as no time passed."""
    return min(burst, tokens + max(0.0, now - stamp) * rate)


class Limiter:
    """One token bucket per (key, kind): kind "request" meters every call, "submit" meters new jobs. The
    buckets live in the database (Store.take_token), so a restarted server keeps every key's window."""

    def __init__(self, store: Store, limits: dict[str, tuple[float, float]]) -> None:
        self.store, self.limits = store, limits

    def take(self, owner: str, kind: str) -> float:
        """0.0 when the call may go ahead, else the seconds to wait (Retry-After)."""
        rate, burst = self.limits[kind]
        return self.store.take_token(owner, kind, rate, burst, time.time())
