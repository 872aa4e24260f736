"""The SQLite schema as forward-only migrations, recorded in ``schema_migrations``.

Each entry is ``(version, name, sql)``; a migration runs once, in the ``BEGIN IMMEDIATE`` transaction
that records it. Never edit an applied entry: add the next one. The tables mirror the PostgreSQL
adapter's (:mod:`.postgres_schema`: same columns, same meaning). The ledger is append-only: triggers
refuse UPDATE and DELETE. Event primary keys are assigned by the adapter inside the write transaction
(SQLite has one writer); ``INTEGER PRIMARY KEY`` ids of the other tables continue after the highest.
"""

from __future__ import annotations

MIGRATION_1 = """
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
"""

MIGRATION_2 = """
CREATE TABLE events (
    pk         INTEGER PRIMARY KEY,
    source     TEXT NOT NULL,
    id         TEXT NOT NULL,
    store_id   TEXT NOT NULL,
    epoch      INTEGER NOT NULL,
    seq        INTEGER NOT NULL,
    type       TEXT NOT NULL,
    event_json TEXT NOT NULL,
    created_at TEXT NOT NULL,
    UNIQUE (source, id)
);
CREATE TABLE deliveries (
    id              INTEGER PRIMARY KEY,
    event_pk        INTEGER NOT NULL REFERENCES events(pk),
    event_id        TEXT NOT NULL,
    sink            TEXT NOT NULL,
    store_id        TEXT NOT NULL,
    epoch           INTEGER NOT NULL,
    seq             INTEGER NOT NULL,
    lane            TEXT NOT NULL,
    state           TEXT NOT NULL CHECK (state IN ('pending', 'in_flight', 'done', 'dead', 'skipped')),
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at REAL NOT NULL,
    claim           TEXT,
    last_error      TEXT,
    created_at      TEXT NOT NULL,
    updated_at      TEXT NOT NULL,
    UNIQUE (sink, event_id)
);
CREATE INDEX deliveries_open ON deliveries(sink, lane, id) WHERE state IN ('pending', 'in_flight', 'dead');
CREATE INDEX deliveries_due ON deliveries(sink, next_attempt_at) WHERE state IN ('pending', 'in_flight');
CREATE TABLE register_times (
    store_id        TEXT NOT NULL,
    register_id     TEXT NOT NULL,
    occurred_at_utc TEXT NOT NULL,
    PRIMARY KEY (store_id, register_id)
) WITHOUT ROWID;
CREATE TABLE forward_cursors (
    store_id        TEXT NOT NULL,
    epoch           INTEGER NOT NULL,
    derived_through INTEGER NOT NULL,
    PRIMARY KEY (store_id, epoch)
);
-- Records stored before forwarding existed are history, not news: start after them.
INSERT INTO forward_cursors SELECT store_id, epoch, acked_through FROM streams;
CREATE TABLE derive_errors (
    id       INTEGER PRIMARY KEY,
    store_id TEXT NOT NULL,
    epoch    INTEGER NOT NULL,
    seq      INTEGER NOT NULL,
    reason   TEXT NOT NULL,
    at       TEXT NOT NULL
);
"""

MIGRATION_3 = """
ALTER TABLE derive_errors ADD COLUMN resolved_at TEXT;
CREATE INDEX derive_errors_store ON derive_errors(store_id);
ALTER TABLE streams ADD COLUMN backlog TEXT;
CREATE TABLE stock_moves (
    store_id    TEXT NOT NULL,
    register_id TEXT NOT NULL,
    txn_id      TEXT NOT NULL,
    epoch       INTEGER NOT NULL,
    seq         INTEGER NOT NULL,
    event_id    TEXT,
    adjustments TEXT NOT NULL,
    PRIMARY KEY (store_id, register_id, txn_id)
) WITHOUT ROWID;
CREATE TABLE time_fallbacks (
    id          INTEGER PRIMARY KEY,
    store_id    TEXT NOT NULL,
    epoch       INTEGER NOT NULL,
    seq         INTEGER NOT NULL,
    register_id TEXT NOT NULL,
    txn_id      TEXT NOT NULL,
    pos_time    TEXT NOT NULL,
    used_time   TEXT NOT NULL,
    method      TEXT NOT NULL,
    reason      TEXT NOT NULL,
    at          TEXT NOT NULL
);
CREATE INDEX time_fallbacks_store ON time_fallbacks(store_id, id);
"""

MIGRATIONS: list[tuple[int, str, str]] = [
    (1, "initial schema", MIGRATION_1),
    (2, "events and deliveries", MIGRATION_2),
    (3, "stock moves, time fallbacks, derive-error resolution, agent backlog", MIGRATION_3),
]
