"""The schema of the agent's SQLite file and its one migration runner.

Tables: ``meta`` (the store identity), ``writers`` (one row per writer epoch: its key, chain anchor
and head), ``outbox`` (the records), ``sync_state`` (one row), ``bursts`` (a log for the TUI) and
``imports`` (one row per drop file, see :mod:`edge_agent.store.imports`). ``schema_migrations``
records which of :data:`MIGRATIONS` were applied; :func:`migrate` applies the missing ones, each in
its own ``BEGIN IMMEDIATE`` transaction, so two processes opening a new file at once are safe.
"""

from __future__ import annotations

from sync_protocol.clock import now_iso

from ._db import Db

INITIAL_SQL = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE writers (
    epoch INTEGER PRIMARY KEY,
    store_id TEXT NOT NULL,
    key_id TEXT NOT NULL,
    public_key TEXT NOT NULL,
    enrolled_at TEXT NOT NULL,
    anchor_seq INTEGER NOT NULL DEFAULT 0,
    anchor_chain BLOB NOT NULL,
    head_seq INTEGER NOT NULL DEFAULT 0,
    head_chain BLOB NOT NULL
);
CREATE TABLE outbox (
    epoch INTEGER NOT NULL,
    seq INTEGER NOT NULL,
    register_id TEXT NOT NULL,
    txn_id TEXT NOT NULL,
    kind TEXT NOT NULL,
    captured_at TEXT NOT NULL,
    origin TEXT NOT NULL,
    body TEXT NOT NULL,
    txn_hash TEXT NOT NULL,
    chain BLOB NOT NULL,
    sig BLOB NOT NULL,
    PRIMARY KEY (epoch, seq),
    UNIQUE (register_id, txn_id)
);
CREATE TABLE sync_state (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    acked_through INTEGER NOT NULL DEFAULT 0,
    receipt TEXT,
    last_sync_at TEXT,
    last_sync_result TEXT NOT NULL DEFAULT 'never',
    last_success_at TEXT,
    last_error TEXT,
    blocked TEXT,
    clock TEXT,
    heartbeat_at TEXT,
    next_attempt_at TEXT,
    failures INTEGER NOT NULL DEFAULT 0,
    burst_size INTEGER
);
INSERT INTO sync_state (id) VALUES (1);
CREATE TABLE bursts (
    id INTEGER PRIMARY KEY,
    at TEXT NOT NULL,
    epoch INTEGER,
    first_seq INTEGER,
    last_seq INTEGER,
    count INTEGER NOT NULL,
    result TEXT NOT NULL,
    http_status INTEGER,
    ms REAL
);
"""

IMPORTS_SQL = """
CREATE TABLE imports (
    id INTEGER PRIMARY KEY,
    sha256 TEXT NOT NULL,
    name TEXT NOT NULL,
    path TEXT NOT NULL,
    folder TEXT NOT NULL,
    dest_name TEXT NOT NULL,
    format TEXT,
    status TEXT NOT NULL,
    result TEXT,
    reason TEXT,
    rows INTEGER NOT NULL DEFAULT 0,
    transactions INTEGER NOT NULL DEFAULT 0,
    accepted INTEGER NOT NULL DEFAULT 0,
    duplicates INTEGER NOT NULL DEFAULT 0,
    rejected INTEGER NOT NULL DEFAULT 0,
    size INTEGER NOT NULL DEFAULT 0,
    checkpoint_offset INTEGER NOT NULL DEFAULT 0,
    checkpoint_line INTEGER NOT NULL DEFAULT 0,
    errors_size INTEGER NOT NULL DEFAULT 0,
    retry_allowed INTEGER NOT NULL DEFAULT 0,
    started_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    finished_at TEXT
);
CREATE INDEX imports_sha ON imports (sha256);
CREATE INDEX imports_status ON imports (status);
"""

MIGRATIONS: list[tuple[int, str, str]] = [
    (1, "initial", INITIAL_SQL),
    (2, "imports", IMPORTS_SQL),  # drop-file imports
]
LATEST_SCHEMA = MIGRATIONS[-1][0]
"""The schema version this agent writes (``GET /readyz`` compares the file's against it)."""


def migrate(db: Db) -> None:
    """Apply the migrations the file does not have yet (SQLite errors propagate as ``apsw.Error``)."""
    db.conn.execute(
        "CREATE TABLE IF NOT EXISTS schema_migrations "
        "(version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at TEXT NOT NULL)"
    )
    done = {row[0] for row in db.conn.execute("SELECT version FROM schema_migrations")}
    for version, name, sql in MIGRATIONS:
        if version in done:
            continue
        with db.transaction() as conn:
            if conn.execute("SELECT 1 FROM schema_migrations WHERE version = ?", (version,)).fetchone():
                continue  # another process applied it meanwhile
            conn.execute(sql)
            conn.execute(
                "INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)",
                (version, name, now_iso()),
            )
