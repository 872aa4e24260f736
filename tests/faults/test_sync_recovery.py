"""Sync under bad conditions, with real processes: restore of the hub from an old backup, pruned
records (an unrecoverable gap, reported and never invented), the reachability probe ending a long
backoff, ``Retry-After`` honoured, and the burst size adapting to timeouts.
"""

from __future__ import annotations

import json
import shutil
import sqlite3
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from edge_agent.store import Outbox, prune
from storesync_harness.faultproxy import FaultProxy
from storesync_harness.invariants import PosJournal, agent_verify, check_stores
from storesync_harness.pos import Pos
from storesync_harness.processes import Agent, Hub, agent_cli

pytestmark = pytest.mark.faults

FAST = {"EDGE_AGENT_PROBE_INTERVAL": "0.5", "EDGE_AGENT_READ_TIMEOUT": "3"}


@pytest.fixture
def hub(tmp_path: Path) -> Iterator[Hub]:
    h = Hub.create(tmp_path / "hub", None, "--log-level", "info")
    h.start()
    try:
        yield h
    finally:
        h.stop()


def _agent(tmp_path: Path, hub: Hub, env: dict[str, str], *extra: str) -> Agent:
    agent = Agent.enrolled(tmp_path / "agent", hub, "S1", "Europe/Berlin", "--sync-interval", "0.5", *extra)
    agent.env.update(env)
    return agent


def _status(agent: Agent) -> dict:
    return dict(httpx.get(agent.url + "/v1/status", timeout=10).json())


def _wait(pred, timeout: float = 30.0, what: str = "condition"):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = pred()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"{what} not met within {timeout} s")


def _post_all(agent: Agent, txns: list[dict], journal: PosJournal | None = None) -> None:
    journal = journal or PosJournal()
    with httpx.Client(timeout=10) as client:
        for txn in txns:
            assert journal.post(client, agent.url, txn).status_code == 201


def _synced(agent: Agent) -> bool:
    st = _status(agent)
    return st["pending"] == 0 and st["acked_through"] == st["last_seq"]


def _backup(hub: Hub, dest: Path) -> None:
    """An online backup of the running hub's database (SQLite backup API)."""
    src = sqlite3.connect(hub.data_dir / "hub.db")
    dst = sqlite3.connect(dest)
    try:
        src.backup(dst)
    finally:
        src.close()
        dst.close()


def _restore(hub: Hub, backup: Path) -> None:
    hub.stop()
    for suffix in ("", "-wal", "-shm"):
        (hub.data_dir / f"hub.db{suffix}").unlink(missing_ok=True)
    shutil.copy(backup, hub.data_dir / "hub.db")
    hub.start()


def test_hub_restored_from_old_backup_is_refilled_exactly(tmp_path: Path, hub: Hub) -> None:
    agent = _agent(tmp_path, hub, FAST)
    agent.start()
    pos = Pos("R1", seed=21)
    journal = PosJournal()
    try:
        first = [pos.mixed() for _ in range(60)]
        _post_all(agent, first, journal)
        _wait(lambda: _synced(agent), what="first 60 synced")
        _backup(hub, tmp_path / "hub-backup.db")  # the hub at seq 60
        more = [pos.mixed() for _ in range(90)]
        _post_all(agent, more, journal)
        _wait(lambda: _synced(agent) and _status(agent)["acked_through"] == 150, what="150 synced")
        _restore(hub, tmp_path / "hub-backup.db")  # the hub forgot seq 61..150
        last = [pos.mixed()]
        _post_all(agent, last, journal)
        _wait(lambda: _synced(agent) and _status(agent)["acked_through"] == 151, timeout=60, what="refill")
        verdict = check_stores(hub, journal, {"S1": agent.data_dir})  # content, signatures, events once
        assert verdict.ok, (verdict.counts(), verdict.event_lines(), verdict.details)
        assert verdict.found == verdict.acknowledged == 151 and len(hub.ledger("S1")) == 151
    finally:
        agent.stop()
    with Outbox(agent.data_dir / "outbox.db") as outbox:
        results = [b["result"] for b in reversed(outbox.recent_bursts(50))]
    assert "gap" in results


