"""Contract tests that only show with two writers: two connections (two hub replicas, on PostgreSQL two
pools) working on one database at once. Every engine of ``db_pair`` runs them; SQLite passes by
serializing writers, PostgreSQL by its row locks (``FOR UPDATE``, ``FOR UPDATE SKIP LOCKED``).

Checks are on content: the ledger holds exactly what the agent signed, each record stored once,
each delivery claimed by one claimer while its lease lasts, a strict lane handed out in seq order.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from cloud_hub._exceptions import BurstRejected
from cloud_hub.ingest import ingest_burst
from cloud_hub.storage import Delivery, DeliverySelector, DeliveryUpdate, NewDelivery, NewEvent, Storage
from cloud_hub.storage.sqlite import SQLiteStorage
from sync_protocol import keys

from .helpers import NOW, enroll_agent

T0 = "2026-11-22T09:00:00.000Z"
T1 = "2026-11-22T10:00:00.000Z"
CLOCK = 1_795_000_000.0
LEASE = 600.0


@pytest.fixture(params=["sqlite-file", "sqlite-memory", "postgresql"])
def db_pair(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[Storage, Storage]]:
    """Two storages on one database (SQLite memory: one storage shared by two threads)."""
    if request.param == "postgresql":
        from cloud_hub.storage.postgres import PostgresStorage

        url = request.getfixturevalue("postgres_url")
        a: Storage = PostgresStorage(url, busy_timeout_ms=10_000, pool_size=4)
        b: Storage = PostgresStorage(url, busy_timeout_ms=10_000, pool_size=4)
    elif request.param == "sqlite-file":
        a = SQLiteStorage(tmp_path / "hub.db", busy_timeout_ms=10_000)
        b = SQLiteStorage(tmp_path / "hub.db", busy_timeout_ms=10_000)
    else:
        a = b = SQLiteStorage(":memory:")
    yield a, b
    a.close()
    if b is not a:
        b.close()


def together(*jobs: Callable[[], None]) -> None:
    """Run the jobs in threads started at one barrier; re-raise the first failure."""
    barrier = threading.Barrier(len(jobs))
    errors: list[BaseException] = []

    def run(job: Callable[[], None]) -> None:
        try:
            barrier.wait()
            job()
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(j,)) for j in jobs]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not [t for t in threads if t.is_alive()], "a writer hung"
    if errors:
        raise errors[0]


def test_two_connections_storing_bursts_of_one_store_at_once(db_pair: tuple[Storage, Storage]):
    a, b = db_pair
    hub_key = keys.generate()
    agent = enroll_agent(a, "S1", hub_key)
    records = agent.make(120)
    stored: list[int] = []
    duplicates: list[int] = []
    guard = threading.Lock()

    def resend(storage: Storage, size: int) -> None:
        # A replica that gets the agent's resends: from what it believes is acked, overlapping the other.
        while True:
            with storage.snapshot() as tx:
                st = tx.get_stream("S1", agent.epoch)
            assert st is not None
            if st.acked_through >= len(records):
                return
            first = st.acked_through + 1
            burst = agent.burst(agent.records(first, min(first + size - 1, len(records))))
            try:
                answer = ingest_burst(storage, burst, key_id=agent.key_id, hub_key=hub_key, now=NOW)
            except BurstRejected as exc:  # pragma: no cover - reported with its body
                raise AssertionError(f"burst from {first} refused: {exc.status} {exc.error}") from None
            assert answer.receipt is not None and answer.receipt.valid(hub_key.public_key())
            with guard:
                stored.append(answer.stored)
                duplicates.append(answer.duplicates)

    together(lambda: resend(a, 7), lambda: resend(b, 11))
    assert sum(stored) == len(records)  # each record stored exactly once
    with b.snapshot() as tx:
        rows = tx.ledger_page("S1", agent.epoch, 0, 1_000)
        st = tx.get_stream("S1", agent.epoch)
    assert [(r.seq, r.body, r.chain, r.sig) for r in rows] == [(r.seq, r.body, r.chain, r.sig) for r in records]
    assert st is not None and (st.acked_through, st.head_chain) == (len(records), records[-1].chain)
    assert st.duplicates == sum(duplicates)


def _events(stores: list[str], per_store: int, sink: str) -> tuple[list[NewEvent], list[NewDelivery]]:
    events = [
        NewEvent("urn:test", f"{s}-{q}", s, 1, q, "t", f'{{"id":"{s}-{q}"}}', T0)
        for q in range(1, per_store + 1)
        for s in stores
    ]
    return events, [NewDelivery(i, sink, e.store_id, CLOCK) for i, e in enumerate(events)]


def _claim(storage: Storage, sink: str, claim: str, *, strict: bool, limit: int, now: float = CLOCK) -> list[Delivery]:
    return storage.run(
        lambda tx: tx.claim_deliveries(sink, strict=strict, now=now, lease_until=now + LEASE, claim=claim, limit=limit)
    )


def _finish(storage: Storage, claim: str, rows: list[Delivery]) -> int:
    return storage.run(
        lambda tx: tx.finish_deliveries(claim, [DeliveryUpdate(d.id, "done", True, CLOCK) for d in rows], T1)
    )


def _drain(
    storage: Storage, name: str, sink: str, *, strict: bool, log: list[tuple[str, str, int]], guard: threading.Lock
) -> None:
    n = 0
    idle = 0
    while idle < 20:
        n += 1
        claim = f"{name}-{n}"
        rows = _claim(storage, sink, claim, strict=strict, limit=5)
        if not rows:
            idle += 1
            threading.Event().wait(0.005)
            continue
        idle = 0
        with guard:
            log.extend((name, d.lane, d.seq) for d in rows)
        assert _finish(storage, claim, rows) == len(rows)


def test_two_delivery_claimers_on_one_lane_never_take_the_same_row(db_pair: tuple[Storage, Storage]):
    a, b = db_pair
    events, deliveries = _events(["S1"], 150, "a")
    with a.transaction() as tx:
        tx.insert_events(events, deliveries)
    log: list[tuple[str, str, int]] = []
    guard = threading.Lock()
    together(
        lambda: _drain(a, "A", "a", strict=False, log=log, guard=guard),
        lambda: _drain(b, "B", "a", strict=False, log=log, guard=guard),
    )
    seqs = sorted(seq for _, _, seq in log)
    assert seqs == list(range(1, 151))  # every delivery handed out once, none twice
    with a.snapshot() as tx:
        counts = {c.sink: c.counts for c in tx.sink_counts()}
        rows = tx.list_deliveries(DeliverySelector(sink="a"), limit=1_000)
    assert counts == {"a": {"done": 150}}
    assert {d.attempts for d in rows} == {1}


def test_a_strict_lane_is_never_handed_out_of_seq_order(db_pair: tuple[Storage, Storage]):
    a, b = db_pair
    events, deliveries = _events(["S1", "S2"], 60, "erp")
    with a.transaction() as tx:
        tx.insert_events(events, deliveries)
    log: list[tuple[str, str, int]] = []
    guard = threading.Lock()
    together(
        lambda: _drain(a, "A", "erp", strict=True, log=log, guard=guard),
        lambda: _drain(b, "B", "erp", strict=True, log=log, guard=guard),
    )
    for lane in ("S1", "S2"):
        assert [seq for _, ln, seq in log if ln == lane] == list(range(1, 61)), f"lane {lane} out of order"


def test_an_expired_lease_is_taken_over_by_the_other_claimer(db_pair: tuple[Storage, Storage]):
    a, b = db_pair
    events, deliveries = _events(["S1"], 3, "erp")
    with a.transaction() as tx:
        tx.insert_events(events, deliveries)
    held = _claim(a, "erp", "A", strict=True, limit=10)
    assert [d.seq for d in held] == [1, 2, 3]
    assert _claim(b, "erp", "B", strict=True, limit=10, now=CLOCK + LEASE - 1) == []  # lease still running
    taken = _claim(b, "erp", "B", strict=True, limit=10, now=CLOCK + LEASE + 1)
    assert [(d.seq, d.claim) for d in taken] == [(1, "B"), (2, "B"), (3, "B")]
    assert _finish(a, "A", held) == 0  # the old holder's results are left alone
    assert _finish(b, "B", taken) == 3
    with a.snapshot() as tx:
        assert {c.sink: c.counts for c in tx.sink_counts()} == {"erp": {"done": 3}}
