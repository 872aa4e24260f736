"""Contract of the ledger recorder (streams, ledger, conflicts, refusals): every adapter in ``ADAPTERS``
(tests/hub/conftest.py) runs it through the ``db`` fixture. Interface calls only: no SQL, no adapter internals."""

from __future__ import annotations

import threading

import pytest

from cloud_hub._exceptions import StorageError
from cloud_hub.storage import Storage

from .contract_support import T0, T1, row, seed


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
