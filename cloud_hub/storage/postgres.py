"""PostgreSQL storage adapter (psycopg 3 with ``psycopg_pool``): the hub's engine for several replicas.

Selected by a storage URL ``postgresql://user@host:port/db`` (libpq's URI, any libpq parameter in the
query) with one addition, ``?schema=NAME``: the tables live in that schema (created on first use),
else in the connection's default ``search_path``.

- A pool of connections (autocommit, explicit transactions), checked before each use, so a
  connection broken by a server restart is replaced rather than handed out.
- ``transaction()`` is READ COMMITTED with row locks taken by the recorders (``FOR UPDATE`` on a
  stream, ``FOR UPDATE SKIP LOCKED`` in claims); ``snapshot()`` is REPEATABLE READ READ ONLY.
- Errors map onto the hub's: a lock or free connection not had within the busy timeout is
  ``StorageBusy``; a serialization failure or deadlock is ``StorageRetryable`` (``Storage.run``
  retries it); a server that cannot be reached is ``StorageUnavailable``. All three answer 503 with
  ``Retry-After``; nothing from psycopg ever reaches the HTTP layer.
- Forward-only migrations (:mod:`.postgres_schema`) run at open, under an advisory lock.

The recorders' SQL is written once in :mod:`.sql`; this module keeps what is PostgreSQL's own:
:data:`POSTGRES` (``%s`` placeholders, row locks, lists as arrays with ``= ANY``, identities moved
past loaded ids) and the hooks of :class:`PgWork`: savepoints around inserts that may be refused,
``COPY`` for bulk loads, a server-side cursor to read a whole table, event ids from identity columns
with ``INSERT ... RETURNING``.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections.abc import Iterable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import psycopg
from psycopg import errors, sql
from psycopg_pool import ConnectionPool, PoolTimeout

from .._exceptions import InputError, StorageBusy, StorageError, StorageRetryable, StorageUnavailable
from .postgres_schema import MIGRATIONS
from .recorders import Storage, UnitOfWork
from .records import NewEvent, iso_utc
from .sql import Dialect
from .sql.books import SQLBooks
from .sql.events import SQLEvents
from .sql.ledger import SQLBulk, SQLLedger
from .sql.registry import SQLRegistry

SCHEMA_RE = re.compile(r"[a-z_][a-z0-9_]{0,62}")
MIGRATE_LOCK = 0x5353_4D47  # "SSMG": the advisory lock key of migrations (per database)


POSTGRES = Dialect(
    name="postgresql",
    mark="%s",
    row_locks=True,
    any_of="{column} = ANY(?)",
    pack=list,
    follow_identity="SELECT setval(pg_get_serial_sequence('{table}', '{column}'), (SELECT MAX({column}) FROM {table}))",
)


class PgWork(SQLRegistry, SQLLedger, SQLBooks, SQLEvents, SQLBulk, UnitOfWork):
    """A unit of work on one pooled connection inside an open transaction: every recorder at once.

    ``write`` says whether it is a write transaction (READ COMMITTED with row locks) or a read-only
    snapshot (REPEATABLE READ).
    """

    dialect = POSTGRES

    def __init__(self, conn: psycopg.Connection[Any], write: bool) -> None:
        self._c = conn
        self._write = write

    def _run(self, sql: str, args: Sequence[Any] = ()) -> None:
        self._c.execute(POSTGRES.render(sql), args)

    def _one(self, sql: str, args: Sequence[Any] = ()) -> Any:
        return self._c.execute(POSTGRES.render(sql), args).fetchone()

    def _all(self, sql: str, args: Sequence[Any] = ()) -> list[Any]:
        return self._c.execute(POSTGRES.render(sql), args).fetchall()

    def _count(self, sql: str, args: Sequence[Any] = ()) -> int:
        return int(self._c.execute(POSTGRES.render(sql), args).rowcount)

    def _many(self, sql: str, rows: Sequence[Sequence[Any]]) -> int:
        if not rows:
            return 0
        with self._c.cursor() as cur:
            cur.executemany(POSTGRES.render(sql), rows)
            return int(cur.rowcount)  # summed over the rows

    def _try_insert(self, sql: str, args: Sequence[Any]) -> str | None:
        try:
            with self._c.transaction():  # a savepoint: a refused insert leaves the transaction usable
                self._c.execute(POSTGRES.render(sql), args)
        except errors.UniqueViolation as exc:
            return str(exc.diag.constraint_name)
        return None

    @contextmanager
    def _refused(self, what: str) -> Iterator[None]:
        try:
            yield
        except errors.UniqueViolation as exc:
            raise StorageError(f"{what} refused: {exc.diag.message_detail or exc}") from None

    def _load(self, table: str, columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> int:
        n = 0
        with self._c.cursor() as cur, cur.copy(f"COPY {table} ({', '.join(columns)}) FROM STDIN") as copy:
            for row in rows:
                copy.write_row(row)
                n += 1
        return n

    def _stream_rows(self, table: str, sql: str) -> Iterator[tuple[Any, ...]]:
        with self._c.cursor(name=f"bulk_{table}") as cur:
            cur.itersize = 2_000
            cur.execute(POSTGRES.render(sql))
            for row in cur:
                yield tuple(row)

    def _insert_event_rows(self, events: Sequence[NewEvent]) -> list[int]:
        with self._c.cursor() as cur:
            cur.executemany(
                "INSERT INTO events (source, id, store_id, epoch, seq, type, event_json, created_at)"
                " VALUES (%s, %s, %s, %s, %s, %s, %s, %s) RETURNING pk",
                [(e.source, e.id, e.store_id, e.epoch, e.seq, e.type, e.event_json, e.created_at) for e in events],
                returning=True,
            )
            pks: list[int] = []
            while True:
                pks.append(int(cur.fetchone()[0]))  # type: ignore[index]
                if not cur.nextset():
                    break
        return pks


def split_url(url: str) -> tuple[str, str | None]:
    """The libpq conninfo of a storage URL and its ``schema`` parameter (removed from the conninfo).

    Raises:
        InputError: the schema name is not a plain lower-case SQL identifier.
    """
    parts = urlsplit(url)
    query = parse_qsl(parts.query, keep_blank_values=True)
    schema = None
    kept = []
    for key, value in query:
        if key == "schema":
            schema = value
        else:
            kept.append((key, value))
    if schema is not None and not SCHEMA_RE.fullmatch(schema):
        raise InputError(f"schema {schema!r} in the storage URL is not a lower-case SQL name", field="database")
    return urlunsplit(parts._replace(query=urlencode(kept))), schema


def redact(url: str) -> str:
    """The URL without its password, for logs and ``/readyz``."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    netloc = f"{parts.username}:***@{host}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))


