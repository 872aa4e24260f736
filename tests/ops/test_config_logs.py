"""agent.toml / hub.toml with environment overrides (pydantic-settings), config check, one log format (issue 13)."""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

from storesync_harness.pos import Pos
from storesync_harness.processes import Agent, Hub, agent_cli, free_port, hub_cli

from .test_cli_errors import one_line_error


def test_hub_toml_unknown_keys_are_refused_by_name(tmp_path: Path) -> None:
    data = tmp_path / "hub"
    hub_cli("init", "--data-dir", str(data))
    (data / "hub.toml").write_text("[hub]\nport = 8799\nretyr = 3\n")
    res = hub_cli("serve", "--data-dir", str(data), check=False)
    assert res.returncode == 2
    assert "unknown key 'retyr'" in one_line_error(res, "cloud-hub")
    check = hub_cli("config", "check", "--data-dir", str(data), "--json", check=False)
    assert check.returncode == 1 and "unknown key 'retyr'" in json.loads(check.stdout)["problems"][0]
    (data / "hub.toml").write_text('[[sinks]]\nname = "e"\nkind = "jsonl"\npath = "e.jsonl"\nretyr = 3\n')
    check = hub_cli("config", "check", "--data-dir", str(data), check=False)
    assert check.returncode == 1 and "sink e: unknown key 'retyr' (did you mean 'retry'?)" in check.stdout
    (data / "hub.toml").write_text("[hub]\nport = 99999\n")
    res = hub_cli("serve", "--data-dir", str(data), check=False)
    assert res.returncode == 2 and "port" in one_line_error(res, "cloud-hub") and "hub.toml" in res.stderr


def test_hub_settings_file_then_env_then_flags(tmp_path: Path) -> None:
    data = tmp_path / "hub"
    hub_cli("init", "--data-dir", str(data))
    (data / "hub.toml").write_text('[hub]\nport = 8799\npublic_url = "https://hub.example.com/"\nverify = "all"\n')
    doc = json.loads(hub_cli("config", "check", "--data-dir", str(data), "--json").stdout)
    assert doc["ok"] and doc["hub"]["port"] == 8799 and doc["hub"]["public_url"] == "https://hub.example.com"
    assert [s["name"] for s in doc["sinks"]] == ["events"]  # [hub] alone keeps the default sink
    os.environ["CLOUD_HUB_PORT"] = "8798"
    os.environ["CLOUD_HUB_PROT"] = "1"
    try:
        doc = json.loads(hub_cli("config", "check", "--data-dir", str(data), "--json").stdout)
    finally:
        del os.environ["CLOUD_HUB_PORT"], os.environ["CLOUD_HUB_PROT"]
    assert doc["hub"]["port"] == 8798
    assert doc["warnings"] == ["unknown environment variable CLOUD_HUB_PROT (did you mean 'CLOUD_HUB_PORT'?)"]
    out = hub_cli("store", "add", "S1", "--tz", "UTC", "--data-dir", str(data)).stdout
    assert "edge-agent enroll --data-dir /var/lib/storesync-agent --hub https://hub.example.com --token" in out
    # the file's port is what serve binds
    port = free_port()
    (data / "hub.toml").write_text(f"[hub]\nport = {port}\n")
    hub = Hub(
        "hub", [sys.executable, "-m", "cloud_hub", "serve", "--data-dir", str(data)], data, port, tmp_path / "h.log"
    )
    hub.start()
    try:
        assert hub.admin("/v1/admin/stores")["stores"][0]["store_id"] == "S1"
    finally:
        hub.stop()


def test_agent_toml_and_env(tmp_path: Path) -> None:
    data = tmp_path / "agent"
    agent_cli("init", "--data-dir", str(data))
    (data / "agent.toml").write_text("port = 8790\nretention_days = 90\n")
    os.environ["EDGE_AGENT_RETENTION_DAYS"] = "7"
    try:
        doc = json.loads(agent_cli("config", "check", "--data-dir", str(data), "--json").stdout)
    finally:
        del os.environ["EDGE_AGENT_RETENTION_DAYS"]
    assert doc["ok"] and doc["settings"]["port"] == 8790 and doc["settings"]["retention_days"] == 7.0
    (data / "agent.toml").write_text("prot = 8790\n")
    res = agent_cli("run", "--data-dir", str(data), check=False)
    assert res.returncode == 2
    assert "unknown key 'prot' (did you mean 'port'?)" in one_line_error(res, "edge-agent")
    assert agent_cli("config", "check", "--data-dir", str(data), check=False).returncode == 1
    (data / "agent.toml").write_text("sync_interval = -1\n")
    res = agent_cli("status", "--data-dir", str(data), check=False)
    assert res.returncode == 2 and "sync_interval (" in one_line_error(res, "edge-agent")


