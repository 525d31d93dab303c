"""Load and crash test of `kinema serve` on loopback: N submissions from C concurrent clients, a kill -9 of
the server in the middle, and a count of what came out. Bounded in count (--n) and time (--deadline).

    OMP_NUM_THREADS=1 PYTHONPATH=src python benchmarks/serve_load.py            # 200 jobs, 20 clients
    OMP_NUM_THREADS=1 PYTHONPATH=src python benchmarks/serve_load.py --n 40 --no-kill

The server runs the debug model (tests/conftest.make_debug_model, random weights) at one sampling step, so
the numbers measure the service (queue, database, workers, files), not the model. Every submission carries
an Idempotency-Key and is retried on a connection error, so a request cut by the kill is neither lost nor
doubled. Checked at the end: as many distinct ids as submissions, as many rows in the database, all
completed; jobs that were running at the kill were re-run (attempts 2).
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def start(args: argparse.Namespace, data: Path, model: Path, port: int, log: Path) -> subprocess.Popen:
    env = os.environ | {"PYTHONPATH": str(ROOT / "src"), "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "kinema", "serve", "--data-dir", str(data), "--model", str(model)]
    cmd += ["--port", str(port), "--workers", str(args.workers), "--default-steps", str(args.steps)]
    cmd += ["--max-active-jobs", str(args.n), "--submit-burst", str(args.n), "--submit-rate", "1000"]
    cmd += ["--request-rate", "10000"]
    with open(log, "ab") as out:
        proc = subprocess.Popen(cmd, env=env, stdout=out, stderr=out)
    end = time.time() + 300
    while time.time() < end:
        if proc.poll() is not None:
            sys.exit(f"server exited:\n{log.read_text()[-2000:]}")
        try:
            health = httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2).json()
            if health["ready"] == args.workers:
                return proc
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    proc.kill()
    sys.exit("server did not become ready in 300 s")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=200, help="submissions")
    ap.add_argument("--clients", type=int, default=20, help="concurrent clients")
    ap.add_argument("--workers", type=int, default=1, help="generation worker processes")
    ap.add_argument("--steps", type=int, default=1, help="sampling steps per video")
    ap.add_argument("--no-kill", action="store_true", help="no kill -9 in the middle")
    ap.add_argument("--deadline", type=float, default=1200, help="seconds for the whole run")
    args = ap.parse_args()
    from kinema.server.auth import create_key
    from kinema.server.jobs import Store
    from tests.conftest import make_debug_model

    t_start = time.time()
    load_start = os.getloadavg()[0]
    tmp = Path(tempfile.mkdtemp(prefix="serve_load_"))
    (tmp / "model").mkdir()
    model = make_debug_model(tmp / "model")
    data, log = tmp / "data", tmp / "server.log"
    key = create_key(Store(data / "kinema.db"), "load")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    base = f"http://127.0.0.1:{port}/v1"
    server = start(args, data, model, port, log)
    print(f"server ready in {time.time() - t_start:.1f} s; data in {data}")

    latencies: list[float] = []
    retries = [0]
    ids: list[str] = []
    lock = threading.Lock()
    done_count = [0]
    killed = threading.Event()
    restart_s = [0.0]
    deadline = t_start + args.deadline

    def submit(i: int, http: httpx.Client) -> None:
        idem = str(uuid.uuid4())
        body = {"prompt": f"a red circle falls and bounces {i}", "seconds": "1", "seed": i}
        while time.time() < deadline:
            t = time.perf_counter()
            try:
                r = http.post(f"{base}/videos", json=body, headers={"Idempotency-Key": idem})
            except httpx.HTTPError:
                with lock:
                    retries[0] += 1
                time.sleep(0.2)
                continue
            if r.status_code >= 500 or r.status_code == 429:
                with lock:
                    retries[0] += 1
                time.sleep(0.2)
                continue
            r.raise_for_status()
            with lock:
                latencies.append(time.perf_counter() - t)
                ids.append(r.json()["id"])
                done_count[0] += 1
            return
        raise TimeoutError("deadline passed while submitting")

    def killer() -> None:
        nonlocal server
        while done_count[0] < args.n // 2 and time.time() < deadline:
            time.sleep(0.01)
        t = time.time()
        server.send_signal(signal.SIGKILL)
        server.wait()
        killed.set()
        server = start(args, data, model, port, log)
        restart_s[0] = time.time() - t

    clients = [httpx.Client(timeout=30, headers={"Authorization": f"Bearer {key}"}) for _ in range(args.clients)]
    kill_thread = None if args.no_kill else threading.Thread(target=killer, daemon=True)
    if kill_thread:
        kill_thread.start()
    t_submit = time.time()
    with ThreadPoolExecutor(args.clients) as pool:
        list(pool.map(lambda i: submit(i, clients[i % args.clients]), range(args.n)))
    submit_wall = time.time() - t_submit
    if kill_thread:
        kill_thread.join(max(1.0, deadline - time.time()))

    http = clients[0]
    statuses: dict[str, str] = {}
    while time.time() < deadline:
        statuses.clear()
        after = None
        while True:
            page = http.get(
                f"{base}/videos", params={"limit": 100, "order": "asc"} | ({"after": after} if after else {})
            )
            page = page.json()
            statuses.update({v["id"]: v["status"] for v in page["data"]})
            after = page["last_id"]
            if not page["has_more"]:
                break
        if all(s in ("completed", "failed") for s in statuses.values()) and len(statuses) >= len(set(ids)):
            break
        time.sleep(1)
    with sqlite3.connect(data / "kinema.db") as db:
        rows = db.execute("SELECT status, attempts, created_at, started_at, completed_at FROM videos").fetchall()
    server.send_signal(signal.SIGTERM)
    server.wait(30)

    completed = [r for r in rows if r[0] == "completed"]
    first_start = min(r[3] for r in completed) if completed else 0
    last_done = max(r[4] for r in completed) if completed else 0
    lat = sorted(latencies)
    p = lambda q: 1000 * lat[min(len(lat) - 1, int(q * len(lat)))]
    table = [
        ("submissions", args.n),
        ("concurrent clients", args.clients),
        ("worker processes", args.workers),
        ("distinct ids returned", len(set(ids))),
        ("duplicated ids", len(ids) - len(set(ids))),
        ("rows in the database", len(rows)),
        ("lost (submitted, no row)", len(set(ids) - set(statuses))),
        ("completed", len(completed)),
        ("failed", sum(r[0] == "failed" for r in rows)),
        ("re-run after the kill (attempts 2)", sum(r[1] >= 2 for r in rows)),
        ("client retries (connection refused during restart)", retries[0]),
        ("server kill -9 + restart to ready (s)", f"{restart_s[0]:.1f}" if kill_thread else "no kill"),
        ("submit latency p50 (ms)", f"{p(0.50):.1f}"),
        ("submit latency p99 (ms)", f"{p(0.99):.1f}"),
        ("submissions per second", f"{args.n / submit_wall:.1f}"),
        (
            "jobs per minute (first start to last completion)",
            f"{60 * len(completed) / max(1, last_done - first_start):.1f}",
        ),
        ("whole run (s)", f"{time.time() - t_start:.1f}"),
        (
            "load average (1 min) at start / end, cores",
            f"{load_start:.1f} / {os.getloadavg()[0]:.1f}, {os.cpu_count()}",
        ),
    ]
    print(f"\ncommand: {' '.join([os.path.basename(sys.executable), *sys.argv])}")
    print("\n| measure | value |\n|---|---|")
    for k, v in table:
        print(f"| {k} | {v} |")
    ok = len(set(ids)) == args.n == len(rows) == len(completed) and len(ids) == args.n
    print("\nPASS: none lost, none duplicated, all completed" if ok else "\nFAIL: see the table")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
