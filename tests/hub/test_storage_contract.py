"""The storage contract: every adapter must pass these tests.

Add an adapter by adding a factory to ``ADAPTERS`` in ``tests/hub/conftest.py`` (the PostgreSQL one will
skip without a server); the ``db`` fixture runs every test here and in ``test_storage_contract_forwarding.py``
once per adapter.
"""

from __future__ import annotations

import threading
from pathlib import Path

import apsw
import pytest

from cloud_hub._exceptions import InputError, StorageBusy, StorageError
from cloud_hub.storage import (
    EnrollmentToken,
    LedgerRow,
    Storage,
    Store,
    UnitOfWork,
    Writer,
)
from cloud_hub.storage.sqlite import MIGRATIONS, SQLiteStorage

T0 = "2026-11-22T09:00:00.000Z"
T1 = "2026-11-22T10:00:00.000Z"


def seed(tx: UnitOfWork, store_id: str = "S1", epoch: int = 1, key_id: str = "k1") -> None:
    if tx.get_store(store_id) is None:
        tx.insert_store(Store(store_id, "Europe/Berlin", T0))
    tx.insert_writer(Writer(store_id, epoch, key_id, "ab" * 32, T0, "till"))
    tx.create_stream(store_id, epoch, b"\x00" * 32)


def row(seq: int, store_id: str = "S1", epoch: int = 1) -> LedgerRow:
    body = f'{{"seq":{seq}}}'
    return LedgerRow(store_id, epoch, seq, body, bytes([seq % 256]) * 32, bytes([1]) * 32, bytes([2]) * 64, T1)


def test_schema_is_migrated(db: Storage):
    assert db.schema_version() == MIGRATIONS[-1][0]


def test_stores_round_trip_and_duplicates_are_refused(db: Storage):
    with db.transaction() as tx:
        tx.insert_store(Store("S2", "UTC", T0))
        tx.insert_store(Store("S1", "Europe/Berlin", T0))
    with db.snapshot() as tx:
        assert tx.get_store("S1") == Store("S1", "Europe/Berlin", T0)
        assert tx.get_store("nope") is None
        assert [s.store_id for s in tx.list_stores()] == ["S1", "S2"]
    with pytest.raises(InputError), db.transaction() as tx:
        tx.insert_store(Store("S1", "UTC", T1))


def test_failed_transaction_is_rolled_back(db: Storage):
    with pytest.raises(RuntimeError), db.transaction() as tx:
        tx.insert_store(Store("S1", "UTC", T0))
        raise RuntimeError("boom")
    with db.snapshot() as tx:
        assert tx.get_store("S1") is None


def test_tokens_are_used_once(db: Storage):
    with db.transaction() as tx:
        tx.insert_store(Store("S1", "UTC", T0))
        tx.insert_token(EnrollmentToken(b"h" * 32, "S1", T0, T1))
    with db.transaction() as tx:
        assert tx.get_token(b"h" * 32) == EnrollmentToken(b"h" * 32, "S1", T0, T1, None)
        assert tx.get_token(b"x" * 32) is None
        assert tx.mark_token_used(b"h" * 32, T1) is True
        assert tx.mark_token_used(b"h" * 32, T1) is False
        tok = tx.get_token(b"h" * 32)
    assert tok is not None and tok.used_at == T1


def test_writers_epochs_and_supersession(db: Storage):
    with db.transaction() as tx:
        assert tx.max_epoch("S1") == 0
        seed(tx, epoch=1, key_id="k1")
        seed(tx, epoch=2, key_id="k2")
        assert tx.max_epoch("S1") == 2
        assert tx.supersede_writers("S1", 2, T1) == 1
        assert tx.supersede_writers("S1", 2, T1) == 0
    with db.snapshot() as tx:
        k1, k2 = tx.writer_by_key("k1"), tx.writer_by_key("k2")
        assert tx.writer_by_key("k3") is None
        assert [w.epoch for w in tx.writers("S1")] == [1, 2]
    assert k1 is not None and k1.superseded_at == T1 and k1.hostname == "till"
    assert k2 is not None and k2.superseded_at is None and k2.public_key == "ab" * 32


def test_a_key_id_is_bound_once(db: Storage):
    with db.transaction() as tx:
        seed(tx, "S1", 1, "k1")
    with pytest.raises(InputError), db.transaction() as tx:
        tx.insert_store(Store("S2", "UTC", T0))
        tx.insert_writer(Writer("S2", 1, "k1", "cd" * 32, T0))
    with db.snapshot() as tx:
        assert tx.get_store("S2") is None


def test_stream_updates_keep_the_clock_unless_given(db: Storage):
    clock = {"theta_ms": 12.5, "delta_ms": 3.0, "sampled_at": T0}
    with db.transaction() as tx:
        seed(tx)
        tx.update_stream("S1", 1, acked_through=3, head_chain=b"\x03" * 32, last_seen_at=T0, clock=clock)
    with db.transaction() as tx:
        tx.update_stream("S1", 1, acked_through=4, head_chain=b"\x04" * 32, last_seen_at=T1, add_duplicates=2)
        st = tx.get_stream("S1", 1)
        assert tx.get_stream("S1", 2) is None
    assert st is not None
    assert (st.acked_through, st.head_chain, st.last_seen_at, st.duplicates) == (4, b"\x04" * 32, T1, 2)
    assert st.clock == clock
    with pytest.raises(StorageError), db.transaction() as tx:
        tx.update_stream("S9", 1, acked_through=1, head_chain=b"", last_seen_at=T1)