def test_both_config_checks_print_one_layout(tmp_path: Path) -> None:
    hub_data, agent_data = tmp_path / "hub", tmp_path / "agent"
    hub_cli("init", "--data-dir", str(hub_data))
    agent_cli("init", "--data-dir", str(agent_data))
    hub_lines = hub_cli("config", "check", "--data-dir", str(hub_data)).stdout.splitlines()
    agent_lines = agent_cli("config", "check", "--data-dir", str(agent_data)).stdout.splitlines()
    assert hub_lines[0] == agent_lines[0] == "config file  (none: defaults and environment)"
    assert "hub.port        8700" in hub_lines and "sink         events (jsonl)" in hub_lines
    assert "port                8787" in agent_lines
    assert hub_lines[-1] == agent_lines[-1] == "config OK"
    (agent_data / "agent.key").unlink()
    os.environ["EDGE_AGENT_PROT"] = "1"
    try:
        res = agent_cli("config", "check", "--data-dir", str(agent_data), check=False)
    finally:
        del os.environ["EDGE_AGENT_PROT"]
    lines = res.stdout.splitlines()
    assert res.returncode == 1 and lines[-1] == "1 problem(s)"
    assert lines[-2] == f"problem: {agent_data} has no agent.key; run: edge-agent init --data-dir {agent_data}"
    assert lines[-3] == "warning: unknown environment variable EDGE_AGENT_PROT (did you mean 'EDGE_AGENT_PORT'?)"


def _json_lines(path: Path) -> list[dict]:
    lines = [line for line in path.read_text().splitlines() if line.strip()]
    docs = []
    for line in lines:
        if line.startswith(("edge-agent listening", "cloud-hub listening")):
            continue
        docs.append(json.loads(line))  # every log line is one JSON object
    return docs


def test_outage_and_recovery_logged_at_the_default_level_as_json(tmp_path: Path) -> None:
    hub = Hub.create(tmp_path / "hub", None, "--log-format", "json").start()
    agent = Agent.enrolled(tmp_path / "agent", hub, "S1", "Europe/Berlin", "--log-format", "json")
    agent.env = {"EDGE_AGENT_BACKOFF_CAP": "1", "EDGE_AGENT_SYNC_INTERVAL": "0.5"}
    agent.start()
    pos = Pos("R1")
    try:
        assert agent.post(pos.sale()).status_code == 201
        agent.wait_synced(30)
        hub.stop()
        assert agent.post(pos.sale()).status_code == 201
        deadline = time.monotonic() + 30
        while "hub unavailable" not in agent.log_path.read_text() and time.monotonic() < deadline:
            time.sleep(0.2)
        hub.start()
        assert agent.wait_synced(60)["acked_through"] == 2
        deadline = time.monotonic() + 10
        while "hub answers again" not in agent.log_path.read_text() and time.monotonic() < deadline:
            time.sleep(0.2)
    finally:
        agent.stop()
        hub.stop()
    docs = _json_lines(agent.log_path)
    msgs = [d["msg"] for d in docs]
    outage = [d for d in docs if d["msg"].startswith("hub unavailable")]
    assert len(outage) == 1 and outage[0]["level"] == "warning" and "1 records waiting" in outage[0]["msg"]
    assert outage[0]["ts"].endswith("Z") and outage[0]["service"] == "edge-agent"
    assert any(m.startswith("hub answers again after offline") for m in msgs)
    assert not [d for d in docs if d["logger"].startswith("apscheduler") or "Running job" in d["msg"]]
    hub_docs = _json_lines(hub.log_path)
    assert hub_docs and all(d["service"] == "cloud-hub" for d in hub_docs)
