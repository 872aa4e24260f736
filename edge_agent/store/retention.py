"""Retention: prune records the hub has taken custody of, once they are old enough.

A record is pruned only when all of these hold:

- it belongs to the current writer epoch;
- its seq is covered by the stored hub **receipt** (re-verified here by
  :func:`edge_agent.store.receipts.check_receipt`, the check sync uses) *and* by ``acked_through``
  (which a hub restored from an old backup can move back: records the hub asked for again are never
  pruned);
- it was captured more than ``retention_days`` ago, as was every record before it.

Pruning removes a prefix of the chain and moves the writer's **anchor** (``writers.anchor_seq`` and
``anchor_chain``, the chain value of the last pruned record) in the same SQLite transaction, so
``edge-agent verify`` still checks every remaining record from the anchor. Work is done in chunks,
each its own short write transaction, so capture never waits long for the writer lock. Each chunk
*decides and deletes in that one transaction*: the receipt limit, ``acked_through``, the anchor and
the candidates are read after ``BEGIN IMMEDIATE``, so a sync pass that rewinds ``acked_through``
(also under the write lock, :meth:`~edge_agent.store.Outbox.rewind`) either happens before the chunk,
which then sees the lower limit, or after it, and then finds the pruned records gone and reports the
gap instead of being told they are there.

Limit: once a record is pruned, a POS retry of that same ``(register_id, txn_id)`` is no longer
recognised as a duplicate (see docs/operations.md).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from pydantic import ValidationError

from sync_protocol import keys
from sync_protocol._exceptions import KeyFileError
from sync_protocol.wire import Receipt

from .._exceptions import BadReceipt
from ._db import Db
from .receipts import check_receipt

log = logging.getLogger(__name__)

CHUNK = 5000


@dataclass(frozen=True)
class PruneResult:
    """What one retention run did.

    Attributes:
        pruned: Records deleted.
        anchor_seq: The anchor after the run (last pruned seq of the current epoch).
        limit_seq: Highest seq the receipt and ``acked_through`` allowed pruning.
        reason: Why nothing (more) was pruned, for logs and tests.
    """

    pruned: int
    anchor_seq: int
    limit_seq: int
    reason: str


def _aware(text: str) -> datetime:
    value = datetime.fromisoformat(text)
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def receipt_limit(db: Db) -> tuple[int, str]:
    """The highest seq a valid hub receipt (and ``acked_through``) lets us prune, with a reason."""
    ident = db.identity()
    if ident is None:
        return 0, "not enrolled"
    state = db.sync_state()
    raw = state.get("receipt")
    if not raw:
        return 0, "no hub receipt yet"
    try:
        receipt = Receipt.model_validate(raw)
        hub_key = keys.public_from_hex(ident.hub_public_key)
    except (ValidationError, KeyFileError):
        return 0, "stored receipt or hub key is malformed"
    try:
        check_receipt(db, ident, receipt, hub_key)
    except BadReceipt as exc:
        return 0, str(exc)
    return min(receipt.acked_through, int(state.get("acked_through") or 0)), "ok"


def prune(db: Db, *, retention_days: float, now: datetime | None = None) -> PruneResult:
    """Prune old records the hub holds (see the module docstring).

    Args:
        db: A connection of its own (not the capture writer's).
        retention_days: Minimum age of a pruned record.
        now: The current time (tests travel in time with it).
    """
    ident = db.identity()
    if ident is None:
        return PruneResult(0, 0, 0, "not enrolled")
    cutoff = (now or datetime.now(UTC)) - timedelta(days=retention_days)
    limit, reason = 0, "not run"
    pruned = 0
    while True:
        with db.transaction() as conn:  # decide and delete under one write lock (see the module docstring)
            limit, reason = receipt_limit(db)
            anchor, _ = db.bounds(ident.epoch)
            if anchor >= limit:
                break
            candidates = db.query(
                "SELECT seq, captured_at, chain FROM outbox WHERE epoch = ? AND seq > ? AND seq <= ? "
                "ORDER BY seq LIMIT ?",
                (ident.epoch, anchor, limit, CHUNK),
            )
            last: tuple[int, bytes] | None = None
            expected = anchor + 1
            old_enough = True
            for seq, captured_at, chain_value in candidates:
                if int(seq) != expected or _aware(captured_at) >= cutoff:
                    old_enough = False
                    break
                last = (int(seq), bytes(chain_value))
                expected += 1
            if last is None:
                reason = "nothing old enough" if limit > anchor else reason
                break
            conn.execute("DELETE FROM outbox WHERE epoch = ? AND seq > ? AND seq <= ?", (ident.epoch, anchor, last[0]))
            conn.execute(
                "UPDATE writers SET anchor_seq = ?, anchor_chain = ? WHERE epoch = ? AND anchor_seq = ?",
                (last[0], last[1], ident.epoch, anchor),
            )
        pruned += last[0] - anchor
        if not old_enough:
            reason = "nothing more old enough"
            break
    anchor, _ = db.bounds(ident.epoch)
    if pruned:
        log.info("retention: pruned %d records, anchor now seq %d", pruned, anchor)
    return PruneResult(pruned, anchor, limit, reason)
