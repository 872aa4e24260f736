"""Catch-up: an agent that was offline sends its backlog; two figures, two clients, one hub.

Both clients talk to the same hub process with the same forwarding policy (the default sink, the
default ``inline_max``), so the work is the same for each: store every record AND derive its events.

- **burst client**: ``edge-agent sync --until-synced`` (bursts of up to 2,000 records; events of a
  burst above ``inline_max`` are derived right after, by the hub's deriver);
- **naive client**: one signed POST per record, sequential, keep-alive (events derived inline).

For each: ``acked_per_s`` (records / time until the hub acknowledged the last one) and
``derived_per_s`` (records / time until the events of every record are derived, i.e. ready for the
sinks: the stream's forwarding cursor reached the last seq). Ratios are burst ÷ naive of each.
RSS: the syncing agent process (``wait4`` peak) and the hub (sampled peak while the figure ran).
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import httpx

from cloud_hub.storage.sqlite import SQLiteStorage
from measure import python, run_child_rusage, sampled
from storesync_harness.pos import Pos
from storesync_harness.processes import Agent, Hub, agent_cli
from sync_protocol import keys
from sync_protocol.httpsig import sign_request


def backlog(agent: Agent, n: int) -> None:
    """Capture n transactions straight into the outbox (the agent was offline for a long time)."""
    regs = [Pos(f"R{i}", seed=5) for i in range(4)]
    chunk = 20_000
    done = 0
    while done < n:
        m = min(chunk, n - done)
        lines = "\n".join(json.dumps(regs[(done + i) % 4].sale()) for i in range(m))
        agent_cli("capture", "--data-dir", str(agent.data_dir), "-", input=lines)
        done += m
        print(f"  backlog {agent.data_dir.name} {done}/{n}", file=sys.stderr, flush=True)


class DerivedWatch:
    """Polls the hub database (read snapshots) for the moment a stream's events are all derived."""

    def __init__(self, hub: Hub, store_id: str, through: int, t0: float, timeout: float = 900) -> None:
        self.storage = SQLiteStorage(hub.data_dir / "hub.db")
        self.store_id, self.through, self.t0, self.timeout = store_id, through, t0, timeout
        self.done_at: float | None = None
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while time.perf_counter() - self.t0 < self.timeout:
            with self.storage.snapshot() as tx:
                derived = tx.forward_cursor(self.store_id, 1)
            if derived >= self.through:
                self.done_at = time.perf_counter()
                return
            time.sleep(0.02)

    def seconds(self) -> float:
        """Seconds from t0 until every record's events were derived (waits for it)."""
        self._thread.join()
        self.storage.close()
        if self.done_at is None:
            raise RuntimeError(f"events of {self.store_id} not derived within {self.timeout} s")
        return self.done_at - self.t0


def naive_client(hub: Hub, agent: Agent, n: int) -> tuple[float, float]:
    """One record per signed POST, sequential, keep-alive: (acked seconds, derived seconds)."""
    import sqlite3

    con = sqlite3.connect(agent.data_dir / "outbox.db")
    rows = con.execute("SELECT seq, body, chain, sig FROM outbox ORDER BY seq LIMIT ?", (n,)).fetchall()
    con.close()
    store = json.loads(rows[0][1])["store_id"]
    key = keys.load_private_key(agent.data_dir / "agent.key")
    kid = keys.key_id(key)
    t0 = time.perf_counter()
    watch = DerivedWatch(hub, store, len(rows), t0)
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
    acked = time.perf_counter() - t0
    return acked, watch.seconds()


NO_RATE_LIMIT = {"CLOUD_HUB_RATE_BURST_RATE": "1000000", "CLOUD_HUB_RATE_BURST_BURST": "1000000"}


def burst_client(hub: Hub, agent: Agent, store_id: str, n: int) -> tuple[float, float, float]:
    """``edge-agent sync --until-synced``: (acked seconds, derived seconds, agent peak RSS MB)."""
    t0 = time.perf_counter()
    watch = DerivedWatch(hub, store_id, n, t0)
    res = run_child_rusage(
        python("edge_agent", "sync", "--data-dir", str(agent.data_dir), "--until-synced", "--timeout", "900")
    )
    acked = time.perf_counter() - t0
    if res.returncode != 0:
        raise RuntimeError(f"edge-agent sync exited {res.returncode}: {res.stdout.decode(errors='replace')}")
    return acked, watch.seconds(), res.max_rss_mb


