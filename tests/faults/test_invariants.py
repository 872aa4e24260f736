"""The content checker itself must be able to fail: every count it prints goes up on its own fault."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest

from storesync_harness.invariants import LedgerWatcher, PosJournal, encode, judge
from storesync_harness.pos import Pos
from sync_protocol import chain, keys
from sync_protocol.canonical import canonical_dumps
from sync_protocol.record import make_body
from sync_protocol.transaction import parse_transaction

KEY = keys.generate()


def _ledger(txns: list[dict[str, Any]], key: keys.Ed25519PrivateKey = KEY) -> list[dict[str, Any]]:
    """Ledger records as the hub's admin API gives them, sealed the way the agent seals them."""
    out, prev = [], chain.genesis("S1", 1)
    for seq, txn in enumerate(txns, 1):
        canonical = parse_transaction(txn).canonical()
        body = make_body(
            store_id="S1", epoch=1, seq=seq, kind=txn["kind"], captured_at="2026-11-22T10:00:00+01:00", txn=canonical
        )
        prev = chain.link(prev, body)
        out.append({"seq": seq, "body": body, "chain": prev.hex(), "sig": keys.sign(key, prev).hex()})
    return out


def _events(ledger: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for rec in ledger:
        body = json.loads(rec["body"])
        data = {"store_id": "S1", "epoch": 1, "seq": rec["seq"], "kind": body["kind"], "txn": body["txn"]}
        out.append({"id": f"S1:1:{rec['seq']}", "type": f"retail.pos.{body['kind']}.v1", "data": data})
        out.append({"id": f"S1:1:{rec['seq']}:inventory", "type": "retail.inventory.adjusted.v1", "data": {}})
    return out


def _watch(records: list[dict[str, Any]], public: keys.Ed25519PublicKey | None = None) -> LedgerWatcher:
    w = LedgerWatcher("S1", public or KEY.public_key())
    for rec in records:
        w.take(rec)
    return w


@pytest.fixture
def sales() -> list[dict[str, Any]]:
    pos = Pos("R1", seed=5)
    return [pos.mixed() for _ in range(6)]


def _journal(txns: list[dict[str, Any]], status: int | None = 201) -> PosJournal:
    j = PosJournal()
    for t in txns:
        j.record(t, status)
    return j


def test_exact_ledger_and_events_pass(sales: list[dict[str, Any]]) -> None:
    ledger = _ledger(sales)
    v = judge(_watch(ledger), _journal(sales), sinks={"a": _events(ledger), "b": _events(ledger)})
    assert v.ok, v.details
    assert (v.acknowledged, v.found, v.mismatched, v.bad_signatures) == (6, 6, 0, 0)
    assert v.events_checked == ["a", "b"] and v.event_problems == 0


def test_a_changed_amount_with_the_same_key_is_a_content_mismatch(sales: list[dict[str, Any]]) -> None:
    """The bug keys-only checks miss: the hub holds the right (register_id, txn_id) with another amount."""
    ledger = _ledger(sales)
    body = json.loads(ledger[2]["body"])
    body["txn"]["total"] = "999.99"
    ledger = _resealed(ledger, 2, body)
    v = judge(_watch(ledger), _journal(sales), sinks={"a": _events(ledger)})
    assert not v.ok
    assert (v.lost, v.duplicated, v.unexpected, v.chain_errors, v.bad_signatures) == (0, 0, 0, 0, 0)
    assert v.mismatched == 1 and v.found == 6
    assert any("content mismatch: R1/" in d for d in v.details)


def _resealed(ledger: list[dict[str, Any]], index: int, body: dict[str, Any]) -> list[dict[str, Any]]:
    """Replace one body and re-chain and re-sign everything after it: only the content is wrong."""
    out = [dict(r) for r in ledger]
    out[index]["body"] = canonical_dumps(body)
    prev = bytes.fromhex(out[index - 1]["chain"]) if index else chain.genesis("S1", 1)
    for rec in out[index:]:
        prev = chain.link(prev, rec["body"])
        rec["chain"], rec["sig"] = prev.hex(), keys.sign(KEY, prev).hex()
    return out


def test_lost_duplicated_and_unexpected_are_counted(sales: list[dict[str, Any]]) -> None:
    ledger = _ledger([sales[0], sales[1], sales[1], sales[3]])
    journal = _journal(sales[:3])
    journal.record(sales[4], None)  # sent, no answer: may be absent
    v = judge(_watch(ledger), journal)
    assert (v.acknowledged, v.found, v.lost, v.duplicated, v.unexpected) == (3, 2, 1, 1, 1)
    assert not v.ok


def test_in_doubt_may_be_present_once_with_the_content_sent(sales: list[dict[str, Any]]) -> None:
    journal = _journal(sales[:2])
    journal.record(sales[2], None)
    v = judge(_watch(_ledger(sales[:3])), journal)
    assert v.ok and v.acknowledged == 2


def test_broken_chain_gap_and_bad_signature_are_counted(sales: list[dict[str, Any]]) -> None:
    ledger = _ledger(sales)
    tampered = [dict(r) for r in ledger]
    tampered[1]["chain"] = "00" * 32
    v = judge(_watch(tampered), _journal(sales))
    assert v.chain_errors >= 1 and not v.ok
    v = judge(_watch([ledger[0], *ledger[2:]]), _journal(sales))
    assert v.chain_errors >= 1 and v.lost == 1
    other = keys.generate()
    v = judge(_watch(ledger, other.public_key()), _journal(sales))
    assert v.bad_signatures == 6 and v.chain_errors == 0 and not v.ok


def test_events_missing_doubled_mismatched_and_unexpected_per_sink(sales: list[dict[str, Any]]) -> None:
    ledger = _ledger(sales)
    good = _events(ledger)
    missing = [e for e in good if e["id"] != "S1:1:2"]
    doubled = [*good, good[0]]
    changed = copy.deepcopy(good)
    changed[2]["data"]["txn"]["total"] = "1.00"
    extra = [*good, {"id": "S1:1:99", "type": "retail.pos.sale.v1", "data": {"store_id": "S1", "epoch": 1, "seq": 99}}]
    sinks = {"ok": good, "missing": missing, "doubled": doubled, "changed": changed, "extra": extra}
    v = judge(_watch(ledger), _journal(sales), sinks=sinks)
    assert not v.ok
    assert v.events_missing == {"missing": 1}
    assert v.events_doubled == {"doubled": 1}
    assert v.events_mismatched == {"changed": 1}
    assert v.events_unexpected == {"extra": 1}
    assert len(v.event_lines()) == 5


def test_journal_keeps_exact_text_and_answers(sales: list[dict[str, Any]]) -> None:
    j = PosJournal()
    j.record(sales[0], None)
    j.record(sales[0], 201, '{"seq":1,"duplicate":false}')
    assert [c.status for c in j.calls] == [None, 201]
    assert j.calls[1].sent == encode(sales[0])
    assert j.acknowledged == {("R1", sales[0]["txn_id"]): encode(sales[0])}
