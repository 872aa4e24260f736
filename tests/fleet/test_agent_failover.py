"""The agent lists two hub replicas and carries on through the other when one is killed (real processes)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from storesync_harness.invariants import PosJournal, check_stores
from storesync_harness.pos import Pos
from storesync_harness.processes import Agent, Hub, agent_cli
from storesync_harness.rig import AGENT_ENV

STORE = "S1"
# Short lease: deliveries a killed replica had claimed are taken over by the other within seconds.
HUB_TOML = """
[delivery]
lease_s = 3
poll_s = 0.2

[[sinks]]
name = "events"
kind = "jsonl"
role = "archive"
path = "events.jsonl"
"""


@pytest.fixture
def replicas(tmp_path: Path) -> Iterator[tuple[Hub, Hub]]:
    """Two ``cloud-hub serve`` processes on one data folder: one SQLite file, key, token and jsonl sink file."""
    data = tmp_path / "hub"
    data.mkdir()
    (data / "hub.toml").write_text(HUB_TOML)
    a = Hub.create(data, None, "--config", str(data / "hub.toml"), "--shared-data-dir")
    b = Hub.create(data, None, "--config", str(data / "hub.toml"), "--shared-data-dir")
    a.name, b.name = "hub-a", "hub-b"
    a.log_path, b.log_path = data / "hub-a.log", data / "hub-b.log"
    try:
        yield a.start(), b.start()
    finally:
        a.stop()
        b.stop()


def _post(agent: Agent, pos: Pos, n: int, journal: PosJournal) -> None:
    with httpx.Client(timeout=10) as client:
        for _ in range(n):
            r = journal.post(client, agent.url, pos.sale())
            assert r.status_code == 201, r.text


def _bursts_served(hub: Hub) -> int:
    return sum(1 for line in hub.log_path.read_text().splitlines() if "burst store=S1" in line and "status=200" in line)


def test_agent_fails_over_between_replicas(tmp_path: Path, replicas: tuple[Hub, Hub]) -> None:
    a, b = replicas
    agent_dir = tmp_path / "agent"
    agent_dir.mkdir()
    token = a.add_store(STORE)
    agent_cli("init", "--data-dir", str(agent_dir))
    agent_cli("enroll", "--data-dir", str(agent_dir), "--hub", a.url, "--hub", b.url, "--token", token)
    agent = Agent.create(agent_dir, None, "--sync-interval", "0.5")
    agent.env.update(AGENT_ENV)
    agent.start()
    pos = Pos("R1", seed=5)
    journal = PosJournal()
    try:
        assert agent.status()["hub_url"] == f"{a.url} {b.url}"
        _post(agent, pos, 20, journal)
        agent.wait_synced(30)
        assert _bursts_served(a) >= 1 and _bursts_served(b) == 0  # sticks to the first while it answers

        a.kill()  # kill -9 of the replica the agent talks to
        _post(agent, pos, 20, journal)
        agent.wait_synced(30)
        assert _bursts_served(b) >= 1

        a.start()
        b.kill()
        _post(agent, pos, 20, journal)
        st = agent.wait_synced(30)
        assert st["acked_through"] == 60 and not st["blocked"]

        # Content: each sale exactly once with the content the POS sent, chain and store signatures valid,
        # one event per record in the jsonl sink both replicas write, and the agent's receipt on the head.
        verdict = check_stores(a, journal, {STORE: agent_dir})
        assert verdict.ok and verdict.found == 60 and verdict.events_checked == ["events"], (
            verdict.counts(),
            verdict.event_lines(),
            verdict.details,
        )
        assert st["receipt"]["chain"] == a.ledger(STORE)[-1]["chain"]
    finally:
        agent.stop()


def test_bad_hub_url_is_refused_by_name(tmp_path: Path) -> None:
    agent_dir = tmp_path / "agent"
    agent_cli("init", "--data-dir", str(agent_dir))
    res = agent_cli("enroll", "--data-dir", str(agent_dir), "--hub", "http://127.0.0.1:9", "--hub", "ftp://x",
                    "--token", "t", check=False)  # fmt: skip
    assert res.returncode == 2
    assert "--hub: 'ftp://x' is not an http:// or https:// URL with a host" in res.stderr
    assert "Traceback" not in res.stderr
