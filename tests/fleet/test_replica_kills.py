"""kill -9 of one hub replica during ingest and during delivery while the other serves on (real processes).

Each test runs on one shared SQLite file (replicas on one machine) and on PostgreSQL (a fresh schema per
test). The check is the harness's content checker: every sale the POS was told is saved is in the ledger
exactly once with the content the POS sent, chain and store signatures verify, and every ledger record has
exactly its event at every sink; the agent's receipt verifies (the agent refuses one that does not).
"""

from __future__ import annotations

import random
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from storesync_harness.invariants import check_stores, jsonl_events, wait_delivered
from storesync_harness.replicas import ReplicaSet, wait_synced
from storesync_harness.rig import PosDriver
from storesync_harness.standins import StandIn, start


@pytest.fixture(params=["sqlite", "postgresql"])
def database(request: pytest.FixtureRequest) -> str | None:
    """None (one shared SQLite file) or a PostgreSQL URL with a fresh schema (tests/conftest.py drops it)."""
    return None if request.param == "sqlite" else str(request.getfixturevalue("postgres_url"))


def _check(
    replicas: ReplicaSet, drivers: dict[str, PosDriver], agent_dirs: dict[str, Path], more: dict | None = None
) -> None:
    """Wait until every record has its events delivered, then read the sinks and check every store."""
    hub = replicas.serving()
    wait_delivered(hub)
    sinks = {"events": jsonl_events(replicas.sink_file), **(more or {})}
    for store_id, driver in drivers.items():
        v = check_stores(hub, driver.journal, {store_id: agent_dirs[store_id]}, sink_files={}, sinks=sinks)
        assert v.ok and v.found == v.acknowledged > 0, (store_id, v.counts(), v.event_lines(), v.details)


def test_kill_9_of_a_replica_during_ingest(tmp_path: Path, database: str | None) -> None:
    rng = random.Random(7)
    with ReplicaSet(tmp_path, 2, database=database) as replicas:
        replicas.start()
        a, b = replicas.hubs
        agents = {s: replicas.enrolled_agent(tmp_path / s, s) for s in ("S1", "S2")}
        drivers: dict[str, PosDriver] = {}
        try:
            for i, (s, agent) in enumerate(agents.items()):
                agent.start()
                drivers[s] = PosDriver(agent.url, registers=2, interval=0.005, seed=i).start()
                drivers[s].resume()
            time.sleep(1.0)
            for victim, survivor in ((a, b), (b, a)):  # always one replica serving
                time.sleep(rng.uniform(0.3, 1.0))
                victim.kill()  # SIGKILL, bursts in flight
                before = replicas.bursts_served(survivor)
                deadline = time.monotonic() + 20  # the agents fail over with their backoff (base 1 s, jittered)
                while replicas.bursts_served(survivor) <= before and time.monotonic() < deadline:
                    time.sleep(0.1)
                assert replicas.bursts_served(survivor) > before, f"{survivor.name} served nothing after the kill"
                victim.start(60)
            for d in drivers.values():
                d.pause()
                d.settle(rng)
            for agent in agents.values():
                wait_synced(agent, 60)
            _check(replicas, drivers, {s: tmp_path / s for s in agents})
        finally:
            for d in drivers.values():
                d.close()
            for agent in agents.values():
                agent.stop()


@pytest.fixture
def receiver(tmp_path: Path) -> Iterator[StandIn]:
    s = start("webhook_receiver", tmp_path / "receiver", "--secret", "whsec-fleet")
    try:
        yield s
    finally:
        s.service.kill()  # it may still hold a hung answer: no graceful wait


def test_kill_9_of_a_replica_during_delivery(tmp_path: Path, database: str | None, receiver: StandIn) -> None:
    hook = (
        '\n[[sinks]]\nname = "hook"\nkind = "webhook"\nrole = "stream"\n'
        f'url = "{receiver.url}/h"\nsecret = "whsec-fleet"\ntimeout_s = 6\n'
    )
    # The receiver takes the first event it gets, then holds its answer: the delivery stays in flight
    # under replica A's claim (lease 8 s, longer than the sink's timeout) when A is killed.
    receiver.faults(lose_responses=1, hang_s=30)
    with ReplicaSet(tmp_path, 2, database=database, lease_s=8, extra_toml=hook) as replicas:
        a, b = replicas.hubs
        a.start(60)  # only A's workers exist while the first deliveries are claimed
        agent = replicas.enrolled_agent(tmp_path / "S1", "S1")
        agent.start()
        driver = PosDriver(agent.url, registers=2, interval=0.01, seed=3).start()
        try:
            driver.resume()
            time.sleep(1.0)
            replicas.wait_in_flight("hook")
            deadline = time.monotonic() + 10
            while not receiver.requests() and time.monotonic() < deadline:
                time.sleep(0.05)
            assert receiver.requests(), "the receiver got nothing"
            b.start(60)  # B serves on (ingest and delivery) ...
            a.kill()  # ... while A dies holding a delivered-but-unconfirmed event
            time.sleep(2.0)
            driver.pause()
            driver.settle(random.Random(3))
            wait_synced(agent, 60)
            assert replicas.bursts_served(b) > 0
            wait_delivered(b, 120)
            got = receiver.get("/_standin/events")["events"]
            reqs = receiver.requests()
            first_key = reqs[0]["idempotency_key"]
            assert sum(r["idempotency_key"] == first_key for r in reqs) >= 2  # redelivered after the lease ...
            _check(replicas, {"S1": driver}, {"S1": tmp_path / "S1"}, {"hook": got})  # ... and held once
        finally:
            driver.close()
            agent.stop()