def test_pruned_records_make_a_loud_unrecoverable_gap_and_nothing_is_invented(tmp_path: Path, hub: Hub) -> None:
    agent = _agent(tmp_path, hub, FAST, "--verbose")
    agent.start()
    pos = Pos("R1", seed=22)
    try:
        _post_all(agent, [pos.sale() for _ in range(40)])
        _wait(lambda: _synced(agent), what="40 synced")
        _backup(hub, tmp_path / "hub-backup.db")  # the hub at seq 40
        _post_all(agent, [pos.sale() for _ in range(30)])
        _wait(lambda: _synced(agent) and _status(agent)["acked_through"] == 70, what="70 synced")
        with Outbox(agent.data_dir / "outbox.db") as outbox:  # 40 days later, retention ran
            done = prune(outbox, retention_days=30, now=datetime.now(UTC) + timedelta(days=40))
        assert (done.pruned, done.anchor_seq) == (70, 70)
        _restore(hub, tmp_path / "hub-backup.db")
        _post_all(agent, [pos.sale()])
        st = _wait(lambda: (s := _status(agent))["blocked"] and s, timeout=30, what="blocked")
        assert st["blocked"]["code"] == "gap_unrecoverable"
        assert "unrecoverable gap seq 41..70" in st["blocked"]["message"]
        assert st["last_seq"] == 71 and st["pending"] >= 1
        res = agent_cli("status", "--data-dir", str(agent.data_dir), check=False)
        assert res.returncode == 1  # blocked
        text = res.stdout
        assert "BLOCKED (gap_unrecoverable)" in text and "41..70" in text
        assert "unrecoverable gap seq 41..70" in agent.log_path.read_text()
        assert [r["seq"] for r in hub.ledger("S1")] == list(range(1, 41))  # nothing invented
    finally:
        agent.stop()
    ok, out = agent_verify(agent.data_dir)
    assert ok and "seq 71..71" in out, out


def test_probe_ends_a_long_backoff_as_soon_as_the_hub_answers(tmp_path: Path, hub: Hub) -> None:
    env = {**FAST, "EDGE_AGENT_BACKOFF_BASE": "40", "EDGE_AGENT_BACKOFF_CAP": "60"}
    agent = _agent(tmp_path, hub, env)
    agent.start()
    pos = Pos("R1", seed=23)
    try:
        hub.stop()
        sent = [pos.sale()]
        _post_all(agent, sent)

        def far_backoff() -> bool:
            st = _status(agent)
            due = st["next_attempt_at"]
            if st["last_sync_result"] != "offline" or not due:
                return False
            left = (datetime.fromisoformat(due) - datetime.now(UTC)).total_seconds()
            if left < 10:  # full jitter drew a short wait: ask for another failure
                httpx.post(agent.url + "/v1/sync", json={}, timeout=10)
                return False
            return True

        _wait(far_backoff, timeout=60, what="a backoff of 10 s or more")
        hub.start()
        t0 = time.monotonic()
        _post_all(agent, [pos.sale()])
        _wait(lambda: _synced(agent), timeout=10, what="sync after the hub came back")
        assert time.monotonic() - t0 < 5.0
    finally:
        agent.stop()


def test_retry_after_is_honoured_and_timeouts_shrink_the_burst(tmp_path: Path, hub: Hub) -> None:
    with FaultProxy(upstream_port=hub.port) as proxy:
        env = {**FAST, "EDGE_AGENT_READ_TIMEOUT": "1", "EDGE_AGENT_BURST_RECORDS": "64"}
        agent = _agent(tmp_path, hub, env, "--hub", proxy.url)
        pos = Pos("R1", seed=24)
        lines = "\n".join(json.dumps(pos.sale()) for _ in range(300))
        agent_cli("capture", "--data-dir", str(agent.data_dir), "-", input=lines)
        proxy.set_mode("stall", path_prefix="/v1/bursts", count=1)  # the first burst times out
        agent.start()
        try:
            _wait(lambda: _synced(agent) and _status(agent)["acked_through"] == 300, what="300 synced")
            proxy.set_mode("http_5xx_storm", status=503, retry_after=3, count=1, path_prefix="/v1/bursts")
            _post_all(agent, [pos.sale()])
            _wait(lambda: proxy.stats()["faults"]["http_5xx_storm"] == 1, what="the 503")
            hit = time.monotonic()
            before = proxy.stats()["upstream_requests"]
            _wait(lambda: proxy.stats()["upstream_requests"] > before, timeout=15, what="the retry")
            assert time.monotonic() - hit >= 2.8  # no burst and no probe before Retry-After ran out
            _wait(lambda: _synced(agent), what="301 synced")
        finally:
            agent.stop()
    with Outbox(agent.data_dir / "outbox.db") as outbox:
        bursts = list(reversed(outbox.recent_bursts(100)))
    data = [b for b in bursts if b["count"]]
    assert data[0]["result"] == "offline" and data[0]["count"] == 64  # timed out
    assert data[1]["result"] == "ok" and data[1]["count"] == 32  # halved
    assert max(b["count"] for b in data[2:] if b["result"] == "ok") == 64  # grown back
    assert any(b["http_status"] == 503 for b in bursts)
