"""Burst ingest: DESIGN §4 and protocol.md §5, one burst in one database transaction.

Steps, in order (the HTTP layer has already checked the request signature and the size limits):

1. **Auth** — the signing key must be known (401 ``unauthenticated``), of the newest epoch
   (401 ``key_revoked``) and bound to the burst's ``store_id``/``epoch`` (403 ``forbidden``).
2. **Gap** — ``first_seq > acked_through + 1`` → 409 ``gap`` with ``expected_seq``.
3. **Known records** — ``seq <= acked_through``: same body hash → duplicate (counted, not stored);
   different hash → 409 ``conflict``, recorded for operators, nothing from that record on is stored.
4. **New records** — body names the writer and seq, chain recomputed from the stored head, last (or
   every) signature verified. The first bad record → 422 ``record_refused``; the good records before
   it are stored and acknowledged.
5. Ledger rows, the stream's new head and the :data:`AfterStore` hooks run in the same transaction;
   the answer carries a receipt signed with the hub key.

Conflicts, gaps and refusals commit what they record (and the good records) before the error answer
is raised as :class:`~cloud_hub._exceptions.BurstRejected`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from sync_protocol import chain as _chain
from sync_protocol import keys
from sync_protocol._exceptions import RecordInvalid
from sync_protocol.record import SignedRecord, check_body, verify_run
from sync_protocol.wire import BurstRequest, BurstResponse, ErrorBody, ErrorCode, Receipt, WireRecord

from ._exceptions import BurstRejected, StorageError
from .storage import LedgerRow, Storage, Stream, UnitOfWork, Writer, iso_utc

AfterStore = Callable[[UnitOfWork, Writer, Sequence[LedgerRow]], None]
"""Extension point: called inside the burst's transaction with the records it newly stored.

