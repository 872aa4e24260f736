"""Prometheus conventions on the hub's /metrics (issue 13): build info, a burst histogram, ages, no _created."""

from __future__ import annotations

import httpx

from storesync_harness.pos import Pos
from storesync_harness.processes import Agent, Hub


def test_hub_metrics_follow_prometheus_conventions(hub: Hub, agent: Agent) -> None:
    assert agent.post(Pos("R1").sale()).status_code == 201
    agent.wait_synced(30)
    text = httpx.get(hub.url + "/metrics", headers={"Authorization": f"Bearer {hub.admin_token}"}, timeout=10).text
    lines = [line for line in text.splitlines() if not line.startswith("#")]
    assert any(line.startswith('storesync_build_info{service="cloud-hub",version="') for line in lines)
    assert any(
        line.startswith('storesync_ingest_burst_duration_seconds_bucket{le="0.5",status="200"}') for line in lines
    )
    assert any(line.startswith('storesync_ingest_burst_duration_seconds_count{status="200"}') for line in lines)
    assert any(line.startswith("storesync_oldest_pending_age_seconds{") for line in lines)
    assert not [line for line in lines if "_created" in line]
    assert not [
        line
        for line in lines
        if line.startswith(("storesync_oldest_pending_seconds", "storesync_store_last_seen_seconds"))
    ]
