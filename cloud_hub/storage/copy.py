"""Move a hub's data to another engine: ``cloud-hub storage copy --from sqlite:///... --to postgresql://...``.

Every table is copied with its ids (stores, enrollment tokens, writer keys, streams, the ledger,
conflicts, refusals, events, deliveries with their state, register times, derivation cursors, derive
errors), reading one consistent snapshot of the source (a running SQLite hub keeps serving: what it
stores after the snapshot is not copied, and its agents resend it to the new hub, which asks for it
with a gap answer). The whole load is one transaction on the target and commits only after it
verified, on the target, every table's row count against the source and every stream: the same
progress as the source, seqs 1..acked without a hole, each body's hash, each chain link from genesis,
each record's signature with the writer's key, the head chain; with the hub key, the receipt of each
stream issued from the target's state, checked, and equal to the source's (Ed25519 is deterministic).
A target that holds any row is refused before anything is written.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from sync_protocol import chain, keys
from sync_protocol.wire import Receipt

from .._exceptions import InputError, StorageError
from .recorders import Storage, UnitOfWork

# (table, columns, order, identity column): parents before children, so foreign keys hold while loading.
TABLES: tuple[tuple[str, tuple[str, ...], str, str | None], ...] = (
    ("stores", ("store_id", "tz", "created_at"), "store_id", None),
    ("enrollment_tokens", ("token_hash", "store_id", "created_at", "expires_at", "used_at"), "token_hash", None),
    (
        "writers",
        ("store_id", "epoch", "key_id", "public_key", "enrolled_at", "superseded_at", "hostname"),
        "store_id, epoch",
        None,
    ),
    (
        "streams",
        ("store_id", "epoch", "acked_through", "head_chain", "last_seen_at", "duplicates", "clock", "backlog"),
        "store_id, epoch",
        None,
    ),
    (
        "ledger",
        ("store_id", "epoch", "seq", "body", "body_hash", "chain", "sig", "received_at"),
        "store_id, epoch, seq",
        None,
    ),
    ("conflicts", ("id", "store_id", "epoch", "seq", "stored_hash", "received_hash", "detected_at"), "id", "id"),
    ("refusals", ("id", "store_id", "epoch", "seq", "reason", "at"), "id", "id"),
    ("events", ("pk", "source", "id", "store_id", "epoch", "seq", "type", "event_json", "created_at"), "pk", "pk"),
    (
        "deliveries",
        (
            "id",
            "event_pk",
            "event_id",
            "sink",
            "store_id",
            "epoch",
            "seq",
            "lane",
            "state",
            "attempts",
            "next_attempt_at",
            "claim",
            "last_error",
            "created_at",
            "updated_at",
        ),
        "id",
        "id",
    ),
    ("register_times", ("store_id", "register_id", "occurred_at_utc"), "store_id, register_id", None),
    ("forward_cursors", ("store_id", "epoch", "derived_through"), "store_id, epoch", None),
    ("derive_errors", ("id", "store_id", "epoch", "seq", "reason", "at", "resolved_at"), "id", "id"),
    (
        "stock_moves",
        ("store_id", "register_id", "txn_id", "epoch", "seq", "event_id", "adjustments"),
        "store_id, register_id, txn_id",
        None,
    ),
    (
        "time_fallbacks",
        ("id", "store_id", "epoch", "seq", "register_id", "txn_id", "pos_time", "used_time", "method", "reason", "at"),
        "id",
        "id",
    ),
)
PAGE = 5_000


class CopyFailed(StorageError):
    """The copied data did not verify on the target; nothing was committed there."""


@dataclass
class CopyReport:
    """What was copied and verified."""

    rows: dict[str, int] = field(default_factory=dict)
    streams: int = 0
    records_verified: int = 0
    signatures_verified: int = 0
    receipts_verified: int = 0


def copy_storage(
    source: Storage,
    target: Storage,
    *,
    hub_key: keys.Ed25519PrivateKey | None = None,
    progress: Callable[[str], None] | None = None,
) -> CopyReport:
    """Copy every table from ``source`` into an empty ``target`` and verify it there before committing.

    With ``hub_key`` (the key the replicas share) each stream's receipt is also issued from the target's
    state and checked against the key and against the one the source's state gives.

    Raises:
        InputError: the target already holds data (field ``to``).
        CopyFailed: a chain, signature, count or receipt did not verify (the target stays empty).
    """
    say = progress or (lambda _: None)
    report = CopyReport()
    with source.snapshot() as src, target.transaction() as dst:
        filled = [(t, n) for t, *_ in TABLES if (n := dst.row_count(t))]
        if filled:
            table, n = filled[0]
            raise InputError(
                f"the target database is not empty ({n} rows in {table}); copy only into a new database",
                field="to",
            )
        for table, columns, order, identity in TABLES:
            report.rows[table] = dst.load_rows(table, columns, src.table_rows(table, columns, order), identity)
            say(f"copied {table}: {report.rows[table]} rows")
        for table, *_ in TABLES:
            if (have := dst.row_count(table)) != report.rows[table] or have != src.row_count(table):
                raise CopyFailed(f"{table}: {src.row_count(table)} rows in the source, {have} in the target")
        _verify(src, dst, report, say, hub_key)
    say(f"committed: {report.streams} streams, {report.records_verified} records verified")
    return report


def _verify(
    src: UnitOfWork,
    dst: UnitOfWork,
    report: CopyReport,
    say: Callable[[str], None],
    hub_key: keys.Ed25519PrivateKey | None,
) -> None:
    for store in dst.list_stores():
        keys_by_epoch = {w.epoch: keys.public_from_hex(w.public_key) for w in dst.writers(store.store_id)}
        source_streams = {(s.store_id, s.epoch): s for s in src.streams(store.store_id)}
        for stream in dst.streams(store.store_id):
            where = f"{stream.store_id}/{stream.epoch}"
            if source_streams.get((stream.store_id, stream.epoch)) != stream:
                raise CopyFailed(f"stream {where} differs from the source")
            public = keys_by_epoch.get(stream.epoch)
            if public is None:
                raise CopyFailed(f"stream {where} has no writer key")
            prev, seq = chain.genesis(stream.store_id, stream.epoch), 0
            while rows := dst.ledger_page(stream.store_id, stream.epoch, seq, PAGE):
                for row in rows:
                    seq += 1
                    if row.seq != seq:
                        raise CopyFailed(f"{where}: seq {seq} is missing from the ledger")
                    if row.body_hash != chain.body_hash(row.body):
                        raise CopyFailed(f"{where}: seq {seq}: body hash does not match the body")
                    prev = chain.link_hashed(prev, row.body_hash)
                    if row.chain != prev:
                        raise CopyFailed(f"{where}: seq {seq}: chain link broken")
                    if not keys.verify(public, row.sig, row.chain):
                        raise CopyFailed(f"{where}: seq {seq}: signature does not verify with the writer's key")
                    report.signatures_verified += 1
                report.records_verified += len(rows)
            if seq != stream.acked_through or (seq and prev != stream.head_chain):
                raise CopyFailed(f"{where}: ledger ends at seq {seq}, the stream says {stream.acked_through}")
            source = source_streams[(stream.store_id, stream.epoch)]
            if hub_key is not None:
                new = Receipt.issue(hub_key, stream.store_id, stream.epoch, stream.acked_through, stream.head_chain)
                old = Receipt.issue(hub_key, source.store_id, source.epoch, source.acked_through, source.head_chain)
                if new != old or not new.valid(hub_key.public_key()):
                    raise CopyFailed(f"{where}: the receipt would differ from the source's")
                report.receipts_verified += 1
            report.streams += 1
        say(f"verified store {store.store_id}")