class PostgresStorage(Storage):
    """The psycopg 3 adapter.

    Args:
        url: ``postgresql://...`` storage URL (see the module docstring).
        busy_timeout_ms: How long to wait for a row lock or a free pooled connection before ``StorageBusy``.
        pool_size: Most connections this process opens.
        connect_timeout_s: How long to wait for the server when opening.
    """

    engine = "postgresql"
    latest_schema = MIGRATIONS[-1][0]

    def __init__(
        self, url: str, *, busy_timeout_ms: int = 5_000, pool_size: int = 10, connect_timeout_s: float = 10.0
    ) -> None:
        self.url = redact(url)
        conninfo, self.schema = split_url(url)
        self._conninfo = conninfo  # for pg_dump (backup); never logged
        self.busy_timeout_ms = busy_timeout_ms
        options = f"-c lock_timeout={int(busy_timeout_ms)}"
        if self.schema:
            options += f" -c search_path={self.schema}"
        kwargs: dict[str, Any] = {
            "autocommit": True,
            "options": options,
            "connect_timeout": max(1, int(connect_timeout_s)),
            # A cut network shows as an error within seconds, not after the kernel's two hours.
            "keepalives": 1,
            "keepalives_idle": 5,
            "keepalives_interval": 2,
            "keepalives_count": 3,
            "tcp_user_timeout": 10_000,
        }
        self._pool: ConnectionPool[psycopg.Connection[Any]] = ConnectionPool(
            conninfo,
            min_size=1,
            max_size=max(1, pool_size),
            kwargs=kwargs,
            open=False,
            check=ConnectionPool.check_connection,
            timeout=busy_timeout_ms / 1000,
            # Give up a reconnection quickly: the next request starts a fresh attempt, so the hub is back
            # within about a second of the database, however long it was away.
            reconnect_timeout=5.0,
            name="storesync-hub",
        )
        try:
            self._pool.open(wait=True, timeout=connect_timeout_s)
        except PoolTimeout:
            self._pool.close()
            raise StorageUnavailable(f"cannot connect to {self.url} within {connect_timeout_s:g} s") from None
        try:
            self.applied = self._migrate()
        except BaseException:
            self._pool.close()
            raise

    @contextmanager
    def _txn(self, write: bool, wait_s: float | None = None) -> Iterator[PgWork]:
        try:
            with self._pool.connection(timeout=wait_s) as conn, conn.transaction():
                if not write:
                    conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
                yield PgWork(conn, write)
        except PoolTimeout:
            raise StorageBusy("no database connection became free in time; retry shortly") from None
        except (errors.SerializationFailure, errors.DeadlockDetected):
            raise StorageRetryable() from None
        except (errors.LockNotAvailable, errors.QueryCanceled):
            raise StorageBusy() from None
        except (psycopg.OperationalError, psycopg.InterfaceError) as exc:
            raise StorageUnavailable(f"the hub database is unreachable: {_first_line(exc)}") from None
        except psycopg.Error as exc:
            raise StorageError(f"database error: {type(exc).__name__}: {_first_line(exc)}") from None

    def transaction(self) -> AbstractContextManager[UnitOfWork]:
        if self._pool.closed:
            raise StorageError("storage is closed")
        return self._txn(True)

    def snapshot(self) -> AbstractContextManager[UnitOfWork]:
        if self._pool.closed:
            raise StorageError("storage is closed")
        return self._txn(False)

    def _migrate(self) -> list[int]:
        applied: list[int] = []
        with self._txn(True) as tx:
            conn = tx._c
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (MIGRATE_LOCK,))
            if self.schema:
                conn.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(self.schema)))
            conn.execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations"
                " (version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at TEXT NOT NULL)"
            )
            done = {row[0] for row in conn.execute("SELECT version FROM schema_migrations")}
            for version, name, script in MIGRATIONS:
                if version in done:
                    continue
                conn.execute(script.encode())  # trusted text of this package, several statements
                conn.execute(
                    "INSERT INTO schema_migrations VALUES (%s, %s, %s)", (version, name, iso_utc(datetime.now(UTC)))
                )
                applied.append(version)
        return applied

    def schema_version(self) -> int:
        with self._txn(False, wait_s=min(2.0, self.busy_timeout_ms / 1000)) as tx:  # /readyz answers fast
            row = tx._c.execute("SELECT COALESCE(MAX(version), 0) FROM schema_migrations").fetchone()
        return int(row[0]) if row else 0

    def backup(self, dest: Path) -> str:
        """``pg_dump --format=custom`` of the hub's schema (or database), through a ``.part`` file."""
        exe = shutil.which("pg_dump")
        if exe is None:
            raise StorageError("pg_dump is not installed; install the PostgreSQL client tools to back up this hub")
        part = Path(str(dest) + ".part")
        argv = [exe, "--format=custom", "--no-owner", f"--file={part}", f"--dbname={self._conninfo}"]
        if self.schema:
            argv.append(f"--schema={self.schema}")
        try:
            res = subprocess.run(argv, capture_output=True, text=True, timeout=3600)
        except (OSError, subprocess.TimeoutExpired) as exc:
            part.unlink(missing_ok=True)
            raise StorageError(f"pg_dump failed: {exc}") from None
        if res.returncode != 0:
            part.unlink(missing_ok=True)
            message = (res.stderr.strip().splitlines() or ["no message"])[-1].replace(self._conninfo, self.url)
            raise StorageError(f"pg_dump failed: {message}")
        os.replace(part, dest)
        return "postgresql custom dump (pg_dump; restore with pg_restore)"

    def close(self) -> None:
        self._pool.close()


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
