"""Appending records: the ONE function that numbers, chains and signs what the agent stores.

Live capture (:meth:`edge_agent.store.Outbox.capture_batch`) and drop imports
(:func:`edge_agent.store.imports.store_chunk`) both call :func:`append` inside their own
``BEGIN IMMEDIATE`` transaction. It reads the writer head, gives each new transaction the next seq,
builds its canonical body, links it to the previous chain value, signs the link, inserts the rows
and moves the writer head, all in that one transaction. An idempotency key already stored is a
duplicate (same content) or a conflict (other content: nothing is stored for it).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import apsw

from sync_protocol import chain as _chain
from sync_protocol import keys
from sync_protocol.clock import now_iso
from sync_protocol.record import BodyWriter
from sync_protocol.transaction import Transaction

from .._exceptions import NotEnrolled, StorageError

_LOOKUP_BATCH = 400  # keys per query (800 parameters, far below SQLite's limit)

Signer = Callable[[list[bytes]], list[bytes]]
"""Signs chain values with the writer's key, one signature per value, in order (see :func:`append`)."""


class Prepared(NamedTuple):
    """A validated transaction ready to store: its key, kind and canonical JSON (and where it came from).

    A named tuple, not a dataclass: chunks of these cross from the drop reader processes by pickle,
    and a tuple unpickles several times faster in the importing process (the import's serial part).

    Attributes:
        first_line: The drop file line it starts at (0 for live capture).
        raw: The source line(s), for an error report (empty for live capture).
    """

    register_id: str
    txn_id: str
    kind: str
    txn_json: str
    txn_hash: str
    first_line: int
    raw: str | list[str]


@dataclass(frozen=True, slots=True)
class Stored:
    """Outcome of one prepared item: ``seq`` and ``duplicate``, or ``conflict`` with the stored seq."""

    seq: int
    duplicate: bool = False
    conflict: bool = False


def txn_digest(txn_json: str) -> str:
    """SHA-256 (hex) of a canonical transaction, as the outbox stores it in ``txn_hash``."""
    return hashlib.sha256(txn_json.encode("utf-8")).hexdigest()


def prepare(txn: Transaction) -> Prepared:
    """A live capture's transaction as an item for :func:`append`."""
    text = txn.canonical_json()
    return Prepared(txn.register_id, txn.txn_id, txn.kind, text, txn_digest(text), 0, "")


