"""Verification of the whole outbox: order, bodies, chain links, signatures and writer heads.

Used by ``edge-agent verify`` and the TUI. Edits, deletions (also of the newest record, through the
writer head kept in the same transaction as each capture), insertions and reordering of rows are all
reported as the first bad seq with a reason. Finally the outbox is checked against the latest signed
hub receipt and the retention anchor, so deleting the newest records and rewriting the writer head to
match is caught too (as far as the hub has acknowledged them).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from sync_protocol import keys
from sync_protocol._exceptions import KeyFileError, RecordInvalid
from sync_protocol.record import SignedRecord, check_body, verify_run
from sync_protocol.wire import Receipt

from .._exceptions import BadReceipt
from ._db import Db, Identity, Writer
from .receipts import check_receipt


@dataclass(frozen=True)
class VerifyReport:
    """Result of walking the outbox chain.

    Attributes:
        ok: True when every record checked out.
        count: Records checked.
        first_seq: Lowest seq checked (current epoch), or None when empty.
        last_seq: Highest seq checked (current epoch), or None when empty.
        bad_seq: The first bad seq, when not ok.
        reason: Why that seq is bad.
        epoch: The epoch the bad seq belongs to.
    """

    ok: bool
    count: int
    first_seq: int | None = None
    last_seq: int | None = None
    bad_seq: int | None = None
    reason: str | None = None
    epoch: int | None = None


def verify_outbox(db: Db) -> VerifyReport:
    """Walk every epoch's records from its anchor and check order, body, chain and signature."""
    writers = db.writers()
    strays = db.query(
        "SELECT epoch, min(seq) FROM outbox WHERE epoch NOT IN (SELECT epoch FROM writers) GROUP BY epoch"
    )
    if strays:
        epoch, seq = strays[0]
        return VerifyReport(False, 0, bad_seq=int(seq), reason=f"record of unknown epoch {epoch}", epoch=epoch)
    ident = db.identity()
    total = 0
    first = last = None
    for w in writers:
        checked = 0
        last_rec: SignedRecord | None = None
        try:
            public_key = keys.public_from_hex(w.public_key)
            run = verify_run(
                _rows(db, w.epoch, w.store_id, w.anchor_seq + 1),
                prev_chain=w.anchor_chain,
                first_seq=w.anchor_seq + 1,
                public_key=public_key,
                verify_all=True,
            )
            for rec in run:
                checked += 1
                last_rec = rec
            last_seq = last_rec.seq if last_rec else w.anchor_seq
            last_chain = last_rec.chain if last_rec else w.anchor_chain
            if last_seq != w.head_seq:
                missing = last_seq + 1
                raise RecordInvalid(missing, f"missing: the outbox ends at seq {last_seq}, head is {w.head_seq}")
            if last_chain != w.head_chain:
                raise RecordInvalid(last_seq, "chain does not match the recorded head of the outbox")
        except RecordInvalid as exc:
            return VerifyReport(False, total + checked, bad_seq=exc.seq, reason=exc.reason, epoch=w.epoch)
        total += checked
        if ident is not None and w.epoch == ident.epoch and checked:
            first, last = w.anchor_seq + 1, last_seq
    if ident is not None:
        problem = _against_receipt(db, ident, next((w for w in writers if w.epoch == ident.epoch), None))
        if problem is not None:
            return VerifyReport(False, total, first, last, bad_seq=problem[0], reason=problem[1], epoch=ident.epoch)
    return VerifyReport(True, total, first, last)


def _against_receipt(db: Db, ident: Identity, writer: Writer | None) -> tuple[int, str] | None:
    """Check the outbox against the latest signed hub receipt and the retention anchor.

    A consistent chain proves nothing when its newest records were deleted and the writer head
    rewritten to match; the hub's signed receipt does: the outbox must still hold the chain the hub
    acknowledged, and retention may have pruned only records the receipt covers.

    Returns:
        ``(seq, reason)`` of the first problem, or None.
    """
    state = db.sync_state()
    acked = int(state.get("acked_through") or 0)
    raw = state.get("receipt")
    anchor = writer.anchor_seq if writer is not None else 0
    if raw is None:
        if acked > 0 or anchor > 0:
            seq = max(acked, anchor)
            return seq, f"acknowledged through seq {seq} but no signed hub receipt is stored to prove it"
        return None
    try:
        receipt = Receipt.model_validate(raw)
        hub_key = keys.public_from_hex(ident.hub_public_key)
    except (ValidationError, KeyFileError):
        return acked, "the stored hub receipt (or the hub key from enrollment) is malformed"
    if receipt.epoch != ident.epoch:
        return (acked, "the stored hub receipt is for another epoch") if acked > 0 else None
    try:
        check_receipt(db, ident, receipt, hub_key)
    except BadReceipt as exc:
        return receipt.acked_through, f"does not match the latest signed hub receipt: {exc}"
    if receipt.acked_through < acked:
        return (
            acked,
            f"acknowledged through seq {acked}, but the latest hub receipt covers only seq {receipt.acked_through}",
        )
    if anchor > receipt.acked_through:
        return anchor, f"retention anchor at seq {anchor} is past the latest hub receipt (seq {receipt.acked_through})"
    return None


def _rows(db: Db, epoch: int, store_id: str, first_seq: int) -> Iterator[SignedRecord]:
    expected = first_seq
    cols = "seq, body, chain, sig, register_id, txn_id, kind"
    for seq, body, chain_value, sig, register_id, txn_id, kind in db.iterate(
        f"SELECT {cols} FROM outbox WHERE epoch = ? ORDER BY seq", (epoch,)
    ):
        if seq > expected:
            raise RecordInvalid(expected, f"missing: the next stored record is seq {seq}")
        if seq < expected:
            raise RecordInvalid(seq, f"out of order: expected seq {expected}")
        doc = check_body(body, store_id=store_id, epoch=epoch, seq=seq)
        txn: dict[str, Any] = doc["txn"] if isinstance(doc.get("txn"), dict) else {}
        if (txn.get("register_id"), txn.get("txn_id"), doc.get("kind")) != (register_id, txn_id, kind):
            raise RecordInvalid(seq, "row columns (register_id, txn_id, kind) differ from the signed body")
        yield SignedRecord(int(seq), body, bytes(chain_value), bytes(sig))
        expected += 1
