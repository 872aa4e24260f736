"""Fleet ingest: many stores sending signed bursts at once to one hub on SQLite, one on PostgreSQL, two replicas.

Before the clock starts, every simulated store (:class:`storesync_harness.simstore.SimStore`) seals
its records (chain + Ed25519) and every burst is built, gzipped and signed. The stores are the same
in every scenario (a fresh database enrolls the same keys as epoch 1 again, so the same bursts are
valid). Per scenario: start the hub process(es), register and enroll the stores over HTTP, then a
sender process sends every store's bursts, one in flight per store, all stores at once (store ``i``
talks to replica ``i mod N``). Figures:

- ``records_per_s_stored``: records / (first burst sent → last burst answered 200);
- ``records_per_s_derived``: records / (first burst sent → no stored record without its events);
- ``burst_p50_ms`` / ``burst_p99_ms``: burst round trips as the stores saw them;
- ``hub_cpu_s_per_1k``: user+system CPU of the hub process(es) over the derived window, from
  ``/proc/PID/stat``, per 1,000 records;
- ``pg_cpu_s_per_1k``: the same for the PostgreSQL backends serving the hubs: the processes whose
  ``pg_stat_activity.application_name`` is this scenario's (the storage URL sets it), read from
  ``/proc`` before and after; ``pg_aux_cpu_s_per_1k``: the postmaster's other children (WAL writer,
  checkpointer, background writer, autovacuum), which also serve every other client of the server;
- ``sender_cpu_s``: the load generator's own CPU (it shares the 2 cores);
- ``errors``: answers other than 200 (a 429/503 is retried after its ``Retry-After``, as an agent
  does, and counted in ``retries_429_503`` instead), receipts that do not verify or do not match the
  store's chain, and stores whose ``acked_through`` is not their record count afterwards;
  ``records`` is what the hub stored, and the rates are computed from it.

The hubs run as deployed: delivery workers on, the default ``jsonl`` sink (the replicas share one file).

    python bench/fleet.py [--stores 200] [--records 500] [--burst 100] [--small] [--scenarios sqlite pg pg2]
"""

from __future__ import annotations

import asyncio
import multiprocessing as mp
import os
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import httpx

from cloud_hub import registry
from cloud_hub.storage import open_storage
from measure import parser, print_figure, scratch
from peers import pct
from storesync_harness.processes import Hub
from storesync_harness.simstore import PreparedBurst, SimStore
from sync_protocol import keys

PG_URL = os.environ.get("STORESYNC_BENCH_PG", "postgresql://postgres@127.0.0.1:5432/test")
SCENARIOS = ("sqlite", "pg", "pg2")
TARGETS = {"target_records_per_s_derived_pg": 10_000, "target_p99_ms": 500, "target_errors": 0}
TICK = os.sysconf("SC_CLK_TCK")


def cpu_s(pid: int) -> float:
    """User + system CPU seconds of one live process (0 when it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / TICK  # utime, stime (fields 14 and 15 of stat)


def _children(ppid: int) -> list[int]:
    out = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(stat[1]) == ppid:
                out.append(int(entry))
    return out


class PgCpu:
    """CPU of the PostgreSQL backends of one application_name, and of the postmaster's aux processes."""

    def __init__(self, app: str) -> None:
        import psycopg

        self.app = app
        self._conn = psycopg.connect(PG_URL, autocommit=True)
        self.postmaster = int(self._conn.execute("SELECT pg_backend_pid()").fetchone()[0])  # type: ignore[index]
        self.postmaster = int(Path(f"/proc/{self.postmaster}/stat").read_text().rsplit(")", 1)[1].split()[1])

    def backends(self) -> dict[int, float]:
        rows = self._conn.execute("SELECT pid FROM pg_stat_activity WHERE application_name = %s", (self.app,))
        return {int(r[0]): cpu_s(int(r[0])) for r in rows.fetchall()}

    def aux(self) -> float:
        mine = {
            int(r[0])
            for r in self._conn.execute("SELECT pid FROM pg_stat_activity WHERE backend_type = 'client backend'")
        }
        return sum(cpu_s(p) for p in _children(self.postmaster) if p not in mine)

    def close(self) -> None:
        self._conn.close()


def drop_schema(schema: str) -> None:
    import psycopg

    with psycopg.connect(PG_URL, autocommit=True) as conn:
        conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


# ----------------------------------------------------------------------------------------- sender


