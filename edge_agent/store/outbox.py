"""The signed outbox: the agent's read-write connection to its SQLite file.

One SQLite file (WAL, ``synchronous=FULL``) holds the store identity, the writer epochs, the records,
the sync state, a burst log for the TUI and the drop imports (:mod:`edge_agent.store.schema`). The
commit of a capture is the acknowledgement to the POS, so a record that was acknowledged survives
``kill -9``.

An :class:`Outbox` wraps one connection and must be used by one thread at a time; the agent opens
one per thread (capture writer, sync job, status reader).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import apsw

from sync_protocol import chain as _chain
from sync_protocol import keys
from sync_protocol.canonical import canonical_dumps
from sync_protocol.clock import now_iso
from sync_protocol.transaction import Transaction
from sync_protocol.wire import Receipt

from .._exceptions import AgentError, CaptureConflict, ConfigError, NotEnrolled, StorageError
from ._db import BUSY_TIMEOUT_MS, JSON_COLUMNS, SYNC_COLUMNS, Db, Identity, storage_error
from .receipts import check_receipt
from .records import Prepared, append, prepare
from .schema import migrate
from .snapshot import read_snapshot
from .verify import VerifyReport, verify_outbox

log = logging.getLogger(__name__)

BURST_LOG_KEEP = 1000


@dataclass(frozen=True)
class CaptureResult:
    """Outcome of storing one transaction: its seq, and whether it was already stored."""

    seq: int
    duplicate: bool


class Outbox(Db):
    """One read-write connection to the outbox database.

    Args:
        path: The ``outbox.db`` file; created with its schema when missing (unless ``create`` is False).
        key: The signing key; required for capture.
        create: Create the file when missing.
        durable: ``synchronous=FULL`` (every commit is flushed to disk before it returns). Capture
            connections must be durable: their commit is the POS's acknowledgement. Bookkeeping
            connections (sync state, heartbeat) pass False: losing their last commits in a power cut
            only makes the agent resend records the hub answers as duplicates, and the next durable
            commit on any connection flushes the shared WAL, theirs included. This keeps fsyncs,
            and the write lock they hold, off the POS's path while a backlog syncs.

    Raises:
        ConfigError: when the file is missing and ``create`` is False.
        StorageError: when SQLite cannot open the file.
    """

    def __init__(
        self, path: Path, *, key: keys.Ed25519PrivateKey | None = None, create: bool = True, durable: bool = True
    ) -> None:
        if not create and not path.exists():
            raise ConfigError(f"no outbox at {path}; run 'edge-agent init' first")
        self.path = path
        self._key = key
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            self.conn = apsw.Connection(str(path))
            self.conn.set_busy_timeout(BUSY_TIMEOUT_MS)
            self.conn.execute("PRAGMA journal_mode=WAL")
            self.conn.execute("PRAGMA synchronous=FULL" if durable else "PRAGMA synchronous=NORMAL")
            migrate(self)
        except apsw.Error as exc:
            raise storage_error(exc) from None

    # -- identity -------------------------------------------------------------------------------

    def set_identity(self, ident: Identity, key: keys.Ed25519PrivateKey | None = None) -> int:
        """Store the identity from an enrollment and open its writer epoch.

        A new epoch starts at seq 1 from its genesis anchor, with ``acked_through`` 0 and no receipt.
        Setting the same epoch again only refreshes the hub details. With ``key`` (the new epoch's
        signing key), records of the previous epoch of the same store that the hub had not
        acknowledged are *carried forward*: in the same transaction they leave the old epoch (which
        then ends at its ``acked_through``) and are appended, in order and with their original
        ``captured_at``, to the new epoch, so they are sent. Without this, a forced re-enrollment
        stranded them: never sent, yet a POS retry was answered "200 duplicate".

        Returns:
            How many records were carried forward.
        """
        with self._write() as conn:
            before = dict(conn.execute("SELECT key, value FROM meta WHERE key IN ('store_id', 'epoch')"))
            old_acked_row = conn.execute("SELECT acked_through FROM sync_state WHERE id = 1").fetchone()
            values = {
                "store_id": ident.store_id,
                "epoch": str(ident.epoch),
                "key_id": ident.key_id,
                "hub_url": ident.hub_url,
                "hub_public_key": ident.hub_public_key,
                "hub_key_id": ident.hub_key_id,
                "tz": ident.tz,
            }
            old = conn.execute("SELECT value FROM meta WHERE key = 'epoch'").fetchone()
            conn.executemany("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", list(values.items()))
            known = conn.execute("SELECT store_id FROM writers WHERE epoch = ?", (ident.epoch,)).fetchone()
            if known is None:
                anchor = _chain.genesis(ident.store_id, ident.epoch)
                conn.execute(
                    "INSERT INTO writers (epoch, store_id, key_id, public_key, enrolled_at, anchor_seq, "
                    "anchor_chain, head_seq, head_chain) VALUES (?, ?, ?, ?, ?, 0, ?, 0, ?)",
                    (ident.epoch, ident.store_id, ident.key_id, ident.public_key, now_iso(), anchor, anchor),
                )
            carried = 0
            if old is None or int(old[0]) != ident.epoch:
                conn.execute(
                    "UPDATE sync_state SET acked_through = 0, receipt = NULL, blocked = NULL, last_error = NULL, "
                    "next_attempt_at = NULL, failures = 0, last_sync_result = 'never'"
                )
                if key is not None and old is not None and before.get("store_id") == ident.store_id:
                    acked = int(old_acked_row[0] or 0) if old_acked_row else 0
                    carried = _carry_forward(conn, key, int(old[0]), acked)
        return carried

    def set_hub_url(self, url: str) -> None:
        """Point the agent at another hub URL (same store and epoch)."""
        with self._write() as conn:
            conn.execute("INSERT OR REPLACE INTO meta (key, value) VALUES ('hub_url', ?)", (url,))

    # -- capture --------------------------------------------------------------------------------

    def capture(self, txn: Transaction, origin: str = "api") -> CaptureResult:
        """Store one validated transaction; see :meth:`capture_batch`.

        Raises:
            NotEnrolled, CaptureConflict, StorageError: as the single result of the batch.
        """
        result = self.capture_batch([(txn, origin)])[0]
        if isinstance(result, AgentError):
            raise result
        return result

    def capture_batch(self, items: Sequence[tuple[Transaction, str]]) -> list[CaptureResult | AgentError]:
        """Store validated transactions in ONE ``BEGIN IMMEDIATE`` transaction with one commit.

        Each item gets its own result, in order: a :class:`CaptureResult` (new or duplicate) or the
        error that refused it (:class:`CaptureConflict`, :class:`NotEnrolled`). A conflict stores
        nothing for that item and does not affect the others. When SQLite fails, nothing of the batch
        is stored and every item gets the :class:`StorageError`. Only after this returns may the POS
        be answered. Numbering, chaining and signing is :func:`edge_agent.store.records.append`.
        """
        if not items:
            return []
        if self._key is None:
            raise ConfigError("outbox opened without the signing key; capture is not possible")
        prepared = [prepare(txn) for txn, _ in items]
        try:
            with self._write() as conn:
                stored = append(conn, self._key, prepared, [origin for _, origin in items])
        except NotEnrolled as exc:
            return [NotEnrolled(str(exc)) for _ in items]
        except StorageError as exc:
            return [exc for _ in items]
        results: list[CaptureResult | AgentError] = []
        for it, s in zip(prepared, stored, strict=True):
            if s.conflict:
                results.append(CaptureConflict(s.seq, it.register_id, it.txn_id))
            else:
                results.append(CaptureResult(s.seq, s.duplicate))
        return results

    # -- sync state -----------------------------------------------------------------------------

    def update_sync(self, **fields: Any) -> None:
        """Set sync-state columns; dict values of JSON columns are encoded."""
        bad = set(fields) - SYNC_COLUMNS
        if bad:
            raise ValueError(f"unknown sync_state columns: {sorted(bad)}")
        if not fields:
            return
        values = [json.dumps(v) if k in JSON_COLUMNS and v is not None else v for k, v in fields.items()]
        with self._write() as conn:
            conn.execute(f"UPDATE sync_state SET {', '.join(f'{k} = ?' for k in fields)} WHERE id = 1", values)

    def apply_receipt(self, receipt: Receipt, hub_key: keys.Ed25519PublicKey) -> int:
        """Advance ``acked_through`` to a receipt that proves the hub holds our chain.

        The receipt must pass :func:`edge_agent.store.receipts.check_receipt`. A valid receipt below
        the current mark is ignored.

        Returns:
            The (possibly unchanged) ``acked_through``.

        Raises:
            BadReceipt: when any check fails; nothing changes.
        """
        check_receipt(self, self.require_identity(), receipt, hub_key)
        with self._write() as conn:
            row: Any = conn.execute("SELECT acked_through FROM sync_state WHERE id = 1").fetchone()
            cur = int(row[0])
            if receipt.acked_through < cur:
                return cur
            conn.execute(
                "UPDATE sync_state SET acked_through = ?, receipt = ? WHERE id = 1",
                (receipt.acked_through, receipt.model_dump_json()),
            )
        return receipt.acked_through

    def rewind(self, expected_seq: int) -> bool:
        """Resend from ``expected_seq`` (the hub lost records, e.g. restored from a backup).

        Returns:
            True when every record from ``expected_seq`` on is still in the outbox and
            ``acked_through`` was set to ``expected_seq - 1``; False when they were pruned or never
            existed (an unrecoverable gap: nothing is changed, nothing is invented).
        """
        ident = self.require_identity()
        with self._write() as conn:  # check and set under one write lock: retention cannot prune in between
            row = conn.execute("SELECT anchor_seq, head_seq FROM writers WHERE epoch = ?", (ident.epoch,)).fetchone()
            if row is None or expected_seq < 1:
                return False
            anchor_seq, head_seq = int(row[0]), int(row[1])
            if expected_seq <= anchor_seq or expected_seq > head_seq + 1:
                return False
            if expected_seq <= head_seq:
                have = conn.execute(
                    "SELECT count(*) FROM outbox WHERE epoch = ? AND seq >= ?", (ident.epoch, expected_seq)
                ).fetchone()
                if not have or int(have[0]) != head_seq - expected_seq + 1:
                    return False
            conn.execute("UPDATE sync_state SET acked_through = ? WHERE id = 1", (expected_seq - 1,))
        return True

    def log_burst(
        self,
        *,
        first_seq: int | None,
        last_seq: int | None,
        count: int,
        result: str,
        http_status: int | None,
        ms: float,
    ) -> None:
        """Append one burst to the log the TUI shows (the newest entries are kept)."""
        ident = self.identity()
        with self._write() as conn:
            conn.execute(
                "INSERT INTO bursts (at, epoch, first_seq, last_seq, count, result, http_status, ms) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (now_iso(), ident.epoch if ident else None, first_seq, last_seq, count, result, http_status, ms),
            )
            conn.execute("DELETE FROM bursts WHERE id <= (SELECT max(id) FROM bursts) - ?", (BURST_LOG_KEEP,))

    # -- whole-file reads -----------------------------------------------------------------------

    def snapshot(self) -> dict[str, Any]:
        """Everything :func:`edge_agent.status.compute_status` needs, read in one transaction."""
        return read_snapshot(self)

    def verify(self) -> VerifyReport:
        """Walk every epoch's records from its anchor; see :func:`edge_agent.store.verify.verify_outbox`."""
        return verify_outbox(self)


