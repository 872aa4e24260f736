"""The storage of the hub, independent of the database engine.

Ingest, registry, forwarding and admin talk to a :class:`Storage` only through a unit of work, which
implements the small recorder interfaces of :mod:`cloud_hub.storage.recorders`
(:class:`RegistryRecorder`, :class:`LedgerRecorder`, :class:`EventRecorder`)::

    with storage.transaction() as tx:      # one write transaction (SQLite: BEGIN IMMEDIATE;
        stream = tx.get_stream(s, e)       #   PostgreSQL: SELECT ... FOR UPDATE on the stream row)
        ...
                                           # commit on normal exit, rollback on exception
    with storage.snapshot() as tx:         # read-only, consistent view
        tx.store_summaries()

:func:`open_storage` picks the adapter from a storage URL: ``sqlite:///relative/hub.db``,
``sqlite:////absolute/hub.db`` (as SQLAlchemy spells them: the path is everything after
``sqlite:///``), ``sqlite://`` or ``sqlite:///:memory:`` for a private in-memory database. A plain
path without a scheme is a SQLite file. ``postgresql://user@host:port/db?schema=NAME`` is PostgreSQL.
Adapters, one module per engine: :mod:`cloud_hub.storage.sqlite` (embedded default) and
:mod:`cloud_hub.storage.postgres`; the recorders' SQL, written once for both, is :mod:`cloud_hub.storage.sql`.
Every adapter passes the recorder contract suites in ``tests/hub/``.
"""

from __future__ import annotations

from pathlib import Path

from .._exceptions import InputError
from .recorders import BookRecorder, EventRecorder, LedgerRecorder, RegistryRecorder, Storage, UnitOfWork
from .records import (
    DELIVERY_STATES,
    Conflict,
    Delivery,
    DeliverySelector,
    DeliveryUpdate,
    DeriveError,
    EnrollmentToken,
    LedgerRow,
    NewDelivery,
    NewEvent,
    Refusal,
    SinkCounts,
    StockMove,
    Store,
    StoreSummary,
    Stream,
    TimeFallback,
    Writer,
    iso_utc,
)

SQLITE_PREFIX = "sqlite://"
POSTGRES_SCHEMES = ("postgresql", "postgres")


def sqlite_url(path: str | Path) -> str:
    """The storage URL of a SQLite file (relative paths stay relative to the working folder)."""
    return f"{SQLITE_PREFIX}/{path}"


def sqlite_path(url: str) -> str:
    """The file path (or ``:memory:``) of a ``sqlite://`` URL.

    Raises:
        InputError: the URL names a host (``sqlite://host/...``) or has query parameters.
    """
    rest = url[len(SQLITE_PREFIX) :]
    if rest in ("", "/:memory:", ":memory:"):
        return ":memory:"
    if not rest.startswith("/") or "?" in rest:
        raise InputError(
            f"storage URL {url!r} is not sqlite:///PATH (three slashes, then the file path)", field="database"
        )
    return rest[1:]


def open_storage(url_or_path: str | Path, *, busy_timeout_ms: int = 5_000) -> Storage:
    """Open the adapter a storage URL names; a plain path (or ``:memory:``) is a SQLite file.

    Raises:
        InputError: the URL's scheme is not a supported engine, or the URL is malformed.
        StorageError: the database cannot be opened or migrated.
    """
    url = str(url_or_path)
    scheme = url.split("://", 1)[0].lower() if "://" in url else ""
    if scheme in ("", "sqlite"):
        from .sqlite import SQLiteStorage

        return SQLiteStorage(sqlite_path(url) if scheme else url, busy_timeout_ms=busy_timeout_ms)
    if scheme in POSTGRES_SCHEMES:
        try:
            from .postgres import PostgresStorage
        except ImportError:  # pragma: no cover - the postgres extra is not installed
            raise InputError(
                "PostgreSQL storage needs the postgres extra: pip install 'storesync[postgres]'", field="database"
            ) from None
        return PostgresStorage(url, busy_timeout_ms=busy_timeout_ms)
    raise InputError(
        f"storage URL scheme {scheme!r} is not supported (use sqlite:///PATH or postgresql://...)", field="database"
    )


__all__ = [
    "DELIVERY_STATES",
    "BookRecorder",
    "DeriveError",
    "StockMove",
    "TimeFallback",
    "Conflict",
    "Delivery",
    "DeliverySelector",
    "DeliveryUpdate",
    "EnrollmentToken",
    "EventRecorder",
    "LedgerRecorder",
    "LedgerRow",
    "NewDelivery",
    "NewEvent",
    "Refusal",
    "RegistryRecorder",
    "SinkCounts",
    "Storage",
    "Store",
    "StoreSummary",
    "Stream",
    "UnitOfWork",
    "Writer",
    "iso_utc",
    "open_storage",
    "sqlite_path",
    "sqlite_url",
]
