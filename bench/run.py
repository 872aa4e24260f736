"""`make bench`: StoreSync benchmarks against real hub and agent processes on loopback.

Prints a table for people and one JSON object per figure for tools. Each figure that has a baseline
measures it in the same run, so ratios hold on a noisy machine.

    python bench/run.py [ceilings] [capture] [catchup] [backlog] [drops] [delivery] [fleet] [flood] [--quick] ...

Every figure carries its target (``target_*``), its baseline (``baseline``: a peer, a ceiling or a
naive client, measured in this run) and the 1-minute load average while it was measured.
``--quick`` runs every benchmark with tiny counts (tests/bench/test_bench_quick.py does, so they cannot rot).
"""

from __future__ import annotations

import http.client
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import backlog
import catchup
import ceilings
import delivery
import drops
import fleet
import flood
from measure import parser, print_figure, rss_mb, sampled, scratch
from peers import nats_peer, pct, run_clients, sale_payloads, sqlite_fsync_ceiling
from storesync_harness.processes import Agent, Hub

RESULTS: list[dict[str, Any]] = []


def emit(figure: dict[str, Any]) -> None:
    RESULTS.append(figure)
    print_figure(figure)


# --------------------------------------------------------------------------- capture


def _pos_client(port: int, register: str, n: int, go: Any, out: Any) -> None:
    payloads = sale_payloads(register, n)
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    lat = []
    errors = 0
    go.wait()
    start = time.perf_counter()
    for body in payloads:
        t0 = time.perf_counter()
        conn.request("POST", "/v1/transactions", body, {"Content-Type": "application/json"})
        resp = conn.getresponse()
        resp.read()
        lat.append(time.perf_counter() - t0)
        errors += resp.status != 201
    end = time.perf_counter()
    conn.close()
    out.put((lat, errors, start, end))


def bench_capture(root: Path, txns: int, clients: int = 4, peer: bool = True, fsync_s: float = 2.0) -> None:
    """Capture by 4 POS clients, beside the NATS peer and the SQLite fsync ceiling measured in this run."""
    hub = Hub.create(root / "hub").start()
    try:
        agent = Agent.enrolled(root / "cap-agent", hub, "CAP").start()
    finally:
        hub.stop()  # capture must not depend on the hub; the agent keeps capturing offline
    try:
        assert agent.proc is not None
        per = txns // clients
        with sampled(agent=agent.proc.pid) as s:
            lat, errors, wall = run_clients(_pos_client, [(agent.port, f"B{i}", per) for i in range(clients)])
        agent_peak = rss_mb(agent.proc.pid, "VmHWM")
        st = agent.status()
        assert st["last_seq"] == len(lat) - errors, st
    finally:
        agent.stop()
        hub.stop()
    lat = [x * 1000 for x in lat]
    tx_per_s = len(lat) / wall
    with sampled() as s_base:
        nats = nats_peer(txns, clients) if peer else None
        fsync = sqlite_fsync_ceiling(root, seconds=fsync_s)
    commit_p99 = fsync["commit_p99_ms"]
    emit({
        "bench": "capture", "clients": clients, "transactions": len(lat), "errors": errors,
        "median_ms": round(statistics.median(lat), 3), "p99_ms": round(pct(lat, 99), 3),
        "max_ms": round(max(lat), 3), "tx_per_s": round(tx_per_s, 1),
        "target_p99_ms": 10, "target_tx_per_s": 1000,
        "baseline": {"peer_nats_jetstream_file": nats, "ceiling_sqlite_fsync": fsync},
        "ratio_vs_nats": round(tx_per_s / nats["msg_per_s"], 2) if nats else None,
        "p99_ratio_vs_nats": round(pct(lat, 99) / nats["p99_ms"], 2) if nats else None,
        "ratio_vs_fsync_commits": round(tx_per_s / fsync["commits_per_s"], 2),
        "p99_ratio_vs_fsync_commit": round(pct(lat, 99) / commit_p99, 2) if commit_p99 else None,
        "rss_mb": {"agent": s.rss_max_mb().get("agent"), "agent_peak": agent_peak},
        "load_avg_1m": s.load_avg(), "baseline_load_avg_1m": s_base.load_avg(),
    })  # fmt: skip


def capture_line(f: dict[str, Any]) -> str:
    nats, fsync = f["baseline"]["peer_nats_jetstream_file"], f["baseline"]["ceiling_sqlite_fsync"]
    peer = (
        f"; NATS JetStream file stream {nats['msg_per_s']} msg/s p99 {nats['p99_ms']} ms (ratio {f['ratio_vs_nats']}×)"
        if nats
        else ""
    )
    return (
        f"capture   {f['transactions']} tx, {f['clients']} POS clients: median {f['median_ms']} ms, "
        f"p99 {f['p99_ms']} ms (target ≤ 10), {f['tx_per_s']} tx/s (target ≥ 1000), errors {f['errors']}{peer}; "
        f"SQLite fsync'd commits {fsync['commits_per_s']}/s (ratio {f['ratio_vs_fsync_commits']}×), "
        f"one commit p99 {fsync['commit_p99_ms']} ms (capture p99 ÷ that {f['p99_ratio_vs_fsync_commit']}×); "
        f"agent RSS {f['rss_mb']['agent']} MB; load {f['load_avg_1m']}"
    )


