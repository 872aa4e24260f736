"""The agent's /readyz and /metrics (issue 13) on a real agent process, under the loopback rules of DESIGN §10."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

import edge_agent
from storesync_harness.pos import Pos
from storesync_harness.processes import Agent, Hub, agent_cli


def samples(text: str) -> dict[str, float]:
    """``name{label="v",...}`` -> value, for every sample of the exposition."""
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            labels = ",".join(f'{k}="{v}"' for k, v in sorted(s.labels.items()))
            out[f"{s.name}{{{labels}}}" if labels else s.name] = s.value
    return out


def test_readyz_and_metrics_of_a_capturing_agent(hub: Hub, agent: Agent) -> None:
    ready = httpx.get(agent.url + "/readyz", timeout=10)
    assert ready.status_code == 200, ready.text
    body = ready.json()
    assert body["status"] == "ready" and body["enrolled"] is True and body["store_id"] == "S1"
    assert body["outbox"]["schema_version"] == body["outbox"]["latest_schema"] >= 2

    pos = Pos("R1", seed=11)
    with httpx.Client(timeout=10) as client:
        for _ in range(5):
            assert client.post(agent.url + "/v1/transactions", json=pos.sale()).status_code == 201
        assert client.post(agent.url + "/v1/transactions", json=[pos.sale(), pos.sale()]).status_code == 200
        assert client.post(agent.url + "/v1/transactions", json={"txn_id": "x"}).status_code == 422
    agent.wait_synced(30)
    response = httpx.get(agent.url + "/metrics", timeout=10)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    got = samples(response.text)
    assert got["storesync_capture_seconds_count"] == 6  # 5 single posts and one array; the 422 stored nothing
    assert got['storesync_capture_seconds_bucket{le="+Inf"}'] == 6
    assert 0 < got["storesync_capture_seconds_sum"] < 6 * 5.0
    assert got["storesync_capture_records_total"] == 7
    assert got["storesync_pending_records"] == 0 and got["storesync_outbox_last_seq"] == 7
    assert got["storesync_sync_blocked"] == 0
    assert 0 <= got["storesync_last_ack_age_seconds"] < 60
    assert got[f'storesync_build_info{{service="edge-agent",version="{edge_agent.__version__}"}}'] == 1
    assert not [name for name in got if "_created" in name]
    check_loopback_rules(agent)
    check_openapi(agent)


def test_readyz_says_why_an_agent_is_not_ready(tmp_path: Path) -> None:
    data = tmp_path / "agent"
    agent_cli("init", "--data-dir", str(data))
    agent = Agent.create(data).start()
    try:
        answer = httpx.get(agent.url + "/readyz", timeout=10)
        metrics = httpx.get(agent.url + "/metrics", timeout=10)
    finally:
        agent.stop()
    assert answer.status_code == 503 and answer.headers["retry-after"] == "5"
    body = answer.json()
    assert body["error"] == "not_ready" and body["enrolled"] is False
    assert body["reasons"] == ["not enrolled: run edge-agent enroll --hub URL --token TOKEN"]
    got = samples(metrics.text)
    assert "storesync_last_ack_age_seconds" not in got  # never acknowledged: no made-up age
    assert got["storesync_pending_records"] == 0


def check_loopback_rules(agent: Agent) -> None:
    """DESIGN §10 holds for the new routes: a rebound Host and a web page's Origin are refused."""
    for path in ("/readyz", "/metrics"):
        rebound = httpx.get(agent.url + path, headers={"Host": "evil.example"}, timeout=10)
        assert rebound.status_code == 421 and rebound.json()["error"] == "bad_host"
        page = httpx.get(agent.url + path, headers={"Origin": "http://evil.example"}, timeout=10)
        assert page.status_code == 403 and page.json()["error"] == "foreign_origin"


def check_openapi(agent: Agent) -> None:
    """Both new routes are in the agent's OpenAPI; every operation and parameter is described."""
    doc = httpx.get(agent.url + "/openapi.json", timeout=10).json()
    ops = [(path, method, op) for path, item in doc["paths"].items() for method, op in item.items()]
    assert {"/readyz", "/metrics", "/v1/status", "/v1/transactions"} <= set(doc["paths"])
    for path, method, op in ops:
        assert op.get("summary") and op.get("description"), f"{method} {path}"
        for param in op.get("parameters", []):
            assert param.get("description"), f"{method} {path} {param['name']}"
        assert all(r.get("description") for r in op["responses"].values())
    assert "registerToken" in doc["components"]["securitySchemes"]
    assert "text/plain" in doc["paths"]["/metrics"]["get"]["responses"]["200"]["content"]


def _make_unwritable(path: Path) -> Callable[[], None]:
    """Make ``path`` unwritable even for root (the immutable attribute), or by mode for other users.

    Returns the function that undoes it.
    """
    if os.geteuid() != 0:
        mode = path.stat().st_mode
        path.chmod(0o444)
        return lambda: path.chmod(mode)
    tool = shutil.which("chattr")
    if tool is None:
        pytest.skip("chattr is not installed: root cannot be refused a write without it")
    done = subprocess.run([tool, "+i", str(path)], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        pytest.skip(f"this file system has no immutable attribute: {done.stderr.strip()}")
    return lambda: subprocess.run([tool, "-i", str(path)], check=True)


def test_readyz_names_an_outbox_that_is_not_writable_and_recovers(hub: Hub, agent: Agent) -> None:
    outbox = agent.data_dir / "outbox.db"
    assert httpx.get(agent.url + "/readyz", timeout=10).status_code == 200
    undo = _make_unwritable(outbox)
    try:
        answer = httpx.get(agent.url + "/readyz", timeout=10)
    finally:
        undo()
    assert answer.status_code == 503, answer.text
    assert answer.headers["retry-after"] == "5"
    assert answer.json()["reasons"] == [f"{outbox} is not writable"]
    again = httpx.get(agent.url + "/readyz", timeout=10)
    assert again.status_code == 200 and again.json()["status"] == "ready", again.text
