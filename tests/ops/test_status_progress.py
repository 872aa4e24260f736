"""Catch-up rate and ETA in edge-agent status and GET /v1/status (issue 13), from the burst log."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from edge_agent.status import catch_up, compute_status, format_status
from storesync_harness.pos import Pos
from storesync_harness.processes import Agent, Hub, agent_cli


def _burst(now: datetime, ago: float, count: int, result: str = "ok") -> dict:
    return {"at": (now - timedelta(seconds=ago)).isoformat(), "count": count, "result": result}


def test_rate_and_eta_over_the_last_minute() -> None:
    now = datetime(2026, 11, 22, 10, 0, tzinfo=UTC)
    bursts = [_burst(now, 50, 2000), _burst(now, 30, 2000), _burst(now, 10, 2000), _burst(now, 5, 500, "offline")]
    bursts.append(_burst(now, 600, 99_999))  # older than the window: ignored
    progress = catch_up(bursts, 12_000, now)
    assert progress == {"rate_per_s": 120.0, "eta_s": 100.0, "window_s": 50.0}
    assert catch_up(bursts, 0, now) is None  # nothing pending
    assert catch_up([_burst(now, 5, 10, "offline")], 100, now) is None  # nothing moved
    status = compute_status({"identity": None, "last_seq": 0, "sync": {}})
    status.update(pending=12_000, catch_up=progress)
    assert "catch-up     120 records/s, done in about 100s" in format_status(status)


def test_status_reports_rate_and_eta_while_a_real_backlog_drains(tmp_path: Path) -> None:
    """Hub down, a backlog captured, hub back: GET /v1/status gives the rate and ETA while it drains (bursts
    of 10 so the drain lasts a while); the hub stopped again mid-drain, ``edge-agent status`` prints them
    (the last minute's acknowledged bursts); once drained, no catch-up is reported."""
    hub = Hub.create(tmp_path / "hub").start()
    agent = Agent.enrolled(tmp_path / "agent", hub, "S1", "Europe/Berlin", "--sync-interval", "1")
    agent.env = {"EDGE_AGENT_BURST_RECORDS": "10"}
    agent.start()
    try:
        hub.stop()
        pos = Pos("R1", seed=5)
        with httpx.Client(timeout=30) as client:
            for _ in range(2):
                r = client.post(agent.url + "/v1/transactions", json=[pos.sale() for _ in range(400)])
                assert r.status_code == 200 and all(x["status"] == 201 for x in r.json()["results"]), r.text
            assert client.get(agent.url + "/v1/status").json()["catch_up"] is None  # nothing moved yet
            hub.start()
            seen = _wait_status(client, agent, lambda st: st["catch_up"] is not None or st["pending"] == 0)
            hub.kill()  # mid-drain
            printed = agent_cli("status", "--data-dir", str(agent.data_dir), check=False)
            hub.start()
            done = _wait_status(client, agent, lambda st: st["pending"] == 0)
    finally:
        agent.stop()
        hub.stop()
    assert seen["pending"] > 0, "the backlog drained before any status showed a catch-up rate"
    progress = seen["catch_up"]
    assert set(progress) == {"rate_per_s", "eta_s", "window_s"}
    assert progress["rate_per_s"] > 0  # rounded to 0.1 /s: the ETA agrees with it to within that rounding
    assert progress["eta_s"] == pytest.approx(seen["pending"] / progress["rate_per_s"], rel=0.05)
    assert 0 < progress["window_s"] <= 60
    assert printed.returncode == 1, printed.stderr  # not in sync
    assert printed.stdout.startswith("OFFLINE") and "\ncatch-up     " in printed.stdout, printed.stdout
    assert "records/s, done in about" in printed.stdout
    assert done["catch_up"] is None and done["acked_through"] == 800


def _wait_status(client: httpx.Client, agent: Agent, ok: Callable[[dict[str, Any]], bool]) -> dict[str, Any]:
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        st = client.get(agent.url + "/v1/status").json()
        if ok(st):
            return dict(st)
        time.sleep(0.02)
    raise TimeoutError(f"agent status never matched: {st}")
