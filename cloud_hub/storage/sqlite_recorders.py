"""SQLite side of the registry and ledger recorders (stores, tokens, writers; streams, ledger, conflicts,
refusals), as mixins of the adapter's unit of work (``self._c`` is the apsw connection)."""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import apsw

from .._exceptions import InputError, StorageError
from .recorders import BulkRecorder, LedgerRecorder, RegistryRecorder
from .records import Conflict, EnrollmentToken, LedgerRow, Refusal, Store, StoreSummary, Stream, Writer

_WRITER_COLS = "store_id, epoch, key_id, public_key, enrolled_at, hostname, superseded_at"
_STREAM_COLS = "store_id, epoch, acked_through, head_chain, last_seen_at, duplicates, clock, backlog"


def _stream(row: Any) -> Stream:
    clock = json.loads(row[6]) if row[6] else None
    backlog = json.loads(row[7]) if row[7] else None
    return Stream(row[0], row[1], row[2], bytes(row[3]), row[4], row[5], clock, backlog)


class _SQLiteBase:
    _c: apsw.Connection

    def _one(self, sql: str, args: Sequence[Any] = ()) -> Any:
        return self._c.execute(sql, args).fetchone()


class SQLiteRegistry(_SQLiteBase, RegistryRecorder):
    """:class:`~cloud_hub.storage.RegistryRecorder` on SQLite."""

    def get_store(self, store_id: str) -> Store | None:
        row = self._one("SELECT store_id, tz, created_at FROM stores WHERE store_id = ?", (store_id,))
        return Store(*row) if row else None

    def insert_store(self, store: Store) -> None:
        try:
            self._c.execute("INSERT INTO stores VALUES (?, ?, ?)", (store.store_id, store.tz, store.created_at))
        except apsw.ConstraintError:
            raise InputError(f"store {store.store_id} already exists", field="store_id") from None

    def list_stores(self) -> list[Store]:
        rows = self._c.execute("SELECT store_id, tz, created_at FROM stores ORDER BY store_id")
        return [Store(*r) for r in rows]

    def store_summaries(self) -> list[StoreSummary]:
        rows = self._c.execute(
            """
            SELECT s.store_id, s.tz, st.epoch, COALESCE(st.acked_through, 0), st.last_seen_at,
                   COALESCE(st.duplicates, 0),
                   (SELECT COUNT(*) FROM conflicts c WHERE c.store_id = s.store_id), st.backlog
            FROM stores s
            LEFT JOIN streams st ON st.store_id = s.store_id
                 AND st.epoch = (SELECT MAX(epoch) FROM streams m WHERE m.store_id = s.store_id)
            ORDER BY s.store_id
            """
        )
        return [
            StoreSummary(r[0], r[1], r[2], r[3], r[4], r[5], r[6], json.loads(r[7]) if r[7] else None) for r in rows
        ]

    def insert_token(self, token: EnrollmentToken) -> None:
        self._c.execute(
            "INSERT INTO enrollment_tokens VALUES (?, ?, ?, ?, ?)",
            (token.token_hash, token.store_id, token.created_at, token.expires_at, token.used_at),
        )

    def get_token(self, token_hash: bytes) -> EnrollmentToken | None:
        row = self._one(
            "SELECT token_hash, store_id, created_at, expires_at, used_at FROM enrollment_tokens WHERE token_hash = ?",
            (token_hash,),
        )
        return EnrollmentToken(bytes(row[0]), *row[1:]) if row else None

    def mark_token_used(self, token_hash: bytes, at: str) -> bool:
        self._c.execute(
            "UPDATE enrollment_tokens SET used_at = ? WHERE token_hash = ? AND used_at IS NULL", (at, token_hash)
        )
        return self._c.changes() == 1

    # writers
    def max_epoch(self, store_id: str) -> int:
        row = self._one("SELECT COALESCE(MAX(epoch), 0) FROM writers WHERE store_id = ?", (store_id,))
        return int(row[0])

    def insert_writer(self, writer: Writer) -> None:
        try:
            self._c.execute(
                f"INSERT INTO writers ({_WRITER_COLS}) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (
                    writer.store_id,
                    writer.epoch,
                    writer.key_id,
                    writer.public_key,
                    writer.enrolled_at,
                    writer.hostname,
                    writer.superseded_at,
                ),
            )
        except apsw.ConstraintError:
            raise InputError(
                f"key {writer.key_id} is already enrolled; a new enrollment needs a new key", field="public_key"
            ) from None

    def supersede_writers(self, store_id: str, below_epoch: int, at: str) -> int:
        self._c.execute(
            "UPDATE writers SET superseded_at = ? WHERE store_id = ? AND epoch < ? AND superseded_at IS NULL",
            (at, store_id, below_epoch),
        )
        return int(self._c.changes())

    def writer_by_key(self, key_id: str) -> Writer | None:
        row = self._one(f"SELECT {_WRITER_COLS} FROM writers WHERE key_id = ?", (key_id,))
        return Writer(*row) if row else None

    def writers(self, store_id: str) -> list[Writer]:
        rows = self._c.execute(f"SELECT {_WRITER_COLS} FROM writers WHERE store_id = ? ORDER BY epoch", (store_id,))
        return [Writer(*r) for r in rows]


