"""SQLite storage adapter (apsw): the hub's embedded default.

WAL journal, ``synchronous=FULL``, one connection per thread (a single shared connection, guarded by
a lock, for ``:memory:``). A write transaction is ``BEGIN IMMEDIATE``, so SQLite serializes bursts;
a lock held past the busy timeout raises :class:`~cloud_hub._exceptions.StorageBusy`. The ledger is
append-only: triggers refuse UPDATE and DELETE.

The recorders' SQL is written once in :mod:`.sql`; this module keeps what is SQLite's own: the
connection, :data:`SQLITE` (``?`` placeholders, no row locks, lists as JSON through ``json_each``)
and the hooks of :class:`SQLiteWork` (apsw's execute and change counts, ``executemany`` for bulk
loads, event ids numbered in the write transaction). The schema is :mod:`.sqlite_schema`.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import apsw

from .._exceptions import StorageBusy, StorageError
from .recorders import Storage, UnitOfWork
from .records import NewEvent, iso_utc
from .sql import Dialect
from .sql.books import SQLBooks
from .sql.events import SQLEvents
from .sql.ledger import SQLBulk, SQLLedger
from .sql.registry import SQLRegistry
from .sqlite_schema import MIGRATIONS

SQLITE = Dialect(
    name="sqlite",
    mark="?",
    row_locks=False,
    any_of="{column} IN (SELECT value FROM json_each(?))",
    pack=json.dumps,
)

__all__ = ["MIGRATIONS", "SQLITE", "SQLiteStorage", "SQLiteWork"]


def _rollback(conn: apsw.Connection) -> None:
    if not conn.getautocommit():
        conn.execute("ROLLBACK")


class SQLiteWork(SQLRegistry, SQLLedger, SQLBooks, SQLEvents, SQLBulk, UnitOfWork):
    """A unit of work on one apsw connection, inside an open transaction: every recorder at once."""

    dialect = SQLITE

    def __init__(self, conn: apsw.Connection, write: bool) -> None:
        self._c = conn
        self._write = write

    def _run(self, sql: str, args: Sequence[Any] = ()) -> None:
        self._c.execute(sql, args)

    def _one(self, sql: str, args: Sequence[Any] = ()) -> Any:
        return self._c.execute(sql, args).fetchone()

    def _all(self, sql: str, args: Sequence[Any] = ()) -> list[Any]:
        return self._c.execute(sql, args).fetchall()

    def _count(self, sql: str, args: Sequence[Any] = ()) -> int:
        self._c.execute(sql, args)
        return int(self._c.changes())

    def _many(self, sql: str, rows: Sequence[Sequence[Any]]) -> int:
        if not rows:
            return 0
        before = self._c.totalchanges()
        self._c.executemany(sql, rows)
        return int(self._c.totalchanges() - before)

    def _try_insert(self, sql: str, args: Sequence[Any]) -> str | None:
        try:
            self._c.execute(sql, args)
        except apsw.ConstraintError:
            return ""  # SQLite does not name the constraint
        return None

    @contextmanager
    def _refused(self, what: str) -> Iterator[None]:
        try:
            yield
        except apsw.ConstraintError as exc:
            raise StorageError(f"{what} refused: {exc}") from None

    def _load(self, table: str, columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> int:
        before = self._c.totalchanges()
        marks = ", ".join("?" * len(columns))
        self._c.executemany(f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({marks})", rows)
        return int(self._c.totalchanges() - before)  # INTEGER PRIMARY KEY continues after the highest id

    def _stream_rows(self, table: str, sql: str) -> Iterator[tuple[Any, ...]]:
        for row in self._c.execute(sql):
            yield tuple(row)

    def _insert_event_rows(self, events: Sequence[NewEvent]) -> list[int]:
        # The one writer numbers events itself (BEGIN IMMEDIATE holds the database).
        top: Any = self._one("SELECT COALESCE(MAX(pk), 0) FROM events")
        pks = list(range(int(top[0]) + 1, int(top[0]) + 1 + len(events)))
        self._c.executemany(
            "INSERT INTO events VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [
                (pk, e.source, e.id, e.store_id, e.epoch, e.seq, e.type, e.event_json, e.created_at)
                for pk, e in zip(pks, events, strict=True)
            ],
        )
        return pks


class SQLiteStorage(Storage):
    """The apsw adapter.

    Args:
        path: Database file, or ``":memory:"`` for a private in-memory database (tests).
        busy_timeout_ms: How long to wait for the write lock before raising ``StorageBusy``.
    """

    engine = "sqlite"
    latest_schema = len(MIGRATIONS)

    def __init__(self, path: str | Path, *, busy_timeout_ms: int = 5_000) -> None:
        self.path = str(path)
        self.memory = self.path == ":memory:"
        self.busy_timeout_ms = busy_timeout_ms
        self._local = threading.local()
        self._all: list[apsw.Connection] = []
        self._guard = threading.Lock()
        self._memory_lock = threading.RLock()
        self._closed = False
        self._shared = self._connect() if self.memory else None
        self.applied = self._migrate()

    def _connect(self) -> apsw.Connection:
        try:
            conn = apsw.Connection(self.path)
            conn.setbusytimeout(self.busy_timeout_ms)
            if not self.memory:
                conn.execute("PRAGMA journal_mode = WAL").fetchall()
            conn.execute("PRAGMA synchronous = FULL")
            conn.execute("PRAGMA foreign_keys = ON")
        except apsw.BusyError:
            raise StorageBusy() from None
        except apsw.Error as exc:
            raise StorageError(f"cannot open database {self.path}: {exc}") from None
        with self._guard:
            self._all.append(conn)
        return conn

    def _conn(self) -> apsw.Connection:
        if self._closed:
            raise StorageError("storage is closed")
        if self._shared is not None:
            return self._shared
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._local.conn = self._connect()
        return conn

    @contextmanager
    def _txn(self, begin: str) -> Iterator[UnitOfWork]:
        conn = self._conn()
        lock = self._memory_lock if self.memory else None
        if lock is not None:
            lock.acquire()
        try:
            conn.execute(begin)
            try:
                yield SQLiteWork(conn, write=begin == "BEGIN IMMEDIATE")
                conn.execute("COMMIT")
            except BaseException:
                _rollback(conn)
                raise
        except (apsw.BusyError, apsw.LockedError):
            raise StorageBusy() from None
        except apsw.Error as exc:
            raise StorageError(f"database error: {exc}") from None
        finally:
            if lock is not None:
                lock.release()

    def transaction(self) -> AbstractContextManager[UnitOfWork]:
        return self._txn("BEGIN IMMEDIATE")

    def snapshot(self) -> AbstractContextManager[UnitOfWork]:
        return self._txn("BEGIN DEFERRED")

    def backup(self, dest: Path) -> str:
        """SQLite's online backup API, a few hundred pages at a time so writers are never held up for long."""
        if self.memory:
            raise StorageError("an in-memory database has no backup")
        part = Path(str(dest) + ".part")
        part.unlink(missing_ok=True)
        try:
            target = apsw.Connection(str(part))
            try:
                with target.backup("main", self._conn(), "main") as job:
                    while not job.done:
                        job.step(256)
                        if not job.done:
                            time.sleep(0.001)  # let a waiting writer in between steps
                target.execute("PRAGMA journal_mode = DELETE").fetchall()  # one self-contained file
                check = target.execute("PRAGMA integrity_check").fetchall()
            finally:
                target.close()
        except apsw.Error as exc:
            part.unlink(missing_ok=True)
            raise StorageError(f"backup to {dest} failed: {exc}") from None
        if check != [("ok",)]:
            part.unlink(missing_ok=True)
            raise StorageError(f"backup to {dest} failed its integrity check: {check[:1]}")
        os.replace(part, dest)
        return "sqlite database (online backup API)"

    def _migrate(self) -> list[int]:
        conn = self._conn()
        conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations"
            " (version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at TEXT NOT NULL)"
        )
        applied: list[int] = []
        with self._txn("BEGIN IMMEDIATE"):
            done = {row[0] for row in conn.execute("SELECT version FROM schema_migrations")}
            for version, name, sql in MIGRATIONS:
                if version in done:
                    continue
                conn.execute(sql)
                conn.execute(
                    "INSERT INTO schema_migrations VALUES (?, ?, ?)", (version, name, iso_utc(datetime.now(UTC)))
                )
                applied.append(version)
        return applied

    def schema_version(self) -> int:
        row = self._conn().execute("SELECT COALESCE(MAX(version), 0) FROM schema_migrations").fetchone()
        return int(row[0]) if row else 0

    def close(self) -> None:
        with self._guard:
            self._closed = True
            conns, self._all = self._all, []
        for conn in conns:
            conn.close()