async def _send_store(
    client: httpx.AsyncClient, url: str, bursts: list[PreparedBurst], lat: list[float], answers: dict[str, Any]
) -> tuple[int, int]:
    """Send one store's bursts in order, one in flight, as an agent does: a 429/503 is retried after its
    ``Retry-After`` (capped at 2 s) and counted as a retry; anything else that is not a 200 is an error
    and ends this store's run (its later bursts would only be gaps). Latency is per burst, retries included."""
    errors = retries = 0
    last = b""
    for b in bursts:
        t0 = time.perf_counter()
        while True:
            try:
                r = await client.post(url + "/v1/bursts", content=b.content, headers=b.headers)
            except httpx.HTTPError as exc:
                r = None
                reason = f"{b.store_id}: {type(exc).__name__}"
            if r is not None and r.status_code in (429, 503):
                retries += 1
                try:
                    wait = float(r.headers.get("retry-after") or 0.2)
                except ValueError:
                    wait = 0.2
                await asyncio.sleep(min(2.0, max(0.05, wait)))
                continue
            break
        if r is None or r.status_code != 200:
            errors += 1
            if r is not None:
                reason = f"{b.store_id}: {r.status_code} {r.text[:200]}"
            answers.setdefault("_errors", []).append(reason)
            break
        lat.append((time.perf_counter() - t0) * 1000)
        last = r.content
    answers[bursts[0].store_id] = last
    return errors, retries


def _sender(plan: list[tuple[str, list[PreparedBurst]]], go: Any, out: Any) -> None:
    async def run() -> dict[str, Any]:
        lat: list[float] = []
        answers: dict[str, Any] = {}
        limits = httpx.Limits(max_connections=len(plan) + 8, max_keepalive_connections=len(plan) + 8)
        async with httpx.AsyncClient(timeout=httpx.Timeout(120.0, connect=30.0), limits=limits) as client:
            go.wait()
            t0 = time.monotonic()
            done = await asyncio.gather(*(_send_store(client, url, bursts, lat, answers) for url, bursts in plan))
            t1 = time.monotonic()
        errors, retries = sum(d[0] for d in done), sum(d[1] for d in done)
        return {"t0": t0, "t1": t1, "lat": lat, "errors": errors, "retries": retries, "answers": answers}

    result = asyncio.run(run())
    result["cpu"] = cpu_s(os.getpid())
    out.put(result)


# --------------------------------------------------------------------------------------- scenario


def prepare(n_stores: int, n_records: int, burst: int) -> list[tuple[SimStore, list[PreparedBurst]]]:
    stores = []
    for i in range(n_stores):
        s = SimStore(f"F{i + 1:04d}", registers=2, seed=i)
        s.epoch = 1  # a fresh database gives the first enrollment epoch 1: the same bursts serve every scenario
        s.seal(n_records)
        stores.append((s, s.bursts(burst)))
    return stores


def _forward_lag(url: str) -> int:
    storage = open_storage(url)
    try:
        with storage.snapshot() as tx:
            return sum(acked - derived for _s, _e, derived, acked in tx.forward_lag())
    finally:
        storage.close()


