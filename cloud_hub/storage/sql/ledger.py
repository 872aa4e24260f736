"""The ledger recorder's SQL, once for every engine: streams, the append-only ledger, conflicts and
refusals; and the bulk recorder (whole tables in and out, for ``cloud-hub storage copy``).

In a write transaction on an engine with row locks (PostgreSQL), :meth:`SQLLedger.get_stream` takes
the stream row ``FOR UPDATE``: bursts of one store queue behind each other while other stores proceed
in parallel, and every statement after the lock sees what the previous burst committed. SQLite's
``BEGIN IMMEDIATE`` already holds its single write lock: the row is as locked as it gets. Ledger rows
go in through the engine's bulk load (``COPY`` on PostgreSQL).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

from ..._exceptions import StorageError
from ..recorders import BulkRecorder, LedgerRecorder
from ..records import Conflict, LedgerRow, Refusal, Stream
from . import SQLWork, where

STREAM_COLS = "store_id, epoch, acked_through, head_chain, last_seen_at, duplicates, clock, backlog"
LEDGER_COLS = ("store_id", "epoch", "seq", "body", "body_hash", "chain", "sig", "received_at")

UPDATE_STREAM = (
    "UPDATE streams SET acked_through = ?, head_chain = ?, last_seen_at = ?, duplicates = duplicates + ?,"
    " clock = COALESCE(?, clock), backlog = COALESCE(?, backlog) WHERE store_id = ? AND epoch = ?"
)


def _stream(row: Any) -> Stream:
    clock = json.loads(row[6]) if row[6] else None
    backlog = json.loads(row[7]) if row[7] else None
    return Stream(row[0], row[1], row[2], bytes(row[3]), row[4], row[5], clock, backlog)


def _json(value: dict[str, Any] | None) -> str | None:
    return json.dumps(value, sort_keys=True) if value is not None else None


def _of_stream(store_id: str, epoch: int | None) -> tuple[str, list[Any]]:
    """`` WHERE`` a store's rows, of one epoch when given."""
    terms = ["store_id = ?"]
    args: list[Any] = [store_id]
    if epoch is not None:
        terms.append("epoch = ?")
        args.append(epoch)
    return where(terms), args


class SQLLedger(SQLWork, LedgerRecorder):
    """:class:`~cloud_hub.storage.LedgerRecorder` in SQL."""

    def create_stream(self, store_id: str, epoch: int, head_chain: bytes) -> None:
        self._run(
            "INSERT INTO streams (store_id, epoch, acked_through, head_chain) VALUES (?, ?, 0, ?)",
            (store_id, epoch, head_chain),
        )

    def get_stream(self, store_id: str, epoch: int) -> Stream | None:
        row = self._one(
            f"SELECT {STREAM_COLS} FROM streams WHERE store_id = ? AND epoch = ?{self._for_update}", (store_id, epoch)
        )
        return _stream(row) if row else None

    def streams(self, store_id: str) -> list[Stream]:
        rows = self._all(f"SELECT {STREAM_COLS} FROM streams WHERE store_id = ? ORDER BY epoch", (store_id,))
        return [_stream(r) for r in rows]

    def update_stream(
        self,
        store_id: str,
        epoch: int,
        *,
        acked_through: int,
        head_chain: bytes,
        last_seen_at: str,
        add_duplicates: int = 0,
        clock: dict[str, Any] | None = None,
        backlog: dict[str, Any] | None = None,
    ) -> None:
        args = (acked_through, head_chain, last_seen_at, add_duplicates, _json(clock), _json(backlog), store_id, epoch)
        if self._count(UPDATE_STREAM, args) != 1:
            raise StorageError(f"stream {store_id}/{epoch} does not exist")

    def ledger_hashes(self, store_id: str, epoch: int, from_seq: int, to_seq: int) -> dict[int, bytes]:
        rows = self._all(
            "SELECT seq, body_hash FROM ledger WHERE store_id = ? AND epoch = ? AND seq BETWEEN ? AND ?",
            (store_id, epoch, from_seq, to_seq),
        )
        return {int(seq): bytes(h) for seq, h in rows}

    def insert_ledger(self, rows: Sequence[LedgerRow]) -> None:
        if not rows:
            return
        with self._refused("ledger insert"):
            self._load(
                "ledger",
                LEDGER_COLS,
                [(r.store_id, r.epoch, r.seq, r.body, r.body_hash, r.chain, r.sig, r.received_at) for r in rows],
            )

    def ledger_page(self, store_id: str, epoch: int, after: int, limit: int) -> list[LedgerRow]:
        rows = self._all(
            f"SELECT {', '.join(LEDGER_COLS)} FROM ledger WHERE store_id = ? AND epoch = ? AND seq > ?"
            " ORDER BY seq LIMIT ?",
            (store_id, epoch, after, limit),
        )
        return [LedgerRow(r[0], r[1], r[2], r[3], bytes(r[4]), bytes(r[5]), bytes(r[6]), r[7]) for r in rows]

    def record_conflict(
        self, store_id: str, epoch: int, seq: int, stored_hash: bytes, received_hash: bytes, at: str
    ) -> None:
        self._run(
            "INSERT INTO conflicts (store_id, epoch, seq, stored_hash, received_hash, detected_at)"
            " VALUES (?, ?, ?, ?, ?, ?)",
            (store_id, epoch, seq, stored_hash, received_hash, at),
        )

    def record_refusal(self, store_id: str, epoch: int, seq: int, reason: str, at: str) -> None:
        self._run(
            "INSERT INTO refusals (store_id, epoch, seq, reason, at) VALUES (?, ?, ?, ?, ?)",
            (store_id, epoch, seq, reason, at),
        )

    def conflicts(self, store_id: str, epoch: int | None = None) -> list[Conflict]:
        cond, args = _of_stream(store_id, epoch)
        rows = self._all(
            f"SELECT id, store_id, epoch, seq, stored_hash, received_hash, detected_at FROM conflicts{cond}"
            " ORDER BY id",
            args,
        )
        return [Conflict(r[0], r[1], r[2], r[3], bytes(r[4]), bytes(r[5]), r[6]) for r in rows]

    def refusals(self, store_id: str, epoch: int | None = None) -> list[Refusal]:
        cond, args = _of_stream(store_id, epoch)
        rows = self._all(f"SELECT id, store_id, epoch, seq, reason, at FROM refusals{cond} ORDER BY id", args)
        return [Refusal(*r) for r in rows]


class SQLBulk(SQLWork, BulkRecorder):
    """:class:`~cloud_hub.storage.BulkRecorder` in SQL: the engine's streamed read out, its bulk load in."""

    def table_rows(self, table: str, columns: Sequence[str], order: str) -> Iterator[tuple[Any, ...]]:
        return self._stream_rows(table, f"SELECT {', '.join(columns)} FROM {table} ORDER BY {order}")

    def load_rows(
        self, table: str, columns: Sequence[str], rows: Iterable[tuple[Any, ...]], identity: str | None = None
    ) -> int:
        n = self._load(table, columns, rows)
        if identity is not None and n and self.dialect.follow_identity is not None:
            self._one(self.dialect.follow_identity.format(table=table, column=identity))
        return n

    def row_count(self, table: str) -> int:
        return int(self._one(f"SELECT COUNT(*) FROM {table}")[0])
