"""PostgreSQL side of the registry and ledger recorders, as mixins of the adapter's unit of work.

``self._c`` is a psycopg connection inside an open transaction; ``self._write`` says whether it is a
write transaction (READ COMMITTED with row locks) or a read-only snapshot (REPEATABLE READ). In a
write transaction :meth:`PgLedger.get_stream` takes the stream row ``FOR UPDATE``: bursts of one store
queue behind each other while other stores proceed in parallel, and every statement after the lock
sees what the previous burst committed.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import psycopg
from psycopg import errors

from .._exceptions import InputError, StorageError, StorageRetryable
from .recorders import BulkRecorder, LedgerRecorder, RegistryRecorder
from .records import Conflict, EnrollmentToken, LedgerRow, Refusal, Store, StoreSummary, Stream, Writer

_WRITER_COLS = "store_id, epoch, key_id, public_key, enrolled_at, hostname, superseded_at"
_STREAM_COLS = "store_id, epoch, acked_through, head_chain, last_seen_at, duplicates, clock, backlog"


def _stream(row: Any) -> Stream:
    clock = json.loads(row[6]) if row[6] else None
    backlog = json.loads(row[7]) if row[7] else None
    return Stream(row[0], row[1], row[2], bytes(row[3]), row[4], row[5], clock, backlog)


class _PgBase:
    _c: psycopg.Connection[Any]
    _write: bool

    def _one(self, sql: str, args: Sequence[Any] = ()) -> Any:
        return self._c.execute(sql, args).fetchone()

    def _all(self, sql: str, args: Sequence[Any] = ()) -> list[Any]:
        return self._c.execute(sql, args).fetchall()

    def _count(self, sql: str, args: Sequence[Any] = ()) -> int:
        return int(self._c.execute(sql, args).rowcount)


class PgRegistry(_PgBase, RegistryRecorder):
    """:class:`~cloud_hub.storage.RegistryRecorder` on PostgreSQL."""

    def get_store(self, store_id: str) -> Store | None:
        row = self._one("SELECT store_id, tz, created_at FROM stores WHERE store_id = %s", (store_id,))
        return Store(*row) if row else None

    def insert_store(self, store: Store) -> None:
        try:
            with self._c.transaction():  # a savepoint: a refused insert leaves the transaction usable
                self._c.execute("INSERT INTO stores VALUES (%s, %s, %s)", (store.store_id, store.tz, store.created_at))
        except errors.UniqueViolation:
            raise InputError(f"store {store.store_id} already exists", field="store_id") from None

    def list_stores(self) -> list[Store]:
        return [Store(*r) for r in self._all("SELECT store_id, tz, created_at FROM stores ORDER BY store_id")]

    def store_summaries(self) -> list[StoreSummary]:
        rows = self._all(
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
            "INSERT INTO enrollment_tokens VALUES (%s, %s, %s, %s, %s)",
            (token.token_hash, token.store_id, token.created_at, token.expires_at, token.used_at),
        )

    def get_token(self, token_hash: bytes) -> EnrollmentToken | None:
        row = self._one(
            "SELECT token_hash, store_id, created_at, expires_at, used_at FROM enrollment_tokens WHERE token_hash = %s",
            (token_hash,),
        )
        return EnrollmentToken(bytes(row[0]), *row[1:]) if row else None

    def mark_token_used(self, token_hash: bytes, at: str) -> bool:
        n = self._count(
            "UPDATE enrollment_tokens SET used_at = %s WHERE token_hash = %s AND used_at IS NULL", (at, token_hash)
        )
        return n == 1

    def max_epoch(self, store_id: str) -> int:
        row = self._one("SELECT COALESCE(MAX(epoch), 0) FROM writers WHERE store_id = %s", (store_id,))
        return int(row[0])

    def insert_writer(self, writer: Writer) -> None:
        try:
            with self._c.transaction():
                self._c.execute(
                    f"INSERT INTO writers ({_WRITER_COLS}) VALUES (%s, %s, %s, %s, %s, %s, %s)",
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
        except errors.UniqueViolation as exc:
            if exc.diag.constraint_name == "writers_key_id_key":
                raise InputError(
                    f"key {writer.key_id} is already enrolled; a new enrollment needs a new key", field="public_key"
                ) from None
            # Another replica enrolled the same store's next epoch at the same moment: run again.
            raise StorageRetryable(f"epoch {writer.epoch} of {writer.store_id} was taken concurrently") from None

    def supersede_writers(self, store_id: str, below_epoch: int, at: str) -> int:
        return self._count(
            "UPDATE writers SET superseded_at = %s WHERE store_id = %s AND epoch < %s AND superseded_at IS NULL",
            (at, store_id, below_epoch),
        )

    def writer_by_key(self, key_id: str) -> Writer | None:
        row = self._one(f"SELECT {_WRITER_COLS} FROM writers WHERE key_id = %s", (key_id,))
        return Writer(*row) if row else None

    def writers(self, store_id: str) -> list[Writer]:
        rows = self._all(f"SELECT {_WRITER_COLS} FROM writers WHERE store_id = %s ORDER BY epoch", (store_id,))
        return [Writer(*r) for r in rows]


class PgLedger(_PgBase, LedgerRecorder):
    """:class:`~cloud_hub.storage.LedgerRecorder` on PostgreSQL."""

    def create_stream(self, store_id: str, epoch: int, head_chain: bytes) -> None:
        self._c.execute(
            "INSERT INTO streams (store_id, epoch, acked_through, head_chain) VALUES (%s, %s, 0, %s)",
            (store_id, epoch, head_chain),
        )

    def get_stream(self, store_id: str, epoch: int) -> Stream | None:
        lock = " FOR UPDATE" if self._write else ""
        row = self._one(
            f"SELECT {_STREAM_COLS} FROM streams WHERE store_id = %s AND epoch = %s{lock}", (store_id, epoch)
        )
        return _stream(row) if row else None

    def streams(self, store_id: str) -> list[Stream]:
        rows = self._all(f"SELECT {_STREAM_COLS} FROM streams WHERE store_id = %s ORDER BY epoch", (store_id,))
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
        n = self._count(
            "UPDATE streams SET acked_through = %s, head_chain = %s, last_seen_at = %s, duplicates = duplicates + %s,"
            " clock = COALESCE(%s, clock), backlog = COALESCE(%s, backlog) WHERE store_id = %s AND epoch = %s",
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
        if n != 1:
            raise StorageError(f"stream {store_id}/{epoch} does not exist")

    def ledger_hashes(self, store_id: str, epoch: int, from_seq: int, to_seq: int) -> dict[int, bytes]:
        rows = self._all(
            "SELECT seq, body_hash FROM ledger WHERE store_id = %s AND epoch = %s AND seq BETWEEN %s AND %s",
            (store_id, epoch, from_seq, to_seq),
        )
        return {int(seq): bytes(h) for seq, h in rows}

    def insert_ledger(self, rows: Sequence[LedgerRow]) -> None:
        if not rows:
            return
        try:
            with (
                self._c.cursor() as cur,
                cur.copy(
                    "COPY ledger (store_id, epoch, seq, body, body_hash, chain, sig, received_at) FROM STDIN"
                ) as copy,
            ):
                for r in rows:
                    copy.write_row((r.store_id, r.epoch, r.seq, r.body, r.body_hash, r.chain, r.sig, r.received_at))
        except errors.UniqueViolation as exc:
            raise StorageError(f"ledger insert refused: {exc.diag.message_detail or exc}") from None

    def ledger_page(self, store_id: str, epoch: int, after: int, limit: int) -> list[LedgerRow]:
        rows = self._all(
            "SELECT store_id, epoch, seq, body, body_hash, chain, sig, received_at FROM ledger"
            " WHERE store_id = %s AND epoch = %s AND seq > %s ORDER BY seq LIMIT %s",
            (store_id, epoch, after, limit),
        )
        return [LedgerRow(r[0], r[1], r[2], r[3], bytes(r[4]), bytes(r[5]), bytes(r[6]), r[7]) for r in rows]

    def record_conflict(
        self, store_id: str, epoch: int, seq: int, stored_hash: bytes, received_hash: bytes, at: str
    ) -> None:
        self._c.execute(
            "INSERT INTO conflicts (store_id, epoch, seq, stored_hash, received_hash, detected_at)"
            " VALUES (%s, %s, %s, %s, %s, %s)",
            (store_id, epoch, seq, stored_hash, received_hash, at),
        )

    def record_refusal(self, store_id: str, epoch: int, seq: int, reason: str, at: str) -> None:
        self._c.execute(
            "INSERT INTO refusals (store_id, epoch, seq, reason, at) VALUES (%s, %s, %s, %s, %s)",
            (store_id, epoch, seq, reason, at),
        )

    def conflicts(self, store_id: str, epoch: int | None = None) -> list[Conflict]:
        rows = self._all(
            "SELECT id, store_id, epoch, seq, stored_hash, received_hash, detected_at FROM conflicts"
            " WHERE store_id = %s AND (%s::integer IS NULL OR epoch = %s) ORDER BY id",
            (store_id, epoch, epoch),
        )
        return [Conflict(r[0], r[1], r[2], r[3], bytes(r[4]), bytes(r[5]), r[6]) for r in rows]

    def refusals(self, store_id: str, epoch: int | None = None) -> list[Refusal]:
        rows = self._all(
            "SELECT id, store_id, epoch, seq, reason, at FROM refusals"
            " WHERE store_id = %s AND (%s::integer IS NULL OR epoch = %s) ORDER BY id",
            (store_id, epoch, epoch),
        )
        return [Refusal(*r) for r in rows]


class PgBulk(_PgBase, BulkRecorder):
    """:class:`~cloud_hub.storage.BulkRecorder` on PostgreSQL: a server-side cursor out, ``COPY`` in."""

    def table_rows(self, table: str, columns: Sequence[str], order: str) -> Iterator[tuple[Any, ...]]:
        with self._c.cursor(name=f"bulk_{table}") as cur:
            cur.itersize = 2_000
            cur.execute(f"SELECT {', '.join(columns)} FROM {table} ORDER BY {order}")
            for row in cur:
                yield tuple(row)

    def load_rows(
        self, table: str, columns: Sequence[str], rows: Iterable[tuple[Any, ...]], identity: str | None = None
    ) -> int:
        n = 0
        with self._c.cursor() as cur:
            with cur.copy(f"COPY {table} ({', '.join(columns)}) FROM STDIN") as copy:
                for row in rows:
                    copy.write_row(row)
                    n += 1
            if identity is not None and n:
                sequence = f"pg_get_serial_sequence('{table}', '{identity}')"
                cur.execute(f"SELECT setval({sequence}, (SELECT MAX({identity}) FROM {table}))")
        return n

    def row_count(self, table: str) -> int:
        return int(self._one(f"SELECT COUNT(*) FROM {table}")[0])
