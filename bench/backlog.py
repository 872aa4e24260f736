"""An agent with a large backlog: RSS while it captures new sales and syncs the backlog at once.

The backlog is built with the real import path (``edge-agent import`` of a generated JSONL file,
while the hub is not yet reachable), then ``edge-agent run`` starts against the running hub: its
sync loop sends the backlog in bursts while 2 POS clients keep posting sales to its capture API.
The agent process (and any children) is sampled for RSS until nothing is pending; capture
latency during the sync is reported beside capture on an idle agent measured in the same run
(the baseline), so the cost of syncing to capture shows.
"""

from __future__ import annotations

import http.client
import json
import sys
import threading
import time
from pathlib import Path
from typing import Any

import httpx

from measure import python, rss_mb, run_child_rusage, sampled
from peers import pct
from storesync_harness.dropfiles import write_jsonl
from storesync_harness.pos import Pos
from storesync_harness.processes import Agent, Hub


def _poster(port: int, register: str, stop: threading.Event, lat: list[float], errors: list[int]) -> None:
    pos = Pos(register, seed=11)
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    while not stop.is_set():
        body = json.dumps(pos.sale()).encode()
        t0 = time.perf_counter()
        conn.request("POST", "/v1/transactions", body, {"Content-Type": "application/json"})
        resp = conn.getresponse()
        resp.read()
        lat.append(time.perf_counter() - t0)
        if resp.status != 201:
            errors.append(resp.status)
    conn.close()


def _capture_for(port: int, seconds: float | None, until: Any = None, prefix: str = "P") -> tuple[list[float], int]:
    """Two POS clients (threads: the figure is the agent's RSS, not client throughput) post until done."""
    stop = threading.Event()
    lat: list[float] = []
    errors: list[int] = []
    threads = [threading.Thread(target=_poster, args=(port, f"{prefix}{i}", stop, lat, errors)) for i in range(2)]
    for t in threads:
        t.start()
    t0 = time.perf_counter()
    while True:
        time.sleep(min(0.5, seconds) if seconds is not None else 0.5)
        if seconds is not None and time.perf_counter() - t0 >= seconds:
            break
        if until is not None and until():
            break
    stop.set()
    for t in threads:
        t.join()
    return [x * 1000 for x in lat], len(errors)


def bench_backlog(root: Path, records: int, emit: Any, idle_s: float = 5.0) -> None:
    """Emit the ``backlog`` figure (``idle_s``: how long the baseline captures with the hub down)."""
    hub = Hub.create(root / "hub-backlog").start()
    agent: Agent | None = None
    try:
        agent = Agent.enrolled(root / "big-agent", hub, "BIG")
        src = root / "backlog.jsonl"
        made = write_jsonl(src, records, register_id="BL")
        print(f"importing a {records}-record backlog ...", file=sys.stderr, flush=True)
        imp = run_child_rusage(
            python(
                "edge_agent",
                "import",
                str(src),
                "--json",
                "--workers",
                "2",
                "--data-dir",
                str(agent.data_dir),
                "--drop-dir",
                str(root / "backlog-drop"),
            )  # fmt: skip
        )
        res = json.loads(imp.stdout)
        if res["accepted"] != made.valid:
            raise RuntimeError(f"backlog import accepted {res['accepted']} of {made.valid}")
        src.unlink(missing_ok=True)
        hub.stop()  # the baseline: the agent captures with the backlog in place and no hub to sync to
        agent.start()
        assert agent.proc is not None
        pid = agent.proc.pid
        with sampled(agent=pid) as s_idle:
            idle_lat, idle_err = _capture_for(agent.port, idle_s, prefix="I")
        hub.start()
        status = httpx.Client(timeout=30)

        def synced() -> bool:
            st = status.get(agent.url + "/v1/status").json()
            return bool(st["acked_through"] >= records)

        t0 = time.perf_counter()
        with sampled(agent=pid) as s_sync:
            sync_lat, sync_err = _capture_for(agent.port, None, until=synced, prefix="S")
            sync_s = time.perf_counter() - t0
        st = status.get(agent.url + "/v1/status").json()
        status.close()
        hwm = rss_mb(pid, "VmHWM")
    finally:
        if agent is not None:
            agent.stop()
        hub.stop()
    emit({
        "bench": "backlog", "records": records, "sync_seconds": round(sync_s, 1),
        "synced_per_s": round(records / sync_s, 1), "captured_while_syncing": len(sync_lat), "errors": sync_err,
        "agent_rss_max_mb": s_sync.rss_max_mb().get("agent"), "agent_rss_peak_mb": hwm, "target_rss_mb": 100,
        "capture_p99_ms": round(pct(sync_lat, 99), 3) if sync_lat else None,
        "baseline": {
            "what": "same agent and backlog, hub down: capture only", "captured": len(idle_lat), "errors": idle_err,
            "agent_rss_max_mb": s_idle.rss_max_mb().get("agent"),
            "capture_p99_ms": round(pct(idle_lat, 99), 3) if idle_lat else None,
        },
        "import_rss_mb": imp.max_rss_mb, "acked_through": st["acked_through"],
        "load_avg_1m": s_sync.load_avg(), "baseline_load_avg_1m": s_idle.load_avg(),
    })  # fmt: skip


def table_line(f: dict[str, Any]) -> str:
    b = f["baseline"]
    return (
        f"backlog   agent with {f['records']} records pending, capturing and syncing: RSS max "
        f"{f['agent_rss_max_mb']} MB (peak {f['agent_rss_peak_mb']}; target ≤ {f['target_rss_mb']}), synced in "
        f"{f['sync_seconds']} s, capture p99 {f['capture_p99_ms']} ms; capture only (hub down) RSS "
        f"{b['agent_rss_max_mb']} MB, p99 {b['capture_p99_ms']} ms; load {f['load_avg_1m']}"
    )