A hook may write more rows through the unit of work (a later change derives CloudEvents and delivery
rows here); raising an exception rolls the whole burst back.
"""


@dataclass
class _Outcome:
    """What one burst did, decided inside the transaction and answered after the commit."""

    acked_through: int
    head_chain: bytes
    stored: int = 0
    duplicates: int = 0
    status: int = 200
    code: ErrorCode = "bad_request"
    message: str = ""
    seq: int | None = None
    expected_seq: int | None = None


def _reject(status: int, code: ErrorCode, message: str) -> BurstRejected:
    return BurstRejected(status, ErrorBody(error=code, message=message))


def authorize(writer: Writer | None, request: BurstRequest, key_id: str) -> Writer:
    """Map the signing key to the writer the burst claims to come from.

    Raises:
        BurstRejected: 401 ``unauthenticated``, 401 ``key_revoked`` or 403 ``forbidden``.
    """
    if writer is None:
        raise _reject(401, "unauthenticated", f"unknown key id {key_id}")
    if writer.superseded_at is not None:
        raise _reject(
            401,
            "key_revoked",
            f"key {key_id} of store {writer.store_id} epoch {writer.epoch} was superseded at "
            f"{writer.superseded_at} by a newer enrollment",
        )
    if writer.store_id != request.store_id or writer.epoch != request.epoch:
        raise _reject(
            403,
            "forbidden",
            f"key {key_id} is bound to store {writer.store_id} epoch {writer.epoch}, "
            f"not store {request.store_id} epoch {request.epoch}",
        )
    return writer


def _salvage(
    prefix: list[SignedRecord], prev_chain: bytes, public_key: keys.Ed25519PublicKey
) -> tuple[list[SignedRecord], RecordInvalid | None]:
    """The verified records of a prefix whose chain links are known good but whose signatures are not.

    The last signature vouches for the whole prefix; only when it fails is every one checked.
    """
    if not prefix:
        return [], None
    if keys.verify(public_key, prefix[-1].sig, prefix[-1].chain):
        return prefix, None
    good: list[SignedRecord] = []
    try:
        for rec in verify_run(
            prefix, prev_chain=prev_chain, first_seq=prefix[0].seq, public_key=public_key, verify_all=True
        ):
            good.append(rec)
    except RecordInvalid as exc:
        return good, exc
    return good, None  # pragma: no cover - the last signature failed above, so verify_run raises


def check_new_records(
    records: Sequence[WireRecord],
    *,
    store_id: str,
    epoch: int,
    prev_chain: bytes,
    public_key: keys.Ed25519PublicKey,
    verify_all: bool,
) -> tuple[list[SignedRecord], RecordInvalid | None]:
    """Check records that follow ``prev_chain``.

    Returns:
        The leading run of records that passed every check, and the first failure (or None).
    """
    signed: list[SignedRecord] = []
    failure: RecordInvalid | None = None
    for rec in records:
        try:
            check_body(rec.body, store_id=store_id, epoch=epoch, seq=rec.seq)
        except RecordInvalid as exc:
            failure = exc
            break
        signed.append(rec.signed())
    if not signed:
        return [], failure
    good: list[SignedRecord] = []
    try:
        for ok in verify_run(
            signed, prev_chain=prev_chain, first_seq=signed[0].seq, public_key=public_key, verify_all=verify_all
        ):
            good.append(ok)
    except RecordInvalid as exc:
        if not verify_all:
            # verify_run checked every link up to exc.seq but held the records back: keep the prefix
            # when a signature within it vouches for it.
            good, earlier = _salvage(signed[: exc.seq - signed[0].seq], prev_chain, public_key)
            return good, earlier or exc
        return good, exc
    return good, failure


def _apply(
    tx: UnitOfWork,
    writer: Writer,
    stream: Stream,
    request: BurstRequest,
    *,
    at: str,
    verify_all: bool,
    after_store: Sequence[AfterStore],
) -> _Outcome:
    sid, ep, first = request.store_id, request.epoch, request.first_seq
    acked, head = stream.acked_through, stream.head_chain
    out = _Outcome(acked, head)
    clock = request.clock.model_dump() if request.clock is not None else None
    backlog = request.backlog.model_dump() if request.backlog is not None else None

    def finish() -> _Outcome:
        tx.update_stream(
            sid,
            ep,
            acked_through=out.acked_through,
            head_chain=out.head_chain,
            last_seen_at=at,
            add_duplicates=out.duplicates,
            clock=clock,
            backlog=backlog,
        )
        return out

    if first > acked + 1:
        out.status, out.code, out.expected_seq = 409, "gap", acked + 1
        out.message = f"gap: the hub holds seq 1..{acked}; resend from seq {acked + 1}"
        return finish()

    records = request.records
    if not records and first <= acked:
        # A probe from a store whose outbox ends before what the hub already holds: its chain head went
        # backwards (rows deleted, a restored backup). Recorded once as a conflict for operators (the
        # fleet view counts it) and answered as one, so the agent stops and says so.
        held = tx.ledger_hashes(sid, ep, first, first).get(first, b"")
        if not any(c.seq == first for c in tx.conflicts(sid, ep)):
            tx.record_conflict(sid, ep, first, held, b"", at)
        out.status, out.code, out.seq = 409, "conflict", first
        out.message = (
            f"chain head went backwards: the store's outbox ends at seq {first - 1}, but the hub holds "
            f"seq 1..{acked} of this epoch (rows deleted or an old backup restored); nothing was changed"
        )
        return finish()
    n_known = max(0, min(len(records), acked - first + 1))
    if n_known:
        stored = tx.ledger_hashes(sid, ep, first, first + n_known - 1)
        for rec in records[:n_known]:
            have = stored.get(rec.seq)
            if have is None:
                raise StorageError(f"ledger of {sid}/{ep} has no seq {rec.seq} below acked_through {acked}")
            got = _chain.body_hash(rec.body)
            if got != have:
                tx.record_conflict(sid, ep, rec.seq, have, got, at)
                out.status, out.code, out.seq = 409, "conflict", rec.seq
                out.message = (
                    f"conflict: seq {rec.seq} differs from the record the hub already holds; "
                    "nothing from it on was stored"
                )
                return finish()
            out.duplicates += 1

    fresh = records[n_known:]
    rows: list[LedgerRow] = []
    if fresh:
        public_key = keys.public_from_hex(writer.public_key)
        good, failure = check_new_records(
            fresh, store_id=sid, epoch=ep, prev_chain=head, public_key=public_key, verify_all=verify_all
        )
        if good:
            rows = [LedgerRow(sid, ep, r.seq, r.body, _chain.body_hash(r.body), r.chain, r.sig, at) for r in good]
            tx.insert_ledger(rows)
            out.stored = len(rows)
            out.acked_through, out.head_chain = good[-1].seq, good[-1].chain
        if failure is not None:
            tx.record_refusal(sid, ep, failure.seq, f"{failure.code}: {failure.reason}", at)
            out.status, out.code, out.seq = 422, "record_refused", failure.seq
            out.message = f"record seq {failure.seq} refused ({failure.code}): {failure.reason}"
    finish()
    # After the stream update, so hooks see this burst's clock estimate on the stream.
    for hook in after_store if rows else ():
        hook(tx, writer, rows)
    return out


def ingest_burst(
    storage: Storage,
    request: BurstRequest,
    *,
    key_id: str,
    hub_key: keys.Ed25519PrivateKey,
    verify_all: bool = False,
    now: datetime | None = None,
    after_store: Sequence[AfterStore] = (),
) -> BurstResponse:
    """Store one burst from the writer that signed it.

    Args:
        storage: The hub database.
        request: The parsed burst (an empty ``records`` list is a probe).
        key_id: Key id from the verified request signature.
        hub_key: Signs the receipt.
        verify_all: Verify every record's signature, not only the last one.
        now: Arrival time T2 (defaults to now).
        after_store: Hooks run in the transaction with the newly stored rows.

    Returns:
        The 200 answer.

    Raises:
        BurstRejected: 401/403 (nothing changed), 409 gap or conflict, 422 record refused (good
            records before it kept; the body carries ``acked_through`` and the receipt).
        StorageBusy: the database stayed locked past the busy timeout, or is unreachable.
    """
    received = now or datetime.now(UTC)
    at = iso_utc(received)

    def work(tx: UnitOfWork) -> _Outcome:
        writer = authorize(tx.writer_by_key(key_id), request, key_id)
        stream = tx.get_stream(writer.store_id, writer.epoch)
        if stream is None:
            raise StorageError(f"writer {writer.store_id}/{writer.epoch} has no stream")
        return _apply(tx, writer, stream, request, at=at, verify_all=verify_all, after_store=after_store)

    out = storage.run(work)  # a serialization failure or deadlock runs the burst again (nothing was stored)
    receipt = Receipt.issue(hub_key, request.store_id, request.epoch, out.acked_through, out.head_chain)
    if out.status != 200:
        raise BurstRejected(
            out.status,
            ErrorBody(
                error=out.code,
                message=out.message,
                seq=out.seq,
                expected_seq=out.expected_seq,
                acked_through=out.acked_through,
                receipt=receipt,
                stored=out.stored,
                duplicates=out.duplicates,
            ),
        )
    return BurstResponse(
        acked_through=out.acked_through,
        stored=out.stored,
        duplicates=out.duplicates,
        hub_received_at=at,
        hub_sent_at=iso_utc(datetime.now(UTC)),
        receipt=receipt,
        clock=request.clock,
    )
