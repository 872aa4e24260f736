"""The agent lists two hub replicas and carries on through the other when one is killed (real processes)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from storesync_harness.invariants import LedgerWatcher
from storesync_harness.pos import Pos
from storesync_harness.processes import Agent, Hub, agent_cli
from storesync_harness.rig import AGENT_ENV
from sync_protocol.canonical import canonical_dumps
from sync_protocol.transaction import parse_transaction

STORE = "S1"


@pytest.fixture
def replicas(tmp_path: Path) -> Iterator[tuple[Hub, Hub]]:
    """Two ``cloud-hub serve`` processes on one data folder (one SQLite file, one key, one token)."""
    data = tmp_path / "hub"
    a = Hub.create(data, None, "--no-workers")
    b = Hub.create(data, None, "--no-workers")
    a.name, b.name = "hub-a", "hub-b"
    a.log_path, b.log_path = data / "hub-a.log", data / "hub-b.log"
    try:
        yield a.start(), b.start()
    finally:
        a.stop()
        b.stop()


def _post(agent: Agent, pos: Pos, n: int, sent: dict[tuple[str, str], dict]) -> None:
    with httpx.Client(timeout=10) as client:
        for _ in range(n):
            txn = pos.sale()
            r = agent.post(txn, client)
            assert r.status_code == 201, r.text
            sent[(txn["register_id"], txn["txn_id"])] = txn


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
    sent: dict[tuple[str, str], dict] = {}
    try:
        assert agent.status()["hub_url"] == f"{a.url} {b.url}"
        _post(agent, pos, 20, sent)
        agent.wait_synced(30)
        assert _bursts_served(a) >= 1 and _bursts_served(b) == 0  # sticks to the first while it answers

        a.kill()  # kill -9 of the replica the agent talks to
        _post(agent, pos, 20, sent)
        agent.wait_synced(30)
        assert _bursts_served(b) >= 1

        a.start()
        b.kill()
        _post(agent, pos, 20, sent)
        st = agent.wait_synced(30)
        assert st["acked_through"] == 60 and not st["blocked"]

        # Content: the ledger holds exactly what the POS sent, each sale once, in an unbroken chain.
        watcher = LedgerWatcher(STORE)
        assert watcher.update(a) == 60
        assert watcher.chain_errors == 0, watcher.problems
        assert set(watcher.counts) == set(sent) and set(watcher.counts.values()) == {1}
        for rec in a.ledger(STORE):
            txn = json.loads(rec["body"])["txn"]
            want = parse_transaction(sent[(txn["register_id"], txn["txn_id"])]).canonical()
            assert canonical_dumps(txn) == canonical_dumps(want), rec["seq"]
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
