"""Catch-up rate and ETA in edge-agent status (issue 13), from the burst log."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from edge_agent.status import catch_up, compute_status, format_status


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
