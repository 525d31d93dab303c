"""Durable jobs and keys for `kinema serve`: one SQLite database (WAL) in the data dir.

Every state change is one transaction, so a server killed at any moment (kill -9 included) restarts with
each job in the last state it committed: queued jobs run, in_progress ones are re-queued (`recover`),
finished files are served. A worker claims a job with one `UPDATE ... RETURNING` and every later write names
the attempt it belongs to, so a worker left over from a killed server can never overwrite a re-run.
Callbacks are written to an outbox table in the same transaction as the state change they report and
delivered later by the server (app.deliver_callbacks), off the worker's path.

Table `videos` keeps the public fields of the OpenAI Video object (`video_object` renders one) beside the
resolved generate() arguments (`request`, JSON) and what the worker learnt (`result`, JSON).
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

MAX_ATTEMPTS = 3  # a job whose worker died this many times fails with worker_crashed

SCHEMA = """
CREATE TABLE IF NOT EXISTS keys (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    hash TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    revoked INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS videos (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    owner TEXT NOT NULL,
    idempotency_key TEXT,
    status TEXT NOT NULL,
    progress INTEGER NOT NULL DEFAULT 0,
    model TEXT NOT NULL,
    prompt TEXT NOT NULL,
    seconds TEXT NOT NULL,
    size TEXT NOT NULL,
    request TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    started_at INTEGER,
    completed_at INTEGER,
    expires_at INTEGER,
    remixed_from_video_id TEXT,
    error_code TEXT,
    error_message TEXT,
    attempts INTEGER NOT NULL DEFAULT 0,
    worker TEXT,
    deleted INTEGER NOT NULL DEFAULT 0,
    callback_url TEXT,
    result TEXT
);
CREATE UNIQUE INDEX IF NOT EXISTS videos_idem ON videos(owner, idempotency_key);
CREATE INDEX IF NOT EXISTS videos_owner ON videos(owner, seq);
CREATE INDEX IF NOT EXISTS videos_status ON videos(status, seq);
CREATE TABLE IF NOT EXISTS workers (
    name TEXT PRIMARY KEY,
    pid INTEGER NOT NULL,
    ready_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS buckets (
    owner TEXT NOT NULL,
    kind TEXT NOT NULL,
    tokens REAL NOT NULL,
    stamp REAL NOT NULL,
    PRIMARY KEY (owner, kind)
);
CREATE TABLE IF NOT EXISTS outbox (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    video_id TEXT NOT NULL,
    url TEXT NOT NULL,
    body TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    next_at REAL NOT NULL
);
"""

ACTIVE = ("queued", "in_progress")


def video_object(row: sqlite3.Row | dict) -> dict[str, Any]:
    """The OpenAI Video object for a row, plus kinema's extras (prompt, seed, steps, guidance, provenance)."""
    req = json.loads(row["request"])
    result = json.loads(row["result"]) if row["result"] else {}
    error = {"code": row["error_code"], "message": row["error_message"]} if row["error_code"] else None
    return {
        "id": row["id"],
        "object": "video",
        "model": row["model"],
        "status": row["status"],
        "progress": 100 if row["status"] == "completed" else int(row["progress"]),
        "created_at": row["created_at"],
        "completed_at": row["completed_at"],
        "expires_at": row["expires_at"],
        "seconds": row["seconds"],
        "size": row["size"],
        "remixed_from_video_id": row["remixed_from_video_id"],
        "error": error,
        "prompt": row["prompt"],
        "seed": req.get("seed"),
        "steps": req.get("steps"),
        "guidance": req.get("guidance"),
        "task": result.get("task"),
        "expanded_prompt": result.get("expanded_prompt"),
        "provenance": result.get("provenance"),
    }


class Store:
    """The database. One connection per thread (sqlite3 connections are not shared across threads)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._local = threading.local()
        self.db().executescript(SCHEMA)

    def db(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(self.path, timeout=30, isolation_level=None)
            conn.row_factory = sqlite3.Row
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")  # WAL + NORMAL: a killed process loses nothing committed
            conn.execute("PRAGMA busy_timeout=30000")
            self._local.conn = conn
        return conn

    @contextmanager
    def tx(self) -> Iterator[sqlite3.Connection]:
        """A write transaction, taken at once (BEGIN IMMEDIATE) so concurrent writers queue, not deadlock."""
        db = self.db()
        db.execute("BEGIN IMMEDIATE")
        try:
            yield db
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")

    # ---- keys ------------------------------------------------------------------------------------------

    def add_key(self, key_id: str, name: str, digest: str) -> None:
        with self.tx() as db:
            db.execute(
                "INSERT INTO keys (id, name, hash, created_at) VALUES (?, ?, ?, ?)",
                (key_id, name, digest, int(time.time())),
            )

    def key(self, key_id: str) -> sqlite3.Row | None:
        return self.db().execute("SELECT * FROM keys WHERE id = ? AND revoked = 0", (key_id,)).fetchone()

    def keys(self) -> list[sqlite3.Row]:
        return self.db().execute("SELECT id, name, created_at, revoked FROM keys ORDER BY created_at").fetchall()

    def revoke_key(self, key_id: str) -> bool:
        with self.tx() as db:
            return db.execute("UPDATE keys SET revoked = 1 WHERE id = ?", (key_id,)).rowcount > 0

    # ---- jobs: the API side ----------------------------------------------------------------------------

    def insert(self, row: dict[str, Any], max_active: int) -> tuple[sqlite3.Row, bool] | None:
        """Add a queued job: (row, True). With an idempotency key this owner already used: (that row, False).
        None when the owner already has max_active jobs queued or in progress (checked in the same
        transaction, so concurrent requests cannot overshoot)."""
        with self.tx() as db:
            if row.get("idempotency_key"):
                old = db.execute(
                    "SELECT * FROM videos WHERE owner = ? AND idempotency_key = ?",
                    (row["owner"], row["idempotency_key"]),
                ).fetchone()
                if old is not None:
                    return old, False
            active = db.execute(
                "SELECT COUNT(*) FROM videos WHERE owner = ? AND deleted = 0 AND status IN ('queued', 'in_progress')",
                (row["owner"],),
            ).fetchone()[0]
            if active >= max_active:
                return None
            cols = ", ".join(row)
            new = db.execute(
                f"INSERT INTO videos ({cols}) VALUES ({', '.join('?' * len(row))}) RETURNING *", tuple(row.values())
            ).fetchone()
            self._event(db, new)
            return new, True

    def get(self, video_id: str, owner: str | None) -> sqlite3.Row | None:
        """A visible (not deleted) job; owner None means any owner."""
        row = self.db().execute("SELECT * FROM videos WHERE id = ? AND deleted = 0", (video_id,)).fetchone()
        if row is None or (owner is not None and row["owner"] != owner):
            return None
        return row

    def page(self, owner: str, after: str | None, limit: int, order: str) -> tuple[list[sqlite3.Row], bool]:
        """Cursor paging by insertion order: rows after the video `after` (in `order`), and has_more."""
        op, direction = (">", "ASC") if order == "asc" else ("<", "DESC")
        args: list[Any] = [owner]
        where = "owner = ? AND deleted = 0"
        if after is not None:
            where += f" AND seq {op} (SELECT seq FROM videos WHERE id = ? AND owner = ?)"
            args += [after, owner]
        rows = (
            self.db()
            .execute(f"SELECT * FROM videos WHERE {where} ORDER BY seq {direction} LIMIT ?", (*args, limit + 1))
            .fetchall()
        )
        return rows[:limit], len(rows) > limit

    def active_count(self, owner: str) -> int:
        q = "SELECT COUNT(*) FROM videos WHERE owner = ? AND deleted = 0 AND status IN ('queued', 'in_progress')"
        return self.db().execute(q, (owner,)).fetchone()[0]

    def delete(self, video_id: str, owner: str) -> tuple[bool, bool]:
        """(found, gone now). A running job is only marked deleted: its worker stops at the next step (the
        progress callback sees the mark) and removes the row and files; every other row goes at once."""
        with self.tx() as db:
            row = db.execute(
                "SELECT status FROM videos WHERE id = ? AND owner = ? AND deleted = 0", (video_id, owner)
            ).fetchone()
            if row is None:
                return False, False
            if row["status"] == "in_progress":
                db.execute("UPDATE videos SET deleted = 1 WHERE id = ?", (video_id,))
                return True, False
            db.execute("DELETE FROM videos WHERE id = ?", (video_id,))
            db.execute("DELETE FROM outbox WHERE video_id = ?", (video_id,))
            return True, True

    # ---- jobs: the worker side -------------------------------------------------------------------------

    def claim(self, worker: str) -> sqlite3.Row | None:
        """Take the oldest queued job: in_progress, one more attempt, owned by `worker`."""
        with self.tx() as db:
            row = db.execute(
                "UPDATE videos SET status = 'in_progress', progress = 0, attempts = attempts + 1, worker = ?, "
                "started_at = ? WHERE seq = (SELECT seq FROM videos WHERE status = 'queued' AND deleted = 0 "
                "ORDER BY seq LIMIT 1) RETURNING *",
                (worker, int(time.time())),
            ).fetchone()
            if row is not None:
                self._event(db, row)
            return row

    def progress(self, video_id: str, attempt: int, percent: int | None) -> bool:
        """Record progress (None: only look); False when the job was deleted or is no longer this attempt's."""
        db = self.db()
        if percent is None:
            row = db.execute(
                "SELECT deleted FROM videos WHERE id = ? AND attempts = ? AND status = 'in_progress'",
                (video_id, attempt),
            ).fetchone()
        else:
            with self.tx() as db:
                row = db.execute(
                    "UPDATE videos SET progress = ? WHERE id = ? AND attempts = ? AND status = 'in_progress' "
                    "RETURNING deleted",
                    (percent, video_id, attempt),
                ).fetchone()
        return row is not None and not row["deleted"]

    def finish(self, video_id: str, attempt: int, status: str, retention_s: float, **fields: Any) -> bool:
        """Move this attempt's job to completed or failed (with result or error_code/error_message fields)."""
        now = int(time.time())
        sets = {"status": status, "completed_at": now, "expires_at": now + int(retention_s), "worker": None}
        sets |= fields
        assign = ", ".join(f"{k} = ?" for k in sets)
        with self.tx() as db:
            row = db.execute(
                f"UPDATE videos SET {assign} WHERE id = ? AND attempts = ? AND status = 'in_progress' "
                "AND deleted = 0 RETURNING *",
                (*sets.values(), video_id, attempt),
            ).fetchone()
            if row is not None:
                self._event(db, row)
            return row is not None

    def drop(self, video_id: str) -> None:
        """Remove a job's row (a cancelled or expired one) and its pending callbacks."""
        with self.tx() as db:
            db.execute("DELETE FROM videos WHERE id = ?", (video_id,))
            db.execute("DELETE FROM outbox WHERE video_id = ?", (video_id,))

    def drop_deleted(self, video_id: str, attempt: int) -> bool:
        """Remove this attempt's job if its owner deleted it meanwhile; True if it did."""
        with self.tx() as db:
            gone = db.execute(
                "DELETE FROM videos WHERE id = ? AND attempts = ? AND deleted = 1 RETURNING id", (video_id, attempt)
            ).fetchone()
            db.execute("DELETE FROM outbox WHERE video_id = ? AND ?", (video_id, gone is not None))
            return gone is not None

    def requeue(self, worker: str | None = None) -> list[str]:
        """Put in_progress jobs (all, or one worker's) back in the queue; a job that has used its attempts
        fails instead. Deleted ones are removed. Returns the ids of the deleted ones (their files go too)."""
        who, args = ("", ()) if worker is None else (" AND worker = ?", (worker,))
        with self.tx() as db:
            gone = [
                r["id"]
                for r in db.execute(
                    f"DELETE FROM videos WHERE status = 'in_progress'{who} AND deleted = 1 RETURNING id", args
                ).fetchall()
            ]
            now = int(time.time())
            for row in db.execute(
                f"UPDATE videos SET status = 'failed', error_code = 'worker_crashed', error_message = "
                f"'the worker stopped {MAX_ATTEMPTS} times while generating this video', completed_at = ?, "
                f"expires_at = ?, worker = NULL WHERE status = 'in_progress'{who} AND attempts >= ? RETURNING *",
                (now, now + 86400, *args, MAX_ATTEMPTS),
            ).fetchall():
                self._event(db, row)
            for row in db.execute(
                f"UPDATE videos SET status = 'queued', progress = 0, worker = NULL "
                f"WHERE status = 'in_progress'{who} RETURNING *",
                args,
            ).fetchall():
                self._event(db, row)
        return gone

    def expired(self, now: float) -> list[str]:
        """Delete finished jobs past expires_at and deleted leftovers that are not running; their ids."""
        with self.tx() as db:
            rows = db.execute(
                "DELETE FROM videos WHERE (expires_at IS NOT NULL AND expires_at <= ? AND status IN "
                "('completed', 'failed')) OR (deleted = 1 AND status != 'in_progress') RETURNING id",
                (now,),
            ).fetchall()
            ids = [r["id"] for r in rows]
            db.executemany("DELETE FROM outbox WHERE video_id = ?", [(i,) for i in ids])
            return ids

    def worker_ready(self, name: str, pid: int) -> None:
        """A worker process has loaded its model (shown by /healthz)."""
        with self.tx() as db:
            db.execute(
                "INSERT OR REPLACE INTO workers (name, pid, ready_at) VALUES (?, ?, ?)", (name, pid, time.time())
            )

    def ready_pids(self) -> set[int]:
        return {r[0] for r in self.db().execute("SELECT pid FROM workers")}

    # ---- rate limits -----------------------------------------------------------------------------------

    def take_token(self, owner: str, kind: str, rate: float, burst: float, now: float) -> float:
        """One token from the (owner, kind) bucket, read and written back in one transaction so the windows
        survive a restart: 0.0 when there was one, else the seconds until there is (auth.refill)."""
        from kinema.server.auth import refill

        with self.tx() as db:
            row = db.execute("SELECT tokens, stamp FROM buckets WHERE owner = ? AND kind = ?", (owner, kind)).fetchone()
            tokens = burst if row is None else refill(row["tokens"], row["stamp"], now, rate, burst)
            wait = 0.0 if tokens >= 1 else (1 - tokens) / rate
            if wait == 0.0:
                tokens -= 1
            db.execute(
                "INSERT OR REPLACE INTO buckets (owner, kind, tokens, stamp) VALUES (?, ?, ?, ?)",
                (owner, kind, tokens, now),
            )
            return wait

    # ---- callbacks -------------------------------------------------------------------------------------

    def _event(self, db: sqlite3.Connection, row: sqlite3.Row) -> None:
        if row["callback_url"]:
            db.execute(
                "INSERT INTO outbox (video_id, url, body, next_at) VALUES (?, ?, ?, ?)",
                (row["id"], row["callback_url"], json.dumps(video_object(row)), time.time()),
            )

    def due_callbacks(self, now: float, limit: int = 32) -> list[sqlite3.Row]:
        # one video's events go out in order: only its oldest pending event is due
        q = (
            "SELECT * FROM outbox o WHERE next_at <= ? AND seq = "
            "(SELECT MIN(seq) FROM outbox WHERE video_id = o.video_id) ORDER BY seq LIMIT ?"
        )
        return self.db().execute(q, (now, limit)).fetchall()

    def callback_done(self, seq: int) -> None:
        with self.tx() as db:
            db.execute("DELETE FROM outbox WHERE seq = ?", (seq,))

    def callback_retry(self, seq: int, next_at: float) -> None:
        with self.tx() as db:
            db.execute("UPDATE outbox SET attempts = attempts + 1, next_at = ? WHERE seq = ?", (next_at, seq))