def test_ledger_append_range_hashes_and_pages(db: Storage):
    with db.transaction() as tx:
        seed(tx)
        tx.insert_ledger([row(s) for s in range(1, 11)])
    with db.snapshot() as tx:
        hashes = tx.ledger_hashes("S1", 1, 3, 5)
        page = tx.ledger_page("S1", 1, after=7, limit=2)
        assert tx.ledger_page("S1", 2, after=0, limit=10) == []
        assert tx.ledger_hashes("S1", 1, 11, 20) == {}
    assert hashes == {3: bytes([3]) * 32, 4: bytes([4]) * 32, 5: bytes([5]) * 32}
    assert page == [row(8), row(9)]


def test_ledger_refuses_a_second_record_at_the_same_seq(db: Storage):
    with db.transaction() as tx:
        seed(tx)
        tx.insert_ledger([row(1)])
    with pytest.raises(StorageError), db.transaction() as tx:
        tx.insert_ledger([row(2), row(1)])
    with db.snapshot() as tx:
        assert [r.seq for r in tx.ledger_page("S1", 1, 0, 10)] == [1]


def test_conflicts_and_refusals_are_kept_per_epoch(db: Storage):
    with db.transaction() as tx:
        seed(tx, epoch=1, key_id="k1")
        seed(tx, epoch=2, key_id="k2")
        tx.record_conflict("S1", 1, 3, b"a" * 32, b"b" * 32, T0)
        tx.record_refusal("S1", 2, 7, "chain_broken: x", T1)
    with db.snapshot() as tx:
        (conflict,) = tx.conflicts("S1")
        assert tx.conflicts("S1", 2) == []
        assert [(r.seq, r.reason) for r in tx.refusals("S1", 2)] == [(7, "chain_broken: x")]
        assert tx.refusals("S1", 1) == []
    assert (conflict.epoch, conflict.seq, conflict.stored_hash, conflict.received_hash) == (1, 3, b"a" * 32, b"b" * 32)


def test_store_summaries_show_the_newest_stream_and_all_conflicts(db: Storage):
    with db.transaction() as tx:
        tx.insert_store(Store("S0", "UTC", T0))
        seed(tx, epoch=1, key_id="k1")
        seed(tx, epoch=2, key_id="k2")
        tx.update_stream("S1", 2, acked_through=9, head_chain=b"\x09" * 32, last_seen_at=T1, add_duplicates=4)
        tx.record_conflict("S1", 1, 3, b"a" * 32, b"b" * 32, T0)
    with db.snapshot() as tx:
        s0, s1 = tx.store_summaries()
    assert (s0.store_id, s0.epoch, s0.acked_through, s0.last_seen_at, s0.conflicts) == ("S0", None, 0, None, 0)
    assert (s1.epoch, s1.acked_through, s1.last_seen_at, s1.duplicates, s1.conflicts) == (2, 9, T1, 4, 1)


def test_concurrent_transactions_are_serialized(db: Storage):
    with db.transaction() as tx:
        seed(tx)
    errors: list[BaseException] = []

    def bump() -> None:
        try:
            for _ in range(25):
                with db.transaction() as tx:
                    st = tx.get_stream("S1", 1)
                    assert st is not None
                    tx.update_stream(
                        "S1", 1, acked_through=st.acked_through + 1, head_chain=st.head_chain, last_seen_at=T1
                    )
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=bump) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    with db.snapshot() as tx:
        st = tx.get_stream("S1", 1)
    assert st is not None and st.acked_through == 100


# -- SQLite-specific guarantees ---------------------------------------------------------------------------


def test_sqlite_ledger_is_immutable_even_to_raw_sql(tmp_path: Path):
    db = SQLiteStorage(tmp_path / "hub.db")
    with db.transaction() as tx:
        seed(tx)
        tx.insert_ledger([row(1)])
    db.close()
    conn = apsw.Connection(str(tmp_path / "hub.db"))
    with pytest.raises(apsw.ConstraintError, match="immutable"):
        conn.execute("UPDATE ledger SET body = 'x'")
    with pytest.raises(apsw.ConstraintError, match="immutable"):
        conn.execute("DELETE FROM ledger")
    assert conn.execute("PRAGMA journal_mode").fetchone() == ("wal",)
    conn.close()


def test_sqlite_reopen_does_not_reapply_migrations(tmp_path: Path):
    SQLiteStorage(tmp_path / "hub.db").close()
    db = SQLiteStorage(tmp_path / "hub.db")
    with db.snapshot() as tx:
        assert tx.list_stores() == []
    assert db.schema_version() == len(MIGRATIONS)
    db.close()


def test_sqlite_lock_held_past_the_busy_timeout_is_busy(tmp_path: Path):
    first = SQLiteStorage(tmp_path / "hub.db")
    second = SQLiteStorage(tmp_path / "hub.db", busy_timeout_ms=100)
    try:
        with first.transaction() as tx:
            tx.insert_store(Store("S1", "UTC", T0))
            with pytest.raises(StorageBusy) as info, second.transaction():
                pass
            assert info.value.status == 503 and info.value.headers() == {"Retry-After": "1"}
        with second.snapshot() as tx:
            assert tx.get_store("S1") is not None
    finally:
        first.close()
        second.close()


def test_closed_storage_refuses_work(tmp_path: Path):
    db = SQLiteStorage(tmp_path / "hub.db")
    db.close()
    with pytest.raises(StorageError), db.transaction():
        pass