def run_scenario(
    name: str, root: Path, stores: list[tuple[SimStore, list[PreparedBurst]]], n_records: int, burst: int
) -> dict[str, Any]:
    replicas = 2 if name == "pg2" else 1
    tag = f"fleet_{name}_{uuid.uuid4().hex[:8]}"
    work = root / tag
    secrets = work / "secrets"
    secrets.mkdir(parents=True, mode=0o700)
    hub_key = keys.generate()
    keys.save_private_key(hub_key, secrets / "hub.key")
    token = secrets / "admin.token"
    fd = os.open(token, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    os.write(fd, uuid.uuid4().hex.encode())
    os.close(fd)
    sink_conf = work / "hub.toml"
    sink_conf.write_text(
        f'[[sinks]]\nname = "events"\nkind = "jsonl"\nrole = "archive"\npath = "{work / "events.jsonl"}"\n'
    )
    extra = ["--config", str(sink_conf), "--log-level", "warning",
             "--hub-key-file", str(secrets / "hub.key"), "--admin-token-file", str(token)]  # fmt: skip
    if name == "sqlite":
        url = f"sqlite:///{work / 'hub0' / 'hub.db'}"  # the default: hub.db in the data folder
    else:
        url = f"{PG_URL}?schema={tag}&application_name={tag}"
        extra += ["--database", url]
    hubs = [Hub.create(work / f"hub{i}", None, *extra) for i in range(replicas)]
    pg = PgCpu(tag) if name != "sqlite" else None
    try:
        for h in hubs:
            h.start(60)
        storage = open_storage(url)
        try:
            tokens = [registry.add_store(storage, s.store_id, "Europe/Berlin").token for s, _ in stores]
        finally:
            storage.close()
        with httpx.Client(timeout=30) as client:
            for i, ((s, _), tok) in enumerate(zip(stores, tokens, strict=True)):
                s.enroll(hubs[i % replicas].url, tok, client)
                assert s.epoch == 1 and s.hub_public_key == keys.public_hex(hub_key), (s.store_id, s.epoch)
        plan = [(hubs[i % replicas].url, bursts) for i, (_, bursts) in enumerate(stores)]
        ctx = mp.get_context("fork")
        go, out = ctx.Event(), ctx.Queue()
        sender = ctx.Process(target=_sender, args=(plan, go, out))
        sender.start()
        time.sleep(1.0)  # the sender is up with its client; nothing is sent before `go`
        load_before = os.getloadavg()[0]
        hub_cpu0 = sum(cpu_s(h.proc.pid) for h in hubs if h.proc)
        pg0 = pg.backends() if pg else {}
        aux0 = pg.aux() if pg else 0.0
        go.set()
        result = out.get(timeout=1800)
        sender.join(60)
        hub_cpu_stored = sum(cpu_s(h.proc.pid) for h in hubs if h.proc) - hub_cpu0
        deadline = time.monotonic() + 600
        lag = _forward_lag(url)
        while lag and time.monotonic() < deadline:
            time.sleep(0.05)
            lag = _forward_lag(url)
        t_derived = time.monotonic()
        hub_cpu = sum(cpu_s(h.proc.pid) for h in hubs if h.proc) - hub_cpu0
        pg_cpu = pg_aux = None
        if pg:
            pg1 = pg.backends()
            pg_cpu = sum(v - pg0.get(pid, 0.0) for pid, v in pg1.items())
            pg_aux = pg.aux() - aux0
        load_after = os.getloadavg()
        # Content: every store's last answer carries a receipt over its whole chain, signed by the hub key.
        errors = int(result["errors"])
        bad: list[str] = list(result["answers"].get("_errors", []))[:3]
        for s, _bursts in stores:
            try:
                s.check_answer(result["answers"].get(s.store_id) or b"{}", n_records)
            except Exception as exc:  # noqa: BLE001 - counted and shown
                errors += 1
                if len(bad) < 6:
                    bad.append(f"{s.store_id}: {exc}")
        storage = open_storage(url)
        try:
            with storage.snapshot() as tx:
                summaries = tx.store_summaries()
        finally:
            storage.close()
        short = [x.store_id for x in summaries if x.acked_through != n_records]
        errors += len(short)
        records = sum(x.acked_through for x in summaries)  # stored, whatever was planned
        stored_s = result["t1"] - result["t0"]
        derived_s = t_derived - result["t0"]
        figure = {
            "bench": "fleet", "scenario": name, "engine": "sqlite" if name == "sqlite" else "postgresql",
            "replicas": replicas, "stores": len(stores), "records_per_store": n_records, "burst_records": burst,
            "bursts": len(result["lat"]), "records": records, "records_planned": len(stores) * n_records,
            "errors": errors, "retries_429_503": result["retries"], "error_samples": bad,
            "underived_left": lag, "stored_s": round(stored_s, 2), "derived_s": round(derived_s, 2),
            "records_per_s_stored": round(records / stored_s, 1),
            "records_per_s_derived": round(records / derived_s, 1),
            "burst_p50_ms": round(pct(result["lat"], 50), 1), "burst_p99_ms": round(pct(result["lat"], 99), 1),
            "burst_max_ms": round(max(result["lat"], default=0.0), 1),
            "hub_cpu_s": round(hub_cpu, 2), "hub_cpu_s_stored_window": round(hub_cpu_stored, 2),
            "hub_cpu_s_per_1k": round(hub_cpu / records * 1000, 4),
            "pg_cpu_s": None if pg_cpu is None else round(pg_cpu, 2),
            "pg_cpu_s_per_1k": None if pg_cpu is None else round(pg_cpu / records * 1000, 4),
            "pg_aux_cpu_s_per_1k": None if pg_aux is None else round(pg_aux / records * 1000, 4),
            "sender_cpu_s": round(result["cpu"], 2),
            "load_avg_1m": round(load_after[0], 2),
            "load_avg_1m_before": round(load_before, 2), "load_avg_1m_after": round(load_after[0], 2),
            "load_avg_5m_after": round(load_after[1], 2), "cores": os.cpu_count(), **TARGETS,
        }  # fmt: skip
        if name != "sqlite":
            figure["meets_targets"] = bool(
                figure["records_per_s_derived"] >= TARGETS["target_records_per_s_derived_pg"]
                and figure["burst_p99_ms"] <= TARGETS["target_p99_ms"]
                and errors == 0
            )
        return figure
    finally:
        for h in hubs:
            h.stop()
        if pg:
            pg.close()
            drop_schema(tag)


def table_line(f: dict[str, Any]) -> str:
    pg = (
        ""
        if f["pg_cpu_s_per_1k"] is None
        else f", PostgreSQL {f['pg_cpu_s_per_1k']} CPU s/1k (+aux {f['pg_aux_cpu_s_per_1k']})"
    )
    verdict = "" if "meets_targets" not in f else (" MEETS targets" if f["meets_targets"] else " MISSES targets")
    return (
        f"fleet     {f['scenario']:6} {f['stores']}×{f['records_per_store']} records, {f['replicas']} hub(s): "
        f"{f['records_per_s_stored']} rec/s stored, {f['records_per_s_derived']} rec/s derived (target ≥ 10000 on "
        f"PostgreSQL), p50 {f['burst_p50_ms']} ms, p99 {f['burst_p99_ms']} ms (target ≤ 500), errors {f['errors']} "
        f"(target 0), {f['retries_429_503']} 429/503 retried; hub {f['hub_cpu_s_per_1k']} CPU s/1k{pg}; "
        f"load {f['load_avg_1m_before']}→{f['load_avg_1m_after']}"
        f"{verdict}"
    )


def bench_fleet(
    root: Path, emit: Any, *, stores: int = 200, records: int = 500, burst: int = 100, scenarios: Any = SCENARIOS
) -> list[dict[str, Any]]:
    """Prepare the stores once, then run each scenario; every figure goes to ``emit``."""
    # Every simulated store enrolls from this one loopback address, which the hub's per-source enrollment
    # limit (docs/security.md) rightly slows to 10 a minute; real stores enroll from their own addresses.
    # The hubs started here inherit a limit that fits the fleet (only while the bench runs: the caller's
    # environment is restored after). Bursts keep their per-store limit.
    limits = {"CLOUD_HUB_RATE_ENROLL_BURST": str(max(20, 2 * stores)),
              "CLOUD_HUB_RATE_ENROLL_PER_MIN": str(max(10, 60 * stores))}  # fmt: skip
    saved = {k: os.environ.get(k) for k in limits}
    os.environ.update({k: v for k, v in limits.items() if saved[k] is None})
    try:
        return _bench_fleet(root, emit, stores=stores, records=records, burst=burst, scenarios=scenarios)
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)


