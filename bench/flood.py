"""A flooding store against quiet stores: the quiet stores' burst p99 with and without the flood.

DESIGN §10 / issue 15: "a flooding store must not raise other stores' p99 by more than 2x". One real hub
process on SQLite (``cloud-hub serve``, delivery workers on, as deployed). Simulated stores
(:class:`storesync_harness.simstore.SimStore`) seal and sign every burst before the clock starts.

- **quiet stores** send their bursts one in flight each, paced like agents that have something to send
  (``--gap`` seconds between a store's bursts), from one sender process; every round trip is timed;
- **the flooding store** (own process, own enrolled key) sends its signed bursts in a loop over
  ``--flood-conns`` connections at once, never waiting for ``Retry-After`` (a broken or hostile agent);
  its first pass stores, every later pass is all duplicates.

Two runs on fresh hubs with the same prepared bursts: the baseline (quiet stores alone) and the flood
(quiet stores while the flooder runs the whole time). Figures: the quiet stores' p50/p99 in both, the
ratio of the p99s (target ≤ 2), the flooder's answers by status (the per-store limit answers 429 with
``Retry-After``) and the load average of each run. The sender processes share the machine's cores
with the hub; on a loaded machine the ratio moves with the load, so each run carries its load average.

    python bench/flood.py [--quiet 8] [--bursts 30] [--records 20] [--quick]
"""

from __future__ import annotations

import asyncio
import multiprocessing as mp
import os
import shutil
import sys
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import httpx

from measure import parser, print_figure, scratch
from peers import pct
from storesync_harness.processes import Hub
from storesync_harness.simstore import PreparedBurst, SimStore

TARGET_RATIO = 2.0


def _quiet(url: str, plan: list[list[PreparedBurst]], gap: float, go: Any, out: Any) -> None:
    async def one(client: httpx.AsyncClient, bursts: list[PreparedBurst], lat: list[float], bad: list[str]) -> None:
        for b in bursts:
            t0 = time.perf_counter()
            r = await client.post(url + "/v1/bursts", content=b.content, headers=b.headers)
            lat.append((time.perf_counter() - t0) * 1000)
            if r.status_code != 200:
                bad.append(f"{b.store_id} {b.first_seq}: {r.status_code} {r.text[:120]}")
            await asyncio.sleep(gap)

    async def run() -> dict[str, Any]:
        lat: list[float] = []
        bad: list[str] = []
        async with httpx.AsyncClient(timeout=60) as client:
            go.wait()
            await asyncio.gather(*(one(client, bursts, lat, bad) for bursts in plan))
        return {"lat": lat, "errors": bad}

    out.put(asyncio.run(run()))


def _flood(url: str, bursts: list[PreparedBurst], conns: int, go: Any, stop: Any, out: Any) -> None:
    async def worker(client: httpx.AsyncClient, start: int, codes: Counter[int], retry_after: list[str]) -> None:
        i = start
        while not stop.is_set():
            b = bursts[i % len(bursts)]
            i += 1
            try:
                r = await client.post(url + "/v1/bursts", content=b.content, headers=b.headers)
            except httpx.HTTPError:
                codes[0] += 1
                continue
            codes[r.status_code] += 1
            if r.status_code == 429 and len(retry_after) < 3:
                retry_after.append(r.headers.get("retry-after", ""))

    async def run() -> dict[str, Any]:
        codes: Counter[int] = Counter()
        retry_after: list[str] = []
        limits = httpx.Limits(max_connections=conns, max_keepalive_connections=conns)
        async with httpx.AsyncClient(timeout=60, limits=limits) as client:
            go.wait()
            t0 = time.monotonic()
            await asyncio.gather(*(worker(client, k, codes, retry_after) for k in range(conns)))
            elapsed = time.monotonic() - t0
        return {"codes": dict(codes), "retry_after": retry_after, "seconds": elapsed}

    out.put(asyncio.run(run()))


def _stores(n_quiet: int, bursts: int, records: int) -> tuple[list[SimStore], SimStore]:
    quiet = []
    for i in range(n_quiet):
        s = SimStore(f"Q{i + 1:03d}", registers=2, seed=i)
        s.epoch = 1  # a fresh hub gives every first enrollment epoch 1: the same bursts serve both runs
        s.seal(bursts * records)
        quiet.append(s)
    flooder = SimStore("FLOOD", registers=2, seed=999)
    flooder.epoch = 1
    flooder.seal(bursts * records)
    return quiet, flooder


