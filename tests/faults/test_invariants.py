"""The invariant checker itself must be able to fail: lost, duplicated, unexpected and broken chains."""

from __future__ import annotations

import json

from storesync_harness.invariants import LedgerWatcher, judge
from sync_protocol import chain


def _records(keys: list[tuple[str, str]], tamper_at: int | None = None) -> list[dict]:
    out, prev = [], chain.genesis("S1", 1)
    for seq, (reg, txn) in enumerate(keys, 1):
        body = json.dumps({"seq": seq, "txn": {"register_id": reg, "txn_id": txn}})
        prev = chain.link(prev, body)
        if seq == tamper_at:
            body = body.replace(txn, txn + "x")
        out.append({"seq": seq, "body": body, "chain": prev.hex()})
    return out


def _watch(records: list[dict]) -> LedgerWatcher:
    w = LedgerWatcher("S1")
    for rec in records:
        w._take(rec)
    return w


def test_exact_ledger_passes() -> None:
    keys = [("R1", "a"), ("R1", "b"), ("R2", "c")]
    v = judge(_watch(_records(keys)), set(keys), set())
    assert v.ok and (v.acknowledged, v.found) == (3, 3)


def test_lost_duplicated_unexpected_and_chain_errors_are_counted() -> None:
    ledger = [("R1", "a"), ("R1", "a"), ("R9", "zz"), ("R2", "maybe")]
    v = judge(_watch(_records(ledger, tamper_at=2)), {("R1", "a"), ("R1", "b")}, {("R2", "maybe")})
    assert not v.ok
    assert (v.lost, v.duplicated, v.unexpected) == (1, 0, 2)  # the tampered body no longer names R1/a
    assert v.chain_errors == 1
    v2 = judge(_watch(_records(ledger)), {("R1", "a")}, {("R2", "maybe"), ("R9", "zz")})
    assert (v2.lost, v2.duplicated, v2.unexpected, v2.chain_errors) == (0, 1, 0, 0)


def test_a_gap_in_ledger_seqs_is_a_chain_error() -> None:
    recs = _records([("R1", "a"), ("R1", "b"), ("R1", "c")])
    v = judge(_watch([recs[0], recs[2]]), {("R1", "a"), ("R1", "c")}, set())
    assert v.chain_errors >= 1 and not v.ok
