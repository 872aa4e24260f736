"""`make bench`: StoreSync benchmarks against real hub and agent processes on loopback.

Prints a table for people and one JSON object per figure for tools. Each figure that has a baseline
measures it in the same run, so ratios hold on a noisy machine.

    python bench/run.py [capture] [catchup] [drops] [delivery] [fleet] [--records N] [--naive-records N]
        [--capture-txns N] [--fleet-stores N] [--fleet-records N] [--fleet-burst N]
"""

from __future__ import annotations

import argparse
import http.client
import json
import multiprocessing as mp
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from storesync_harness.pos import Pos
from storesync_harness.processes import Agent, Hub, agent_cli
from sync_protocol import keys
from sync_protocol.httpsig import sign_request

RESULTS: list[dict[str, Any]] = []


def emit(figure: dict[str, Any]) -> None:
    RESULTS.append(figure)
    print(json.dumps(figure), flush=True)


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(p / 100 * (len(ordered) - 1))))]


# --------------------------------------------------------------------------- capture


def _pos_client(port: int, register: str, n: int, out: Any) -> None:
    pos = Pos(register, seed=11)
    payloads = [json.dumps(pos.sale()).encode() for _ in range(n)]
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    lat = []
    errors = 0
    for body in payloads:
        t0 = time.perf_counter()
        conn.request("POST", "/v1/transactions", body, {"Content-Type": "application/json"})
        resp = conn.getresponse()
        resp.read()
        lat.append(time.perf_counter() - t0)
        errors += resp.status != 201
    conn.close()
    out.put((lat, errors))


def bench_capture(root: Path, txns: int, clients: int = 4) -> None:
    hub = Hub.create(root / "hub").start()
    try:
        agent = Agent.enrolled(root / "cap-agent", hub, "CAP").start()
    finally:
        hub.stop()  # capture must not depend on the hub; the agent keeps capturing offline
    try:
        per = txns // clients
        q: Any = mp.Queue()
        procs = [mp.Process(target=_pos_client, args=(agent.port, f"B{i}", per, q)) for i in range(clients)]
        t0 = time.perf_counter()
        for p in procs:
            p.start()
        results = [q.get(timeout=600) for _ in procs]
        wall = time.perf_counter() - t0
        for p in procs:
            p.join()
        lat = [x * 1000 for r in results for x in r[0]]
        errors = sum(r[1] for r in results)
        emit({
            "bench": "capture", "clients": clients, "transactions": len(lat), "errors": errors,
            "median_ms": round(statistics.median(lat), 3), "p99_ms": round(pct(lat, 99), 3),
            "max_ms": round(max(lat), 3), "tx_per_s": round(len(lat) / wall, 1),
            "target_p99_ms": 10, "target_tx_per_s": 1000,
        })  # fmt: skip
        st = agent.status()
        assert st["last_seq"] == len(lat) - errors, st
    finally:
        agent.stop()
        hub.stop()


# --------------------------------------------------------------------------- catch-up


def _backlog(agent: Agent, n: int) -> None:
    """Capture n transactions straight into the outbox (the agent was offline for a long time)."""
    regs = [Pos(f"R{i}", seed=5) for i in range(4)]
    chunk = 20_000
    done = 0
    while done < n:
        m = min(chunk, n - done)
        lines = "\n".join(json.dumps(regs[(done + i) % 4].sale()) for i in range(m))
        agent_cli("capture", "--data-dir", str(agent.data_dir), "-", input=lines)
        done += m
        print(f"  backlog {done}/{n}", file=sys.stderr, flush=True)


def _naive(hub: Hub, agent: Agent, n: int) -> float:
    """One record per signed POST, sequential, keep-alive: what a simple client would do."""
    import sqlite3

    con = sqlite3.connect(agent.data_dir / "outbox.db")
    rows = con.execute("SELECT seq, body, chain, sig FROM outbox ORDER BY seq LIMIT ?", (n,)).fetchall()
    con.close()
    store = json.loads(rows[0][1])["store_id"]
    key = keys.load_private_key(agent.data_dir / "agent.key")
    kid = keys.key_id(key)
    t0 = time.perf_counter()
    with httpx.Client(timeout=30) as client:
        for seq, body, chain, sig in rows:
            payload = json.dumps({
                "store_id": store, "epoch": 1, "first_seq": seq, "sent_at": "2026-11-22T00:00:00.000+00:00",
                "records": [{"seq": seq, "body": body, "chain": bytes(chain).hex(), "sig": bytes(sig).hex()}],
            }).encode()  # fmt: skip
            headers = sign_request("POST", "/v1/bursts", payload, key, kid)
            headers["Content-Type"] = "application/json"
            r = client.post(hub.url + "/v1/bursts", content=payload, headers=headers)
            if r.status_code != 200:
                raise RuntimeError(f"naive client got {r.status_code}: {r.text}")
    return len(rows) / (time.perf_counter() - t0)