def run_once(
    root: Path,
    quiet: list[SimStore],
    flooder: SimStore | None,
    records: int,
    gap: float,
    conns: int,
    settle_s: float = 1.0,
) -> dict[str, Any]:
    """One fresh hub; the quiet stores' bursts, with the flooder running alongside when given.

    ``settle_s``: the wait for the sender processes to be up, and for the flood to be on, before timing starts.
    """
    work = root / f"flood-{uuid.uuid4().hex[:8]}"
    hub = Hub.create(work / "hub", None, "--log-level", "warning")
    hub.env = {"CLOUD_HUB_RATE_ENROLL_BURST": "1000", "CLOUD_HUB_RATE_ENROLL_PER_MIN": "6000"}  # one source
    hub.start(60)
    try:
        with httpx.Client(timeout=30) as client:
            for s in [*quiet, *([flooder] if flooder else [])]:
                s.enroll(hub.url, hub.add_store(s.store_id), client)
                assert s.epoch == 1, (s.store_id, s.epoch)
        ctx = mp.get_context("fork")
        go, stop, q_out, f_out = ctx.Event(), ctx.Event(), ctx.Queue(), ctx.Queue()
        plan = [s.bursts(records) for s in quiet]
        sender = ctx.Process(target=_quiet, args=(hub.url, plan, gap, go, q_out))
        flood = None
        if flooder is not None:
            flood = ctx.Process(target=_flood, args=(hub.url, flooder.bursts(records), conns, go, stop, f_out))
            flood.start()
        sender.start()
        time.sleep(settle_s)
        load_before = os.getloadavg()[0]
        go.set()
        if flood is not None:
            time.sleep(settle_s)  # the flood is on before the quiet stores' first burst is timed
        result = q_out.get(timeout=900)
        stop.set()
        flooded = f_out.get(timeout=120) if flood is not None else None
        sender.join(30)
        if flood is not None:
            flood.join(30)
        load_after = os.getloadavg()[0]
    finally:
        hub.stop()
        shutil.rmtree(work, ignore_errors=True)
    lat = result["lat"]
    return {
        "bursts": len(lat), "errors": len(result["errors"]), "error_samples": result["errors"][:3],
        "p50_ms": round(pct(lat, 50), 1), "p99_ms": round(pct(lat, 99), 1), "max_ms": round(max(lat, default=0), 1),
        "flood": flooded, "load_avg_1m_before": round(load_before, 2), "load_avg_1m": round(load_after, 2),
    }  # fmt: skip


def bench_flood(
    root: Path,
    emit: Any,
    *,
    quiet: int = 8,
    bursts: int = 30,
    records: int = 20,
    gap: float = 0.05,
    conns: int = 8,
    settle_s: float = 1.0,
) -> dict[str, Any]:
    """Baseline run, then the flooded run; one figure to ``emit``."""
    stores, flooder = _stores(quiet, bursts, records)
    base = run_once(root, stores, None, records, gap, conns, settle_s)
    flooded = run_once(root, stores, flooder, records, gap, conns, settle_s)
    codes = (flooded["flood"] or {}).get("codes", {})
    ratio = round(flooded["p99_ms"] / base["p99_ms"], 2) if base["p99_ms"] else None
    figure = {
        "bench": "flood", "quiet_stores": quiet, "bursts_per_store": bursts, "records_per_burst": records,
        "gap_s": gap, "flood_connections": conns,
        "quiet_p50_ms": flooded["p50_ms"], "quiet_p99_ms": flooded["p99_ms"], "quiet_max_ms": flooded["max_ms"],
        "quiet_errors": flooded["errors"], "error_samples": flooded["error_samples"] + base["error_samples"],
        "p99_ratio": ratio, "target_p99_ratio": TARGET_RATIO,
        "meets_target": ratio is not None and ratio <= TARGET_RATIO and flooded["errors"] == 0 == base["errors"],
        "flood_answers": {str(k): v for k, v in sorted(codes.items())},
        "flood_requests_per_s": round(sum(codes.values()) / flooded["flood"]["seconds"], 1) if codes else 0,
        "flood_retry_after": (flooded["flood"] or {}).get("retry_after", []),
        "baseline": {"what": "the same quiet stores and bursts, no flood, fresh hub, this run",
                     "p50_ms": base["p50_ms"], "p99_ms": base["p99_ms"], "errors": base["errors"],
                     "load_avg_1m": base["load_avg_1m"]},
        "load_avg_1m": flooded["load_avg_1m"], "load_avg_1m_before": flooded["load_avg_1m_before"],
        "cores": os.cpu_count(),
    }  # fmt: skip
    emit(figure)
    return figure


def table_line(f: dict[str, Any]) -> str:
    b = f["baseline"]
    verdict = "MEETS" if f["meets_target"] else "MISSES"
    return (
        f"flood     {f['quiet_stores']} quiet stores × {f['bursts_per_store']} bursts: p99 {b['p99_ms']} ms alone "
        f"(load {b['load_avg_1m']}) → {f['quiet_p99_ms']} ms beside a flooding store (load {f['load_avg_1m']}), "
        f"ratio {f['p99_ratio']}× (target ≤ {f['target_p99_ratio']}) {verdict}; flooder {f['flood_requests_per_s']} "
        f"req/s answered {f['flood_answers']}; quiet errors {f['quiet_errors']}"
    )


def main(argv: list[str] | None = None) -> int:
    ap = parser(__doc__)
    ap.add_argument("--quiet", type=int, default=8, help="quiet stores")
    ap.add_argument("--bursts", type=int, default=30, help="bursts per quiet store")
    ap.add_argument("--records", type=int, default=20, help="records per burst")
    ap.add_argument("--gap", type=float, default=0.05, help="seconds between one quiet store's bursts")
    ap.add_argument("--flood-conns", type=int, default=8, help="connections the flooder keeps busy")
    ap.add_argument("--quick", action="store_true", help="3 quiet stores × 8 bursts of 5 records")
    args = ap.parse_args(argv)
    if args.quick:
        args.quiet, args.bursts, args.records = 3, 8, 5
    with scratch("storesync-flood-") as root:
        f = bench_flood(root, print_figure, quiet=args.quiet, bursts=args.bursts, records=args.records,
                        gap=args.gap, conns=args.flood_conns)  # fmt: skip
    print(table_line(f), file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
