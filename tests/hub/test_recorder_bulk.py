"""Contract of the bulk recorder (whole tables out and in, for ``cloud-hub storage copy``): every adapter in
``ADAPTERS`` (tests/hub/conftest.py) runs it through the ``db`` fixture."""

from __future__ import annotations

from cloud_hub.storage import Storage, Store
from cloud_hub.storage.copy import TABLES

from .contract_support import T0, T1, row, seed


def test_rows_round_trip_in_key_order_with_their_ids_and_identities_continue(db: Storage):
    cols = dict((t, c) for t, c, *_ in TABLES)
    with db.transaction() as tx:
        assert all(tx.row_count(t) == 0 for t in cols)
        assert tx.load_rows("stores", cols["stores"], [("S2", "UTC", T0), ("S1", "Europe/Berlin", T0)]) == 2
        tx.load_rows("writers", cols["writers"], [("S1", 1, "k1", "ab" * 32, T0, None, "till")])
        tx.load_rows("streams", cols["streams"], [("S1", 1, 2, b"\x02" * 32, T1, 0, None, None)])
        loaded = [
            (r.store_id, r.epoch, r.seq, r.body, r.body_hash, r.chain, r.sig, r.received_at) for r in (row(1), row(2))
        ]
        tx.load_rows("ledger", cols["ledger"], loaded)
        conflicts = [(7, "S1", 1, 2, b"a" * 32, b"b" * 32, T0), (3, "S1", 1, 1, b"c" * 32, b"d" * 32, T0)]
        assert tx.load_rows("conflicts", cols["conflicts"], conflicts, "id") == 2
        assert tx.load_rows("refusals", cols["refusals"], [], "id") == 0
    with db.transaction() as tx:
        tx.record_conflict("S1", 1, 2, b"e" * 32, b"f" * 32, T1)  # a new id after the highest loaded one
        tx.record_refusal("S1", 1, 3, "chain_broken: x", T1)
    with db.snapshot() as tx:
        assert list(tx.table_rows("stores", cols["stores"], "store_id")) == [
            ("S1", "Europe/Berlin", T0),
            ("S2", "UTC", T0),
        ]
        assert list(tx.table_rows("ledger", cols["ledger"], "store_id, epoch, seq")) == loaded
        assert [c.id for c in tx.conflicts("S1")] == [3, 7, 8]
        assert [r.id for r in tx.refusals("S1")] == [1]
        assert tx.get_store("S1") == Store("S1", "Europe/Berlin", T0)
        st = tx.get_stream("S1", 1)
        assert st is not None and (st.acked_through, st.head_chain, st.last_seen_at) == (2, b"\x02" * 32, T1)
        assert tx.row_count("ledger") == 2 and tx.row_count("conflicts") == 3


def test_table_rows_of_a_seeded_database_match_the_recorders(db: Storage):
    with db.transaction() as tx:
        seed(tx)
        tx.insert_ledger([row(s) for s in range(1, 4)])
    cols = dict((t, c) for t, c, *_ in TABLES)
    with db.snapshot() as tx:
        writers = list(tx.table_rows("writers", cols["writers"], "store_id, epoch"))
        ledger = [r[2] for r in tx.table_rows("ledger", cols["ledger"], "store_id, epoch, seq")]
    assert writers == [("S1", 1, "k1", "ab" * 32, T0, None, "till")]
    assert ledger == [1, 2, 3]
