"""What capture is measured against, in the same run: a peer and a ceiling.

- The **peer**: the same sale JSON published by 4 clients to a NATS JetStream *file* stream on the
  local server (what a team might run in each store instead of an outbox). Each publish waits for the
  stream's ack; JetStream does not fsync per message by default, so this is a peer, not a limit.
- The **ceiling**: SQLite single-row commits/s with ``journal_mode=WAL`` and ``synchronous=FULL`` (one
  fsync per commit), on the same file system as the agent's outbox. Capture batches several POS
  requests into one commit (group commit), so it may pass this figure; without batching it could not.

    python bench/peers.py [--messages 4000] [--clients 4]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing as mp
import sqlite3
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from storesync_harness.pos import Pos

NATS_URL = "nats://127.0.0.1:4222"


def pct(values: list[float], p: float) -> float:
    """The ``p``-th percentile (nearest rank) of ``values``; 0.0 for none."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(p / 100 * (len(ordered) - 1))))] if ordered else 0.0


def sale_payloads(register: str, n: int) -> list[bytes]:
    """The sale JSON the capture benchmark's POS client ``register`` posts (same generator and seed)."""
    pos = Pos(register, seed=11)
    return [json.dumps(pos.sale()).encode() for _ in range(n)]


async def _publish(subject: str, payloads: list[bytes], go: Any) -> tuple[list[float], int, float, float]:
    import nats

    nc = await nats.connect(NATS_URL)
    js = nc.jetstream()
    lat: list[float] = []
    errors = 0
    go.wait()
    start = time.perf_counter()
    try:
        for body in payloads:
            t0 = time.perf_counter()
            try:
                await js.publish(subject, body, timeout=10)
            except Exception:  # noqa: BLE001 - counted, like a non-201 answer of the agent
                errors += 1
            lat.append(time.perf_counter() - t0)
        end = time.perf_counter()
    finally:
        await nc.close()
    return lat, errors, start, end


def _nats_client(subject: str, register: str, n: int, go: Any, out: Any) -> None:
    payloads = sale_payloads(register, n)
    out.put(asyncio.run(_publish(subject, payloads, go)))


def run_clients(target: Any, args: list[tuple[Any, ...]]) -> tuple[list[float], int, float]:
    """Start one process per args tuple, let them set up, release them together.

    Each process calls ``target(*args, go, out)``, waits on the barrier ``go`` and puts
    ``(latencies, errors, start, end)``; the wall time is from the first start to the last end
    (process start-up and payload generation are not counted). Returns every latency, the errors and the wall seconds.
    """
    q: Any = mp.Queue()
    go = mp.Barrier(len(args) + 1)
    procs = [mp.Process(target=target, args=(*a, go, q)) for a in args]
    for p in procs:
        p.start()
    go.wait(timeout=120)  # every client connected and has its payloads
    results = [q.get(timeout=600) for _ in procs]
    for p in procs:
        p.join()
    wall = max(r[3] for r in results) - min(r[2] for r in results)
    return [x for r in results for x in r[0]], sum(r[1] for r in results), wall


async def _stream(name: str, subjects: list[str] | None) -> None:
    import nats
    from nats.js.api import StorageType, StreamConfig

    nc = await nats.connect(NATS_URL)
    js = nc.jetstream()
    try:
        if subjects is None:
            try:
                await js.delete_stream(name)
            except Exception:  # noqa: BLE001 - may not exist
                pass
        else:
            await js.add_stream(StreamConfig(name=name, subjects=subjects, storage=StorageType.FILE))
    finally:
        await nc.close()


def nats_peer(messages: int, clients: int = 4) -> dict[str, Any]:
    """4 processes publish the capture sales to a fresh JetStream file stream; the stream is deleted after."""
    tag = uuid.uuid4().hex[:10]
    name, subject = f"BENCH_CAPTURE_{tag}", f"benchcap{tag}"
    asyncio.run(_stream(name, [f"{subject}.>"]))
    try:
        per = messages // clients
        lat, errors, wall = run_clients(_nats_client, [(f"{subject}.B{i}", f"B{i}", per) for i in range(clients)])
    finally:
        asyncio.run(_stream(name, None))
    lat = [x * 1000 for x in lat]
    return {
        "clients": clients, "messages": len(lat), "errors": errors,
        "median_ms": round(statistics.median(lat), 3), "p99_ms": round(pct(lat, 99), 3),
        "msg_per_s": round(len(lat) / wall, 1), "storage": "file", "fsync_per_message": False,
    }  # fmt: skip


def sqlite_fsync_ceiling(folder: Path, seconds: float = 2.0, row_bytes: int = 600) -> dict[str, Any]:
    """Single-row commits/s, WAL + ``synchronous=FULL``, one connection (the agent's outbox settings)."""
    path = folder / f"fsync-ceiling-{uuid.uuid4().hex[:8]}.db"
    con = sqlite3.connect(path, isolation_level=None)
    try:
        con.execute("PRAGMA journal_mode=WAL")
        con.execute("PRAGMA synchronous=FULL")
        con.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, body TEXT NOT NULL)")
        body = "x" * row_bytes
        n = 0
        lat: list[float] = []
        t0 = time.perf_counter()
        while True:
            t1 = time.perf_counter()
            con.execute("BEGIN IMMEDIATE")
            con.execute("INSERT INTO t (body) VALUES (?)", (body,))
            con.execute("COMMIT")
            lat.append(time.perf_counter() - t1)
            n += 1
            if n % 50 == 0 and time.perf_counter() - t0 >= seconds:
                break
        wall = time.perf_counter() - t0
    finally:
        con.close()
        for suffix in ("", "-wal", "-shm"):
            Path(str(path) + suffix).unlink(missing_ok=True)
    lat.sort()
    return {
        "commits": n,
        "commits_per_s": round(n / wall, 1),
        # One commit is the floor of one capture's latency: its p99 is the floor of capture's p99.
        "commit_p50_ms": round(lat[len(lat) // 2] * 1000, 3),
        "commit_p99_ms": round(lat[min(len(lat) - 1, int(len(lat) * 0.99))] * 1000, 3),
        "journal_mode": "wal",
        "synchronous": "full",
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--messages", type=int, default=4_000)
    ap.add_argument("--clients", type=int, default=4)
    args = ap.parse_args()
    print(json.dumps({"bench": "capture_peer_nats", **nats_peer(args.messages, args.clients)}), flush=True)
    with tempfile.TemporaryDirectory(prefix="bench-peers-") as tmp:
        print(json.dumps({"bench": "ceiling_sqlite_fsync", **sqlite_fsync_ceiling(Path(tmp))}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