def bench_catchup(root: Path, records: int, naive_records: int) -> None:
    hub = Hub.create(root / "hub2").start()
    try:
        fast = Agent.enrolled(root / "fast-agent", hub, "FAST")
        naive = Agent.enrolled(root / "naive-agent", hub, "NAIVE")
        print(f"building a {records}-record backlog ...", file=sys.stderr, flush=True)
        _backlog(fast, records)
        _backlog(naive, naive_records)

        # The baseline first, on an idle hub: measured after the catch-up it would share the hub with
        # the forwarding of the 100,000 events the catch-up produced.
        naive_rate = _naive(hub, naive, naive_records)
        t0 = time.perf_counter()
        agent_cli("sync", "--data-dir", str(fast.data_dir), "--until-synced", "--timeout", "900")
        wall = time.perf_counter() - t0
        st = fast.status()
        assert st["acked_through"] == records and st["pending"] == 0, st
        assert len(hub.ledger("FAST")) == records
        rate = records / wall
        emit({
            "bench": "catchup", "records": records, "seconds": round(wall, 2), "records_per_s": round(rate, 1),
            "naive_records": naive_records, "naive_records_per_s": round(naive_rate, 1),
            "ratio_vs_naive": round(rate / naive_rate, 1), "target_records_per_s": 20000, "target_ratio": 20,
        })  # fmt: skip
    finally:
        hub.stop()


def table() -> None:
    print("\n=== StoreSync benchmarks ===")
    for f in RESULTS:
        if f["bench"] == "capture":
            print(
                f"capture   {f['transactions']} tx, {f['clients']} POS clients: median {f['median_ms']} ms, "
                f"p99 {f['p99_ms']} ms (target ≤ 10), {f['tx_per_s']} tx/s (target ≥ 1000), errors {f['errors']}"
            )
        elif f["bench"] == "catchup":
            print(
                f"catch-up  {f['records']} records in {f['seconds']} s: {f['records_per_s']} records/s "
                f"(target ≥ 20000); naive one-per-request {f['naive_records_per_s']} records/s; "
                f"ratio {f['ratio_vs_naive']}× (target ≥ 20×)"
            )
        elif f["bench"] == "drops":
            from drops import table_line

            print(table_line(f))
        elif f["bench"] == "delivery":
            from delivery import table_line as delivery_line

            print(delivery_line(f))
        elif f["bench"] == "fleet":
            from fleet import table_line as fleet_line

            print(fleet_line(f))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    benches = ["capture", "catchup", "delivery", "drops", "fleet"]
    ap.add_argument("which", nargs="*", help=f"benchmarks to run: {', '.join(benches)} (default: all)")
    ap.add_argument("--delivery-events", type=int, default=100_000)
    ap.add_argument("--records", type=int, default=100_000)
    ap.add_argument("--naive-records", type=int, default=3_000)
    ap.add_argument("--capture-txns", type=int, default=8_000)
    ap.add_argument("--drop-rows", type=int, default=1_000_000, help="rows of the JSONL drop file")
    ap.add_argument("--drop-orders", type=int, default=200_000, help="orders of the Shopify export")
    ap.add_argument("--fleet-stores", type=int, default=200, help="simulated stores of the fleet benchmark")
    ap.add_argument("--fleet-records", type=int, default=500, help="records per store of the fleet benchmark")
    ap.add_argument("--fleet-burst", type=int, default=100, help="records per burst of the fleet benchmark")
    ap.add_argument("--keep", action="store_true", help="keep the data folder")
    args = ap.parse_args()
    unknown = sorted(set(args.which) - set(benches))
    if unknown:
        ap.error(f"unknown benchmark {', '.join(unknown)}; choose from {', '.join(benches)}")
    args.which = args.which or benches
    root = Path(tempfile.mkdtemp(prefix="storesync-bench-"))
    try:
        if "capture" in args.which:
            bench_capture(root, args.capture_txns)
        if "catchup" in args.which:
            bench_catchup(root, args.records, args.naive_records)
        if "drops" in args.which:
            from drops import bench_drops

            bench_drops(root, args.drop_rows, args.drop_orders, 2, emit)
        if "delivery" in args.which:
            from delivery import bench_delivery

            bench_delivery(root, args.delivery_events, ["nats", "webhook"], emit)
        if "fleet" in args.which:
            from fleet import bench_fleet

            bench_fleet(root, emit, stores=args.fleet_stores, records=args.fleet_records, burst=args.fleet_burst)
    finally:
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)
    table()
    return 0


if __name__ == "__main__":
    sys.exit(main())