def _bench_fleet(
    root: Path, emit: Any, *, stores: int, records: int, burst: int, scenarios: Any
) -> list[dict[str, Any]]:
    t0 = time.perf_counter()
    prepared = prepare(stores, records, burst)
    print(f"  fleet: {stores} stores × {records} records sealed and signed in {time.perf_counter() - t0:.1f} s",
          file=sys.stderr, flush=True)  # fmt: skip
    out: list[dict[str, Any]] = []
    for name in scenarios:
        for s, _ in prepared:
            s.epoch = 1
        figure = run_scenario(name, root, prepared, records, burst)
        base = next((f for f in out if f["scenario"] == "sqlite"), None)
        figure["baseline"] = (
            {"scenario": "sqlite", "what": "the same bursts against one hub on SQLite, this run"}
            if base is None and name == "sqlite"
            else None
            if base is None
            else {
                "scenario": "sqlite",
                "records_per_s_derived": base["records_per_s_derived"],
                "burst_p99_ms": base["burst_p99_ms"],
                "ratio_derived": round(figure["records_per_s_derived"] / base["records_per_s_derived"], 2),
            }
        )
        emit(figure)
        out.append(figure)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = parser(__doc__)
    ap.add_argument("--stores", type=int, default=200)
    ap.add_argument("--records", type=int, default=500, help="records per store")
    ap.add_argument("--burst", type=int, default=100, help="records per burst (inline_max is 100)")
    ap.add_argument("--small", action="store_true", help="6 stores × 40 records, bursts of 20 (the quick test)")
    ap.add_argument("--scenarios", nargs="+", default=list(SCENARIOS), choices=SCENARIOS)
    args = ap.parse_args(argv)
    if args.small:
        args.stores, args.records, args.burst = 6, 40, 20
    with scratch("storesync-fleet-") as root:
        figures = bench_fleet(root, print_figure, stores=args.stores, records=args.records, burst=args.burst,
                              scenarios=args.scenarios)  # fmt: skip
    for f in figures:
        print(table_line(f))
    return 1 if any(f["errors"] for f in figures) else 0


if __name__ == "__main__":
    sys.exit(main())
