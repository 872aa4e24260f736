"""Contract of the book recorder (stock movements, time fallbacks), derive-error resolution and the
stream backlog. Every adapter in ``ADAPTERS`` (tests/hub/conftest.py) must pass; interface calls only."""

from __future__ import annotations

from cloud_hub.storage import StockMove, Storage, TimeFallback

from .contract_support import T0, T1, seed


def move(txn_id: str, adjustments: list[dict[str, str]], *, register: str = "R1", seq: int = 1) -> StockMove:
    return StockMove("S1", register, txn_id, 1, seq, f"S1:1:{seq}:inventory", adjustments)


def test_stock_moves_are_upserted_per_store_register_and_txn(db: Storage):
    sale = move("T1", [{"sku": "A", "delta": "-2"}])
    with db.transaction() as tx:
        tx.record_stock_moves([sale, move("T1", [{"sku": "B", "delta": "-1"}], register="R2", seq=2)])
        tx.record_stock_moves([])
    with db.transaction() as tx:
        assert tx.stock_moves("S1", [("R1", "T1"), ("R1", "T9"), ("R1", "T1")]) == {("R1", "T1"): sale}
        assert tx.stock_moves("S2", [("R1", "T1")]) == {}
        tx.record_stock_moves([move("T1", [], seq=7)])  # the void reversed it: nothing left to reverse
    with db.snapshot() as tx:
        got = tx.stock_moves("S1", [("R1", "T1"), ("R2", "T1")])
    assert got[("R1", "T1")].adjustments == [] and got[("R1", "T1")].seq == 7
    assert got[("R2", "T1")].adjustments == [{"sku": "B", "delta": "-1"}]


def test_time_fallbacks_are_listed_newest_first_and_counted(db: Storage):
    def fb(store: str, seq: int) -> TimeFallback:
        return TimeFallback(0, store, 1, seq, "R1", f"T{seq}", "2026-10-01T10:00:00+02:00",
                            "2026-11-22T09:00:00.000Z", "file-fallback", "batch_time_too_old", T0)  # fmt: skip

    with db.transaction() as tx:
        assert tx.time_fallbacks() == [] and tx.time_fallback_counts() == {}
        tx.record_time_fallbacks([fb("S1", 1), fb("S2", 4), fb("S1", 2)])
    with db.snapshot() as tx:
        every = tx.time_fallbacks()
        s1 = tx.time_fallbacks("S1", limit=1)
        counts = tx.time_fallback_counts()
    assert [(f.store_id, f.seq) for f in every] == [("S1", 2), ("S2", 4), ("S1", 1)]
    assert len({f.id for f in every}) == 3
    assert [(f.seq, f.method, f.reason, f.pos_time) for f in s1] == [
        (2, "file-fallback", "batch_time_too_old", "2026-10-01T10:00:00+02:00")]  # fmt: skip
    assert counts == {"S1": 2, "S2": 1}


def test_a_derive_error_is_resolved_exactly_once(db: Storage):
    with db.transaction() as tx:
        tx.record_derive_error("S1", 1, 4, "invalid_transaction: txn.total: ...", T0)
        tx.record_derive_error("S1", 1, 5, "bad_body: ...", T0)
    with db.snapshot() as tx:
        first, second = tx.derive_errors("S1")
    assert (first.code, second.code, first.resolved_at) == ("invalid_transaction", "bad_body", None)
    with db.transaction() as tx:
        assert tx.resolve_derive_error(first.id, T1) is True
        assert tx.resolve_derive_error(first.id, T1) is False
        assert tx.resolve_derive_error(999_999, T1) is False
    with db.snapshot() as tx:
        assert tx.derive_error(first.id).resolved_at == T1  # type: ignore[union-attr]
        assert tx.derive_error(999_999) is None
        assert [e.seq for e in tx.derive_errors("S1", open_only=True)] == [5]
        assert [e.seq for e in tx.derive_errors()] == [4, 5]


def test_stream_backlog_is_kept_unless_given(db: Storage):
    with db.transaction() as tx:
        seed(tx)
        tx.update_stream("S1", 1, acked_through=0, head_chain=b"\0" * 32, last_seen_at=T0,
                         backlog={"pending": 12, "oldest_pending_at": T0})  # fmt: skip
        tx.update_stream("S1", 1, acked_through=3, head_chain=b"\3" * 32, last_seen_at=T1)
    with db.snapshot() as tx:
        stream = tx.get_stream("S1", 1)
    assert stream is not None and stream.backlog == {"pending": 12, "oldest_pending_at": T0}


def test_an_agent_health_report_reaches_the_store_list_and_a_healthy_burst_clears_it(db: Storage):
    reason = "outbox damaged at seq 5: record missing (next stored is 6)"
    blocked = {"pending": 6, "oldest_pending_age_s": 3.0, "blocked": "outbox_damaged", "blocked_reason": reason,
               "blocked_seq": 5}  # fmt: skip
    with db.transaction() as tx:
        seed(tx)
        tx.update_stream("S1", 1, acked_through=4, head_chain=b"\4" * 32, last_seen_at=T0, backlog=blocked)
    with db.snapshot() as tx:
        (summary,) = [s for s in tx.store_summaries() if s.store_id == "S1"]
    assert summary.backlog == blocked
    with db.transaction() as tx:
        tx.update_stream("S1", 1, acked_through=10, head_chain=b"\5" * 32, last_seen_at=T1, backlog={"pending": 0})
    with db.snapshot() as tx:
        (summary,) = [s for s in tx.store_summaries() if s.store_id == "S1"]
    assert summary.backlog == {"pending": 0}