def table() -> None:
    print("\n=== StoreSync benchmarks ===")
    for f in RESULTS:
        if f["bench"] == "capture":
            print(capture_line(f))
        elif f["bench"] == "catchup":
            print(catchup.table_line(f))
        elif f["bench"] == "backlog":
            print(backlog.table_line(f))
        elif f["bench"] == "ceiling":
            print(ceilings.table_line(f))
        elif f["bench"] == "drops":
            print(drops.table_line(f))
        elif f["bench"] == "delivery":
            print(delivery.table_line(f))
        elif f["bench"] == "fleet":
            print(fleet.table_line(f))
        elif f["bench"] == "flood":
            print(flood.table_line(f))


# The smallest counts that still run every code path of every benchmark (several bursts, both clients, every
# sink, every fleet scenario): tests/bench/test_bench_quick.py runs them so they cannot rot; no figure of a
# quick run means anything about speed.
QUICK = {
    "records": 600, "naive_records": 20, "capture_txns": 200, "backlog_records": 1_000, "drop_rows": 1_000,
    "drop_orders": 200, "delivery_events": 100, "fleet_stores": 2, "fleet_records": 20, "fleet_burst": 10,
    "flood_quiet": 1, "flood_bursts": 4, "sample_s": 0.3,
}  # fmt: skip


def main() -> int:
    ap = parser(__doc__)
    benches = ["ceilings", "capture", "catchup", "catchup-split", "backlog", "drops", "delivery", "fleet", "flood"]
    ap.add_argument("which", nargs="*", help=f"benchmarks to run: {', '.join(benches)} (default: all)")
    ap.add_argument("--quick", action="store_true", help="tiny counts: checks that every benchmark still runs")
    ap.add_argument("--delivery-events", type=int, default=100_000)
    ap.add_argument("--records", type=int, default=100_000, help="catch-up backlog of the burst client")
    ap.add_argument("--naive-records", type=int, default=3_000, help="records the naive client sends")
    ap.add_argument("--capture-txns", type=int, default=8_000)
    ap.add_argument("--backlog-records", type=int, default=1_000_000, help="pending records of the backlog agent")
    ap.add_argument("--drop-rows", type=int, default=1_000_000, help="rows of the JSONL drop file")
    ap.add_argument("--drop-orders", type=int, default=200_000, help="orders of the Shopify export")
    ap.add_argument("--fleet-stores", type=int, default=200, help="simulated stores of the fleet benchmark")
    ap.add_argument("--fleet-records", type=int, default=500, help="records per store of the fleet benchmark")
    ap.add_argument("--fleet-burst", type=int, default=100, help="records per burst of the fleet benchmark")
    ap.add_argument("--flood-quiet", type=int, default=8, help="quiet stores beside the flooding store")
    ap.add_argument("--flood-bursts", type=int, default=30, help="bursts per quiet store of the flood benchmark")
    ap.add_argument(
        "--sample-s", type=float, default=1.0, help="fixed sampling windows: ×2 fsync ceiling, ×5 idle capture"
    )
    ap.add_argument("--no-peer", action="store_true", help="skip the NATS peer (no NATS server on 127.0.0.1:4222)")
    ap.add_argument("--keep", action="store_true", help="keep the data folder")
    args = ap.parse_args()
    unknown = sorted(set(args.which) - set(benches))
    if unknown:
        ap.error(f"unknown benchmark {', '.join(unknown)}; choose from {', '.join(benches)}")
    args.which = args.which or benches
    if args.quick:
        for name, value in QUICK.items():
            setattr(args, name, value)
    with scratch("storesync-bench-", keep=args.keep) as root:
        if "ceilings" in args.which:
            ceilings.all_ceilings(root, emit, quick=args.quick)
        if "capture" in args.which:
            bench_capture(root, args.capture_txns, peer=not args.no_peer, fsync_s=min(2.0, args.sample_s * 2))
        if "catchup" in args.which:
            catchup.bench_catchup(root, args.records, args.naive_records, emit)
        if "catchup-split" in args.which:
            catchup.bench_catchup(root, args.records, args.naive_records, emit, split=True)
        if "backlog" in args.which:
            backlog.bench_backlog(root, args.backlog_records, emit, idle_s=args.sample_s * 5)
        if "drops" in args.which:
            drops.bench_drops(root, args.drop_rows, args.drop_orders, 2, emit)
        if "delivery" in args.which:
            sinks = ["webhook"] if args.no_peer else ["nats", "webhook"]
            delivery.bench_delivery(root, args.delivery_events, sinks, emit)
        if "fleet" in args.which:
            fleet.bench_fleet(root, emit, stores=args.fleet_stores, records=args.fleet_records, burst=args.fleet_burst)
        if "flood" in args.which:
            settle = min(1.0, args.sample_s)
            flood.bench_flood(root, emit, quiet=args.flood_quiet, bursts=args.flood_bursts, settle_s=settle)
    table()
    return 0


if __name__ == "__main__":
    sys.exit(main())