def append(
    conn: apsw.Connection,
    key: keys.Ed25519PrivateKey,
    items: Sequence[Prepared],
    origins: Sequence[str] | str,
    *,
    captured_at: str | None = None,
    batch: dict[str, Any] | None = None,
    signer: Signer | None = None,
) -> list[Stored]:
    """Number, chain, sign and insert ``items``; call inside a ``BEGIN IMMEDIATE`` transaction.

    Every item is numbered and chained here first, in order; then the chain values are signed (by
    ``key`` in this thread, or all at once by ``signer``: a drop import hands them to its reader
    processes, which load the same key from its file); then the rows are inserted.

    Args:
        conn: The connection, in its write transaction.
        key: The signing key; must be the enrolled writer's.
        items: What to store, in order.
        origins: One origin for all items, or one per item (``api``, ``cli``, ``file:<name>``).
        captured_at: The capture time of every record; None stamps each record with the time it is made.
        batch: The drop file's timeline (``sync_protocol.record.file_timeline``), put in every body.
        signer: Signs the chain values instead of ``key.sign`` (one signature per value, in order);
            the last signature it returns is verified with ``key``'s public key before anything is
            inserted.

    Returns:
        One :class:`Stored` per item, in order.

    Raises:
        NotEnrolled: before enrollment, or when the agent was enrolled again with another key.
        StorageError: when the writer epoch is missing, the body would not be canonical, or
            ``signer`` returned a wrong signature or count.
        apsw.Error: when SQLite fails (the caller's transaction rolls back).
    """
    meta = dict(conn.execute("SELECT key, value FROM meta WHERE key IN ('store_id', 'epoch', 'key_id')"))
    if "store_id" not in meta or "epoch" not in meta:
        raise NotEnrolled()
    if meta.get("key_id") != keys.key_id(key):
        raise NotEnrolled("the agent was enrolled again with a new key; restart edge-agent")
    store_id, epoch = str(meta["store_id"]), int(meta["epoch"])
    head = conn.execute("SELECT head_seq, head_chain FROM writers WHERE epoch = ?", (epoch,)).fetchone()
    if head is None:
        raise StorageError(f"writer epoch {epoch} is missing from the outbox; re-enroll")
    seq, prev = int(head[0]), bytes(head[1])
    start_seq = seq
    writer = BodyWriter(store_id, epoch)
    # Keys stored before, in one query per chunk; then keys stored by these items.
    fresh = _stored_keys(conn, items)
    rows: list[tuple[Any, ...]] = []
    values: list[bytes] = []
    out: list[Stored] = []
    for i, it in enumerate(items):
        k = (it.register_id, it.txn_id)
        found = fresh.get(k)
        if found is not None:
            same = found[1] == it.txn_hash
            out.append(Stored(int(found[0]), duplicate=same, conflict=not same))
            continue
        seq += 1
        origin = origins if isinstance(origins, str) else origins[i]
        at = captured_at if captured_at is not None else now_iso(local=True)
        try:
            body = writer.body(seq=seq, kind=it.kind, captured_at=at, origin=origin, txn_json=it.txn_json, batch=batch)
        except RuntimeError as exc:
            raise StorageError(str(exc)) from None
        value = _chain.link(prev, body)
        rows.append((epoch, seq, it.register_id, it.txn_id, it.kind, at, origin, body, it.txn_hash, value))
        values.append(value)
        fresh[k] = (seq, it.txn_hash)
        prev = value
        out.append(Stored(seq))
    if rows:
        sigs = _signatures(key, values, signer)
        conn.executemany(
            "INSERT INTO outbox (epoch, seq, register_id, txn_id, kind, captured_at, origin, body, txn_hash, "
            "chain, sig) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [(*row, sig) for row, sig in zip(rows, sigs, strict=True)],
        )
    if seq != start_seq:
        conn.execute("UPDATE writers SET head_seq = ?, head_chain = ? WHERE epoch = ?", (seq, prev, epoch))
    return out


def _signatures(key: keys.Ed25519PrivateKey, values: list[bytes], signer: Signer | None) -> list[bytes]:
    """One Ed25519 signature per chain value: by ``key`` here, or by ``signer`` (its last one checked)."""
    if signer is None:
        sign = key.sign
        return [sign(v) for v in values]
    sigs = signer(values)
    if len(sigs) != len(values) or not keys.verify(key.public_key(), sigs[-1], values[-1]):
        raise StorageError("internal error: the import's signer returned a wrong signature; nothing was stored")
    return sigs


def _stored_keys(conn: apsw.Connection, items: Sequence[Prepared]) -> dict[tuple[str, str], tuple[int, str]]:
    """``(register_id, txn_id) -> (seq, txn_hash)`` of the items' keys already in the outbox."""
    found: dict[tuple[str, str], tuple[int, str]] = {}
    keys_ = list(dict.fromkeys((it.register_id, it.txn_id) for it in items))
    for i in range(0, len(keys_), _LOOKUP_BATCH):
        part = keys_[i : i + _LOOKUP_BATCH]
        sql = (
            "SELECT register_id, txn_id, seq, txn_hash FROM outbox WHERE (register_id, txn_id) IN "
            f"(VALUES {', '.join('(?, ?)' for _ in part)})"
        )
        for register_id, txn_id, seq, txn_hash in conn.execute(sql, [v for k in part for v in k]):
            found[(register_id, txn_id)] = (int(seq), txn_hash)
    return found