def _carry_forward(conn: apsw.Connection, key: keys.Ed25519PrivateKey, old_epoch: int, acked: int) -> int:
    """Move the old epoch's records after ``acked`` into the current epoch (see :meth:`Outbox.set_identity`)."""
    rows = conn.execute(
        "SELECT register_id, txn_id, kind, captured_at, origin, body, txn_hash FROM outbox "
        "WHERE epoch = ? AND seq > ? ORDER BY seq",
        (old_epoch, acked),
    ).fetchall()
    if not rows:
        return 0
    anchor = conn.execute("SELECT anchor_seq, anchor_chain FROM writers WHERE epoch = ?", (old_epoch,)).fetchone()
    if anchor is None:
        return 0
    anchor_seq = int(anchor[0])
    if anchor_seq >= acked:
        end = bytes(anchor[1])
    else:
        row = conn.execute("SELECT chain FROM outbox WHERE epoch = ? AND seq = ?", (old_epoch, acked)).fetchone()
        if row is None:
            return 0  # the acknowledged record is gone: leave the old epoch as it is
        end = bytes(row[0])
    conn.execute("DELETE FROM outbox WHERE epoch = ? AND seq > ?", (old_epoch, acked))
    conn.execute(
        "UPDATE writers SET head_seq = ?, head_chain = ? WHERE epoch = ?", (max(acked, anchor_seq), end, old_epoch)
    )
    for register_id, txn_id, kind, captured_at, origin, body, txn_hash in rows:
        txn_json = canonical_dumps(json.loads(str(body))["txn"])
        item = Prepared(str(register_id), str(txn_id), str(kind), txn_json, str(txn_hash), 0, "")
        append(conn, key, [item], str(origin), captured_at=str(captured_at))
    log.warning("re-enrollment: %d unsent records of epoch %d carried into the new epoch", len(rows), old_epoch)
    return len(rows)