def bench_catchup(root: Path, records: int, naive_records: int, emit: Any, split: bool = False) -> None:
    """Emit the ``catchup`` figure: both clients, both figures, ratios, RSS and load average.

    ``split``: the hub runs as two processes on the same database, ``cloud-hub serve --no-workers``
    (ingest, inline derivation of small bursts) and ``cloud-hub deliver`` (deferred derivation and
    delivery), so deriving a catch-up has a core of its own (docs/performance.md).
    """
    name = "hub-split" if split else "hub2"
    hub = Hub.create(root / name, None, *(["--no-workers"] if split else []))
    # The per-store burst rate limit (200/s) would measure the limiter, not the work, once the naive
    # client's one-record bursts go faster than that: lifted for both clients alike.
    hub.env.update(NO_RATE_LIMIT)
    hub.start()
    deliver: subprocess.Popen[bytes] | None = None
    if split:
        log = open(root / name / "deliver.log", "ab")  # noqa: SIM115 - handed to the child
        deliver = subprocess.Popen(
            python("cloud_hub", "deliver", "--data-dir", str(hub.data_dir)), stdout=log, stderr=subprocess.STDOUT
        )
        log.close()
    pids: dict[str, int] = {"hub": hub.proc.pid if hub.proc else 0}
    if deliver is not None:
        pids["deliver"] = deliver.pid
    try:
        fast = Agent.enrolled(root / f"{name}-fast-agent", hub, "FAST")
        naive = Agent.enrolled(root / f"{name}-naive-agent", hub, "NAIVE")
        print(f"building a {records}-record backlog ...", file=sys.stderr, flush=True)
        backlog(fast, records)
        backlog(naive, naive_records)
        assert hub.proc is not None
        # The baseline first, on an idle hub: measured after the catch-up it would share the hub with
        # the delivery of the events the catch-up produced.
        with sampled(**pids) as s_naive:
            n_acked, n_derived = naive_client(hub, naive, naive_records)
        with sampled(**pids) as s_fast:
            b_acked, b_derived, agent_rss = burst_client(hub, fast, "FAST", records)
        st = fast.status()
        assert st["acked_through"] == records and st["pending"] == 0, st
        assert len(hub.ledger("FAST")) == records
    finally:
        if deliver is not None:
            deliver.terminate()
            deliver.wait(30)
        hub.stop()
    acked_rate, derived_rate = records / b_acked, records / b_derived
    n_acked_rate, n_derived_rate = naive_records / n_acked, naive_records / n_derived
    emit({
        "bench": "catchup", "records": records,
        "hub": "serve --no-workers + deliver (2 processes)" if split else "serve (1 process)",
        "acked_per_s": round(acked_rate, 1), "derived_per_s": round(derived_rate, 1),
        "acked_seconds": round(b_acked, 2), "derived_seconds": round(b_derived, 2),
        "target_derived_per_s": 20_000,
        "baseline": {
            "client": "naive, one record per signed POST", "records": naive_records,
            "hub_rate_limit": "lifted for both",
            "acked_per_s": round(n_acked_rate, 1), "derived_per_s": round(n_derived_rate, 1),
        },
        "ratio_acked": round(acked_rate / n_acked_rate, 1), "ratio_derived": round(derived_rate / n_derived_rate, 1),
        "rss_mb": {"agent_sync": agent_rss, **s_fast.rss_max_mb(),
                   "hub_naive": s_naive.rss_max_mb().get("hub")},
        "load_avg_1m": s_fast.load_avg(), "baseline_load_avg_1m": s_naive.load_avg(),
    })  # fmt: skip


def table_line(f: dict[str, Any]) -> str:
    b = f["baseline"]
    return (
        f"catch-up  {f['records']} records, hub {f['hub']}: acked {f['acked_per_s']}/s, "
        f"events derived {f['derived_per_s']}/s "
        f"(target ≥ {f['target_derived_per_s']} derived/s); naive one-per-request {b['acked_per_s']} acked/s, "
        f"{b['derived_per_s']} derived/s; ratios {f['ratio_acked']}× acked, {f['ratio_derived']}× derived; "
        f"RSS agent {f['rss_mb']['agent_sync']} MB, hub {f['rss_mb']['hub']} MB"
        + (f", deliver {f['rss_mb']['deliver']} MB" if "deliver" in f["rss_mb"] else "")
        + f"; load {f['load_avg_1m']}"
    )
