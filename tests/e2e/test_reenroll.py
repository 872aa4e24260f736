"""A forced re-enrollment never strands a sale: what the hub had not acknowledged is carried into the
new epoch and sent, and a POS retry of such a sale is answered with its new seq."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest

from storesync_harness.invariants import PosJournal, check_stores
from storesync_harness.pos import Pos
from storesync_harness.processes import Agent, Hub, agent_cli

pytestmark = pytest.mark.slow


def test_enroll_force_carries_unsent_records_into_the_new_epoch(tmp_path: Path) -> None:
    hub = Hub.create(tmp_path / "hub").start()
    agent = Agent.enrolled(tmp_path / "agent", hub, "S1", "Europe/Berlin", "--sync-interval", "0.5").start()
    pos = Pos("R1", seed=41)
    journal = PosJournal()
    try:
        with httpx.Client(timeout=10) as client:
            for _ in range(10):
                assert journal.post(client, agent.url, pos.mixed()).status_code == 201
            agent.wait_synced(timeout=30)
            hub.stop()  # the hub is away; five more sales wait in the outbox
            stranded = [pos.sale() for _ in range(5)]
            for txn in stranded:
                assert journal.post(client, agent.url, txn).status_code == 201
        agent.stop()
        hub.start()
        token = hub.add_store("S1", "Europe/Berlin")  # a new token: the next enrollment opens epoch 2
        out = agent_cli(
            "enroll", "--data-dir", str(agent.data_dir), "--hub", hub.url, "--token", token, "--force", "--json"
        )
        answer = json.loads(out.stdout)
        assert (answer["epoch"], answer["carried_forward"]) == (2, 5)
        agent.start()
        with httpx.Client(timeout=10) as client:
            retry = journal.post(client, agent.url, stranded[2])  # the POS never got its answer, it retries
            assert (retry.status_code, retry.json()) == (200, {"seq": 3, "duplicate": True})
            for _ in range(3):
                assert journal.post(client, agent.url, pos.mixed()).status_code == 201
        st = agent.wait_synced(timeout=30)
        assert (st["epoch"], st["acked_through"]) == (2, 8)
        assert [r["seq"] for r in hub.ledger("S1", 1)] == list(range(1, 11))
        verdict = check_stores(hub, journal, {"S1": agent.data_dir}, epochs=(1, 2))
        assert verdict.ok, (verdict.counts(), verdict.event_lines(), verdict.details)
        assert verdict.found == verdict.acknowledged == 18
        stored = [json.loads(r["body"]) for r in hub.ledger("S1", 2)]
        assert [b["txn"]["txn_id"] for b in stored[:5]] == [t["txn_id"] for t in stranded]
    finally:
        agent.stop()
        hub.stop()
