"""SQLite storage adapter (apsw): the hub's embedded default.

WAL journal, ``synchronous=FULL``, one connection per thread (a single shared connection, guarded by
a lock, for ``:memory:``). A write transaction is ``BEGIN IMMEDIATE``, so SQLite serializes bursts;
a lock held past the busy timeout raises :class:`~cloud_hub._exceptions.StorageBusy`. The ledger is
append-only: triggers refuse UPDATE and DELETE.

The recorders' SQL lives beside this module, one mixin per recorder: :mod:`.sqlite_recorders`
(registry, ledger) and :mod:`.sqlite_events` (events, deliveries, lanes).
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from datetime import UTC, datetime
from pathlib import Path

import apsw

from .._exceptions import StorageBusy, StorageError
from .recorders import Storage, UnitOfWork
from .records import iso_utc
from .sqlite_bookkeeping import MIGRATION_3, SQLiteBookkeeping
from .sqlite_events import MIGRATION_2, SQLiteEvents
from .sqlite_recorders import SQLiteBulk, SQLiteLedger, SQLiteRegistry

MIGRATIONS: list[tuple[int, str, str]] = [
    (
        1,
        "initial schema",
        """
        CREATE TABLE stores (
            store_id   TEXT PRIMARY KEY,
            tz         TEXT NOT NULL,
            created_at TEXT NOT NULL
        );
        CREATE TABLE enrollment_tokens (
            token_hash BLOB PRIMARY KEY,
            store_id   TEXT NOT NULL REFERENCES stores(store_id),
            created_at TEXT NOT NULL,
            expires_at TEXT NOT NULL,
            used_at    TEXT
        );
        CREATE TABLE writers (
            store_id      TEXT NOT NULL REFERENCES stores(store_id),
            epoch         INTEGER NOT NULL,
            key_id        TEXT NOT NULL UNIQUE,
            public_key    TEXT NOT NULL,
            enrolled_at   TEXT NOT NULL,
            superseded_at TEXT,
            hostname      TEXT NOT NULL DEFAULT '',
            PRIMARY KEY (store_id, epoch)
        );
        CREATE TABLE streams (
            store_id      TEXT NOT NULL,
            epoch         INTEGER NOT NULL,
            acked_through INTEGER NOT NULL DEFAULT 0,
            head_chain    BLOB NOT NULL,
            last_seen_at  TEXT,
            duplicates    INTEGER NOT NULL DEFAULT 0,
            clock         TEXT,
            PRIMARY KEY (store_id, epoch),
            FOREIGN KEY (store_id, epoch) REFERENCES writers(store_id, epoch)
        );
        CREATE TABLE ledger (
            store_id    TEXT NOT NULL,
            epoch       INTEGER NOT NULL,
            seq         INTEGER NOT NULL,
            body        TEXT NOT NULL,
            body_hash   BLOB NOT NULL,
            chain       BLOB NOT NULL,
            sig         BLOB NOT NULL,
            received_at TEXT NOT NULL,
            PRIMARY KEY (store_id, epoch, seq)
        );
        CREATE TRIGGER ledger_no_update BEFORE UPDATE ON ledger
        BEGIN SELECT RAISE(ABORT, 'ledger is immutable'); END;
        CREATE TRIGGER ledger_no_delete BEFORE DELETE ON ledger
        BEGIN SELECT RAISE(ABORT, 'ledger is immutable'); END;
        CREATE TABLE conflicts (
            id            INTEGER PRIMARY KEY,
            store_id      TEXT NOT NULL,
            epoch         INTEGER NOT NULL,
            seq           INTEGER NOT NULL,
            stored_hash   BLOB NOT NULL,
            received_hash BLOB NOT NULL,
            detected_at   TEXT NOT NULL
        );
        CREATE INDEX conflicts_stream ON conflicts(store_id, epoch);
        CREATE TABLE refusals (
            id       INTEGER PRIMARY KEY,
            store_id TEXT NOT NULL,
            epoch    INTEGER NOT NULL,
            seq      INTEGER NOT NULL,
            reason   TEXT NOT NULL,
            at       TEXT NOT NULL
        );
        CREATE INDEX refusals_stream ON refusals(store_id, epoch);
        """,
    ),
    (2, "events and deliveries", MIGRATION_2),
    (3, "stock moves, time fallbacks, derive-error resolution, agent backlog", MIGRATION_3),
]


def _rollback(conn: apsw.Connection) -> None:
    if not conn.getautocommit():
        conn.execute("ROLLBACK")


class _SQLiteWork(SQLiteRegistry, SQLiteLedger, SQLiteBookkeeping, SQLiteEvents, SQLiteBulk, UnitOfWork):
    """A unit of work on one apsw connection, inside an open transaction: every recorder at once."""

    def __init__(self, conn: apsw.Connection) -> None:
        self._c = conn


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
                yield _SQLiteWork(conn)
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
