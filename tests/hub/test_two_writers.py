"""Contract tests that only show with two writers: two connections (two hub replicas, on PostgreSQL two
pools) working on one database at once. Every engine of ``db_pair`` runs them; SQLite passes by
serializing writers, PostgreSQL by its row locks (``FOR UPDATE``, ``FOR UPDATE SKIP LOCKED``).

Checks are on content: the ledger holds exactly what the agent signed, each record stored once,
each delivery claimed by one claimer while its lease lasts, a strict lane handed out in seq order.
"""

from __future__ import annotations

import contextlib
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from cloud_hub._exceptions import BurstRejected, StorageBusy, StorageRetryable
from cloud_hub.ingest import ingest_burst
from cloud_hub.storage import (
    Delivery,
    DeliverySelector,
    DeliveryUpdate,
    NewDelivery,
    NewEvent,
    Storage,
    Store,
    UnitOfWork,
    Writer,
)
from cloud_hub.storage.recorders import RETRY_ATTEMPTS
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


def test_a_deadlock_is_one_retryable_error_and_storage_run_runs_the_loser_again(db_pair: tuple[Storage, Storage]):
    a, b = db_pair
    with a.transaction() as tx:
        for store in ("S1", "S2"):
            tx.insert_store(Store(store, "UTC", T0))
            tx.insert_writer(Writer(store, 1, f"{store}-k", "ab" * 32, T0))
            tx.create_stream(store, 1, b"\x00" * 32)
    both_locked_one = threading.Barrier(2, timeout=20)
    runs: Counter[str] = Counter()

    def bump(storage: Storage, name: str, first: str, second: str) -> None:
        def work(tx: UnitOfWork) -> None:
            runs[name] += 1
            for i, store in enumerate((first, second)):
                st = tx.get_stream(store, 1)  # locks the row on PostgreSQL
                assert st is not None
                if i == 0 and runs[name] == 1:
                    with contextlib.suppress(threading.BrokenBarrierError):
                        both_locked_one.wait()  # each holds one row and wants the other's: a deadlock
                tx.update_stream(
                    store, 1, acked_through=st.acked_through + 1, head_chain=st.head_chain, last_seen_at=T1
                )

        storage.run(work)

    if a is b or isinstance(a, SQLiteStorage):
        both_locked_one.abort()  # one SQLite writer at a time: no deadlock to make
    together(lambda: bump(a, "A", "S1", "S2"), lambda: bump(b, "B", "S2", "S1"))
    with a.snapshot() as tx:
        assert [tx.get_stream(s, 1).acked_through for s in ("S1", "S2")] == [2, 2]  # type: ignore[union-attr]
    if isinstance(a, SQLiteStorage):
        assert runs == Counter(A=1, B=1)
    else:
        assert sorted(runs.values()) == [1, 2]  # the database picked one victim; it ran again and succeeded


def test_storage_run_gives_up_after_a_bounded_number_of_runs(db: Storage):
    runs = 0

    def always_conflicts(tx: UnitOfWork) -> None:
        nonlocal runs
        runs += 1
        raise StorageRetryable()

    with pytest.raises(StorageRetryable) as info:
        db.run(always_conflicts)
    assert runs == RETRY_ATTEMPTS == 4
    assert info.value.status == 503 and info.value.headers() == {"Retry-After": "1"}


def test_postgresql_locks_one_stream_while_other_stores_proceed(postgres_url: str):
    from cloud_hub.storage.postgres import PostgresStorage

    hub_key = keys.generate()
    a = PostgresStorage(postgres_url, busy_timeout_ms=500, pool_size=2)
    b = PostgresStorage(postgres_url, busy_timeout_ms=500, pool_size=2)
    try:
        s1, s2 = enroll_agent(a, "S1", hub_key), enroll_agent(a, "S2", hub_key)
        s1.make(3)
        s2.make(3)
        with a.transaction() as held:
            assert held.get_stream("S1", 1) is not None  # replica A is in the middle of a burst of S1
            answer = ingest_burst(b, s2.burst(s2.records(1, 3)), key_id=s2.key_id, hub_key=hub_key, now=NOW)
            assert answer.acked_through == 3  # another store is not held up
            with pytest.raises(StorageBusy) as info:  # the same store waits, here past its lock timeout
                ingest_burst(b, s1.burst(s1.records(1, 3)), key_id=s1.key_id, hub_key=hub_key, now=NOW)
            assert info.value.status == 503 and info.value.headers() == {"Retry-After": "1"}
        answer = ingest_burst(b, s1.burst(s1.records(1, 3)), key_id=s1.key_id, hub_key=hub_key, now=NOW)
        assert answer.acked_through == 3 and answer.stored == 3  # nothing of the refused attempt was kept
    finally:
        a.close()
        b.close()