class SQLiteLedger(_SQLiteBase, LedgerRecorder):
    """:class:`~cloud_hub.storage.LedgerRecorder` on SQLite."""

    def create_stream(self, store_id: str, epoch: int, head_chain: bytes) -> None:
        self._c.execute(
            "INSERT INTO streams (store_id, epoch, acked_through, head_chain) VALUES (?, ?, 0, ?)",
            (store_id, epoch, head_chain),
        )

    def get_stream(self, store_id: str, epoch: int) -> Stream | None:
        # BEGIN IMMEDIATE already holds SQLite's single write lock: the row is as locked as it gets.
        row = self._one(f"SELECT {_STREAM_COLS} FROM streams WHERE store_id = ? AND epoch = ?", (store_id, epoch))
        return _stream(row) if row else None

    def streams(self, store_id: str) -> list[Stream]:
        rows = self._c.execute(f"SELECT {_STREAM_COLS} FROM streams WHERE store_id = ? ORDER BY epoch", (store_id,))
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
        self._c.execute(
            "UPDATE streams SET acked_through = ?, head_chain = ?, last_seen_at = ?, duplicates = duplicates + ?,"
            " clock = COALESCE(?, clock), backlog = COALESCE(?, backlog) WHERE store_id = ? AND epoch = ?",
            (
                acked_through,
                head_chain,
                last_seen_at,
                add_duplicates,
                json.dumps(clock, sort_keys=True) if clock is not None else None,
                json.dumps(backlog, sort_keys=True) if backlog is not None else None,
                store_id,
                epoch,
            ),
        )
        if self._c.changes() != 1:
            raise StorageError(f"stream {store_id}/{epoch} does not exist")

    def ledger_hashes(self, store_id: str, epoch: int, from_seq: int, to_seq: int) -> dict[int, bytes]:
        rows = self._c.execute(
            "SELECT seq, body_hash FROM ledger WHERE store_id = ? AND epoch = ? AND seq BETWEEN ? AND ?",
            (store_id, epoch, from_seq, to_seq),
        )
        return {seq: bytes(h) for seq, h in rows}

    def insert_ledger(self, rows: Sequence[LedgerRow]) -> None:
        try:
            self._c.executemany(
                "INSERT INTO ledger VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                [(r.store_id, r.epoch, r.seq, r.body, r.body_hash, r.chain, r.sig, r.received_at) for r in rows],
            )
        except apsw.ConstraintError as exc:
            raise StorageError(f"ledger insert refused: {exc}") from None

    def ledger_page(self, store_id: str, epoch: int, after: int, limit: int) -> list[LedgerRow]:
        rows = self._c.execute(
            "SELECT store_id, epoch, seq, body, body_hash, chain, sig, received_at FROM ledger"
            " WHERE store_id = ? AND epoch = ? AND seq > ? ORDER BY seq LIMIT ?",
            (store_id, epoch, after, limit),
        )
        return [LedgerRow(r[0], r[1], r[2], r[3], bytes(r[4]), bytes(r[5]), bytes(r[6]), r[7]) for r in rows]

    def record_conflict(
        self, store_id: str, epoch: int, seq: int, stored_hash: bytes, received_hash: bytes, at: str
    ) -> None:
        self._c.execute(
            "INSERT INTO conflicts (store_id, epoch, seq, stored_hash, received_hash, detected_at)"
            " VALUES (?, ?, ?, ?, ?, ?)",
            (store_id, epoch, seq, stored_hash, received_hash, at),
        )

    def record_refusal(self, store_id: str, epoch: int, seq: int, reason: str, at: str) -> None:
        self._c.execute(
            "INSERT INTO refusals (store_id, epoch, seq, reason, at) VALUES (?, ?, ?, ?, ?)",
            (store_id, epoch, seq, reason, at),
        )

    def conflicts(self, store_id: str, epoch: int | None = None) -> list[Conflict]:
        rows = self._c.execute(
            "SELECT id, store_id, epoch, seq, stored_hash, received_hash, detected_at FROM conflicts"
            " WHERE store_id = ? AND (? IS NULL OR epoch = ?) ORDER BY id",
            (store_id, epoch, epoch),
        )
        return [Conflict(r[0], r[1], r[2], r[3], bytes(r[4]), bytes(r[5]), r[6]) for r in rows]

    def refusals(self, store_id: str, epoch: int | None = None) -> list[Refusal]:
        rows = self._c.execute(
            "SELECT id, store_id, epoch, seq, reason, at FROM refusals"
            " WHERE store_id = ? AND (? IS NULL OR epoch = ?) ORDER BY id",
            (store_id, epoch, epoch),
        )
        return [Refusal(*r) for r in rows]


class SQLiteBulk(_SQLiteBase, BulkRecorder):
    """:class:`~cloud_hub.storage.BulkRecorder` on SQLite."""

    def table_rows(self, table: str, columns: Sequence[str], order: str) -> Iterator[tuple[Any, ...]]:
        for row in self._c.execute(f"SELECT {', '.join(columns)} FROM {table} ORDER BY {order}"):
            yield tuple(row)

    def load_rows(
        self, table: str, columns: Sequence[str], rows: Iterable[tuple[Any, ...]], identity: str | None = None
    ) -> int:
        before = self._c.totalchanges()
        marks = ", ".join("?" * len(columns))
        self._c.executemany(f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({marks})", rows)
        return int(self._c.totalchanges() - before)  # INTEGER PRIMARY KEY continues after the highest id

    def row_count(self, table: str) -> int:
        return int(self._one(f"SELECT COUNT(*) FROM {table}")[0])
