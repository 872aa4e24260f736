"""The ``imports`` table: one row per drop file the agent took up, and the chunk store.

The table (schema in :mod:`edge_agent.store.schema`, migration 2), newest row last::

    id INTEGER PRIMARY KEY        -- the import
    sha256 TEXT                   -- of the file's bytes
    name TEXT                     -- file name as dropped
    path TEXT                     -- where the file is read from while running (it stays in place)
    folder TEXT                   -- the drop folder whose processed/ and rejected/ it ends in
    dest_name TEXT                -- name in processed/ or rejected/ (unique there)
    format TEXT                   -- jsonl | csv_canonical | shopify_csv (NULL when rejected whole)
    status TEXT                   -- running | done | rejected | duplicate_file
    result TEXT                   -- ok | partial | rejected | duplicate_file (the result.json status)
    reason TEXT                   -- why a file was rejected whole, or which import it duplicates
    rows, transactions, accepted, duplicates, rejected INTEGER   -- counts so far
    size INTEGER                  -- file size in bytes
    checkpoint_offset, checkpoint_line INTEGER   -- resume point after the last committed chunk
    errors_size INTEGER           -- bytes of rejected/<file>.errors.jsonl.part at that commit
    retry_allowed INTEGER         -- 1 after POST /v1/imports/{sha}/retry: the same bytes may come again
    started_at, updated_at, finished_at TEXT

A file whose bytes were imported before gets a ``duplicate_file`` row naming the earlier import in
``reason``; only an explicit retry (``retry_allowed``) lets the same bytes be imported again, as a new
row. Progress of a running import is ``checkpoint_offset / size``.

:func:`store_chunk` stores prepared transactions through :func:`edge_agent.store.records.append` (the
same seq/chain/signature code as live capture) and updates the import's counters and checkpoint in
the same ``BEGIN IMMEDIATE`` transaction, so after ``kill -9`` the import resumes exactly after the
last committed chunk.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from .._exceptions import ConfigError
from ._db import Db
from .records import Prepared, Signer, Stored, append

COLUMNS = (
    "id", "sha256", "name", "path", "folder", "dest_name", "format", "status", "result", "reason", "rows",
    "transactions", "accepted", "duplicates", "rejected", "size", "checkpoint_offset", "checkpoint_line", "errors_size",
    "retry_allowed", "started_at", "updated_at", "finished_at",
)  # fmt: skip
COUNTERS = ("rows", "transactions", "accepted", "duplicates", "rejected")
RUNNING, DONE, REJECTED, DUPLICATE = "running", "done", "rejected", "duplicate_file"
_SELECT = f"SELECT {', '.join(COLUMNS)} FROM imports"


def _row(values: Sequence[Any] | None) -> dict[str, Any] | None:
    return dict(zip(COLUMNS, values, strict=True)) if values is not None else None


def _rows(db: Db, where: str, args: Sequence[Any]) -> list[dict[str, Any]]:
    return [r for r in map(_row, db.query(f"{_SELECT} {where}", args)) if r is not None]


def get(db: Db, import_id: int) -> dict[str, Any] | None:
    """One import row as a dict."""
    rows = _rows(db, "WHERE id = ?", (import_id,))
    return rows[0] if rows else None


def by_sha(db: Db, sha256: str) -> dict[str, Any] | None:
    """The import of these bytes (not a duplicate-drop row), if any."""
    rows = _rows(db, "WHERE sha256 = ? AND status != ? ORDER BY id DESC LIMIT 1", (sha256, DUPLICATE))
    return rows[0] if rows else None


def running(db: Db) -> list[dict[str, Any]]:
    """Imports a crash or a stop left running, oldest first."""
    return _rows(db, "WHERE status = ? ORDER BY id", (RUNNING,))


def recent(db: Db, limit: int = 50) -> list[dict[str, Any]]:
    """The newest imports first."""
    return _rows(db, "ORDER BY id DESC LIMIT ?", (limit,))


def of_sha(db: Db, sha256: str, limit: int = 1000) -> list[dict[str, Any]]:
    """Every row (also duplicate drops) of these bytes among the newest ``limit`` imports, newest first."""
    return [r for r in recent(db, limit) if r["sha256"] == sha256]


def every(db: Db) -> list[dict[str, Any]]:
    """All import rows, oldest first."""
    return _rows(db, "ORDER BY id", ())


def insert(db: Db, now: str, **values: Any) -> int:
    """Add an import row; returns its id. Earlier rows of the same bytes lose ``retry_allowed``."""
    values.setdefault("started_at", now)
    values["updated_at"] = now
    names = list(values)
    with db.transaction() as conn:
        conn.execute("UPDATE imports SET retry_allowed = 0 WHERE sha256 = ? AND retry_allowed = 1", (values["sha256"],))
        conn.execute(
            f"INSERT INTO imports ({', '.join(names)}) VALUES ({', '.join('?' for _ in names)})",
            [values[n] for n in names],
        )
        return int(conn.last_insert_rowid())


def update(db: Db, import_id: int, now: str, **values: Any) -> None:
    """Set columns of an import row (and ``updated_at``)."""
    values["updated_at"] = now
    with db.transaction() as conn:
        _set(conn, import_id, values)


def _set(conn: Any, import_id: int, values: dict[str, Any]) -> None:
    bad = set(values) - set(COLUMNS)
    if bad:
        raise ValueError(f"unknown imports columns: {sorted(bad)}")
    conn.execute(
        f"UPDATE imports SET {', '.join(f'{k} = ?' for k in values)} WHERE id = ?", [*values.values(), import_id]
    )


def store_chunk(
    db: Db,
    items: Sequence[Prepared],
    *,
    import_id: int,
    origin: str,
    now: str,
    bookkeeping: Callable[[list[Stored]], dict[str, Any]],
    batch: dict[str, Any] | None = None,
    signer: Signer | None = None,
) -> list[Stored]:
    """Store a chunk's transactions and move the import's checkpoint, in ONE SQLite transaction.

    Already stored keys are duplicates (same content) or conflicts (other content: nothing stored,
    the caller rejects the item). ``bookkeeping`` runs inside the transaction with the outcomes and
    returns the import-row columns to set (counts, checkpoint, errors size), so the records and the
    checkpoint are committed together or not at all. Every record of the chunk is captured at ``now`` and
    carries ``batch``, the file's own timeline. ``signer`` signs the chain values (see
    :func:`edge_agent.store.records.append`; by the signing key in this thread when None).

    Raises:
        NotEnrolled: before enrollment, or when the agent was enrolled again with another key.
        StorageError: when SQLite fails; nothing of the chunk is stored.
    """
    key = db.signing_key
    if key is None:
        raise ConfigError("outbox opened without the signing key; import is not possible")
    with db.transaction() as conn:
        out = append(conn, key, items, origin, captured_at=now, batch=batch, signer=signer)
        _set(conn, import_id, {**bookkeeping(out), "updated_at": now})
    return out


def status_block(db: Db) -> dict[str, Any]:
    """The ``imports`` part of the agent status: the running import's progress and the last finished one."""
    cols = ("id", "name", "format", "status", "result", "reason", *COUNTERS, "size", "checkpoint_offset",
            "started_at", "updated_at", "finished_at")  # fmt: skip
    sel = f"SELECT {', '.join(cols)} FROM imports"
    run = db.query(f"{sel} WHERE status = ? ORDER BY id LIMIT 1", (RUNNING,))
    last = db.query(f"{sel} WHERE status != ? ORDER BY id DESC LIMIT 1", (RUNNING,))
    out: dict[str, Any] = {"running": None, "last": None}
    if run:
        r = dict(zip(cols, run[0], strict=True))
        r["progress"] = round(r["checkpoint_offset"] / r["size"], 4) if r["size"] else None
        out["running"] = r
    if last:
        out["last"] = dict(zip(cols, last[0], strict=True))
    return out
