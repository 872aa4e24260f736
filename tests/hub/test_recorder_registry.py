"""Contract of the registry recorder (stores, enrollment tokens, writers): every adapter in ``ADAPTERS``
(tests/hub/conftest.py) runs it through the ``db`` fixture. Interface calls only: no SQL, no adapter internals."""

from __future__ import annotations

import pytest

from cloud_hub._exceptions import InputError
from cloud_hub.storage import EnrollmentToken, Storage, Store, Writer

from .contract_support import T0, T1, seed


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
