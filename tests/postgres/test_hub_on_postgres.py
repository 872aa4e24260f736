"""A real ``cloud-hub serve`` process on the real PostgreSQL: bursts from a real agent stored with their
content, ``/readyz`` with schema version and reachability, ``cloud-hub migrate``, and the database
taken away mid-run (a TCP cut between hub and server; the server itself keeps running for others):
503 with ``Retry-After``, never 500, capture goes on, and the hub recovers by itself.
"""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import pytest

from storesync_harness.invariants import PosJournal, check_stores
from storesync_harness.pos import Pos
from storesync_harness.processes import Agent, Hub, hub_cli
from storesync_harness.simstore import SimStore
from storesync_harness.tcpcut import TcpCut
from sync_protocol.wire import BURSTS_PATH

pytestmark = [pytest.mark.postgres, pytest.mark.slow]


def post_sales(agent: Agent, journal: PosJournal, pos: Pos, n: int) -> None:
    with httpx.Client(timeout=10) as client:
        for _ in range(n):
            r = journal.post(client, agent.url, pos.mixed())
            assert r.status_code == 201, r.text


def assert_content(hub: Hub, agent: Agent, journal: PosJournal) -> None:
    verdict = check_stores(hub, journal, {"S1": agent.data_dir})
    assert verdict.ok, (verdict.counts(), verdict.event_lines(), verdict.details)
    assert verdict.found == verdict.acknowledged == len(journal.acknowledged) > 0


def test_a_hub_process_on_postgresql_stores_what_the_pos_sent(tmp_path: Path, postgres_url: str):
    out = hub_cli("migrate", "--data-dir", str(tmp_path / "hub"), "--database", postgres_url).stdout
    assert out.strip() == "postgresql: schema version 3 of 3; applied now: 1, 2, 3"
    hub = Hub.create(tmp_path / "hub", database=postgres_url).start()
    agent = Agent.enrolled(tmp_path / "agent", hub, "S1", "Europe/Berlin", "--sync-interval", "1").start()
    try:
        ready = httpx.get(hub.url + "/readyz", timeout=10).json()
        assert ready["database"] == {"engine": "postgresql", "latest_schema": 3, "reachable": True, "schema_version": 3}
        journal = PosJournal()
        post_sales(agent, journal, Pos("R1", seed=3), 40)
        assert agent.wait_synced(timeout=60)["acked_through"] == 40
        assert_content(hub, agent, journal)
        again = hub_cli("migrate", "--data-dir", str(tmp_path / "hub"), "--database", postgres_url).stdout
        assert again.strip() == "postgresql: schema version 3 of 3; applied now: none (up to date)"
    finally:
        agent.stop()
        hub.stop()
    assert not (tmp_path / "hub" / "hub.db").exists()  # nothing went to the SQLite default


def test_postgresql_unreachable_is_503_with_retry_after_and_the_hub_recovers(tmp_path: Path, postgres_url: str):
    with TcpCut(5432) as cut:
        url = postgres_url.replace("127.0.0.1:5432", f"127.0.0.1:{cut.port}")
        assert url != postgres_url
        hub = Hub.create(tmp_path / "hub", database=url).start()
        agent = Agent.enrolled(tmp_path / "agent", hub, "S1", "Europe/Berlin", "--sync-interval", "1").start()
        sim = SimStore("S2")
        sim.enroll(hub.url, hub.add_store("S2"))
        sim.seal(5)
        (burst,) = sim.bursts(10)
        try:
            journal, pos = PosJournal(), Pos("R1", seed=4)
            post_sales(agent, journal, pos, 20)
            assert agent.wait_synced(timeout=60)["acked_through"] == 20

            cut.cut()
            post_sales(agent, journal, pos, 20)  # capture never waits on the hub or its database
            with httpx.Client(timeout=30) as client:
                answers = [
                    client.post(hub.url + BURSTS_PATH, content=burst.content, headers=burst.headers),
                    client.get(hub.url + "/readyz"),
                    client.get(hub.url + "/v1/admin/stores", headers={"Authorization": f"Bearer {hub.admin_token}"}),
                ]
            for r in answers:
                assert r.status_code == 503, (r.request.url, r.status_code, r.text)
                assert int(r.headers["Retry-After"]) >= 1
                assert r.json()["error"] in ("busy", "unavailable")
            assert answers[1].json()["database"]["reachable"] is False
            time.sleep(2)  # the agent keeps trying meanwhile and gets 503s
            assert agent.status()["acked_through"] == 20

            cut.restore()
            assert agent.wait_synced(timeout=60)["acked_through"] == 40
            with httpx.Client(timeout=30) as client:
                r = client.post(hub.url + BURSTS_PATH, content=burst.content, headers=burst.headers)
                assert r.status_code == 200, r.text
                sim.check_answer(r.content, 5)
                assert client.get(hub.url + "/readyz").status_code == 200
            assert_content(hub, agent, journal)
        finally:
            agent.stop()
            hub.stop()
    log = (tmp_path / "hub" / "hub.log").read_text()
    assert "internal error" not in log and "Traceback" not in log, log[-3000:]
