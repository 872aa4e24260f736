"""The PostgreSQL schema as forward-only migrations, recorded in ``schema_migrations``.

Each entry is ``(version, name, sql)``; a migration runs once, in one transaction with its record,
under an advisory lock so that replicas starting together do not race. Never edit an applied entry:
add the next one. The tables mirror the SQLite adapter's (same columns, same meaning); ids come from
identity columns (``RETURNING``), timestamps are the same ISO 8601 UTC text, due times are Unix
seconds in ``double precision``.
"""

from __future__ import annotations

MIGRATION_1 = """
CREATE TABLE stores (
    store_id   TEXT PRIMARY KEY,
    tz         TEXT NOT NULL,
    created_at TEXT NOT NULL
);
CREATE TABLE enrollment_tokens (
    token_hash BYTEA PRIMARY KEY,
    store_id   TEXT NOT NULL REFERENCES stores(store_id),
    created_at TEXT NOT NULL,
    expires_at TEXT NOT NULL,
    used_at    TEXT
);
CREATE TABLE writers (
    store_id      TEXT NOT NULL REFERENCES stores(store_id),
    epoch         INTEGER NOT NULL,
    key_id        TEXT NOT NULL CONSTRAINT writers_key_id_key UNIQUE,
    public_key    TEXT NOT NULL,
    enrolled_at   TEXT NOT NULL,
    superseded_at TEXT,
    hostname      TEXT NOT NULL DEFAULT '',
    PRIMARY KEY (store_id, epoch)
);
CREATE TABLE streams (
    store_id      TEXT NOT NULL,
    epoch         INTEGER NOT NULL,
    acked_through BIGINT NOT NULL DEFAULT 0,
    head_chain    BYTEA NOT NULL,
    last_seen_at  TEXT,
    duplicates    BIGINT NOT NULL DEFAULT 0,
    clock         TEXT,
    PRIMARY KEY (store_id, epoch),
    FOREIGN KEY (store_id, epoch) REFERENCES writers(store_id, epoch)
);
CREATE TABLE ledger (
    store_id    TEXT NOT NULL,
    epoch       INTEGER NOT NULL,
    seq         BIGINT NOT NULL,
    body        TEXT NOT NULL,
    body_hash   BYTEA NOT NULL,
    chain       BYTEA NOT NULL,
    sig         BYTEA NOT NULL,
    received_at TEXT NOT NULL,
    PRIMARY KEY (store_id, epoch, seq)
);
CREATE FUNCTION ledger_is_immutable() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'ledger is immutable';
END $$;
CREATE TRIGGER ledger_no_update BEFORE UPDATE OR DELETE ON ledger
    FOR EACH ROW EXECUTE FUNCTION ledger_is_immutable();
CREATE TRIGGER ledger_no_truncate BEFORE TRUNCATE ON ledger
    FOR EACH STATEMENT EXECUTE FUNCTION ledger_is_immutable();
CREATE TABLE conflicts (
    id            BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    store_id      TEXT NOT NULL,
    epoch         INTEGER NOT NULL,
    seq           BIGINT NOT NULL,
    stored_hash   BYTEA NOT NULL,
    received_hash BYTEA NOT NULL,
    detected_at   TEXT NOT NULL
);
CREATE INDEX conflicts_stream ON conflicts(store_id, epoch);
CREATE TABLE refusals (
    id       BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    store_id TEXT NOT NULL,
    epoch    INTEGER NOT NULL,
    seq      BIGINT NOT NULL,
    reason   TEXT NOT NULL,
    at       TEXT NOT NULL
);
CREATE INDEX refusals_stream ON refusals(store_id, epoch);
"""

MIGRATION_2 = """
CREATE TABLE events (
    pk         BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    source     TEXT NOT NULL,
    id         TEXT NOT NULL,
    store_id   TEXT NOT NULL,
    epoch      INTEGER NOT NULL,
    seq        BIGINT NOT NULL,
    type       TEXT NOT NULL,
    event_json TEXT NOT NULL,
    created_at TEXT NOT NULL,
    UNIQUE (source, id)
);
CREATE TABLE deliveries (
    id              BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    event_pk        BIGINT NOT NULL REFERENCES events(pk),
    event_id        TEXT NOT NULL,
    sink            TEXT NOT NULL,
    store_id        TEXT NOT NULL,
    epoch           INTEGER NOT NULL,
    seq             BIGINT NOT NULL,
    lane            TEXT NOT NULL,
    state           TEXT NOT NULL CHECK (state IN ('pending', 'in_flight', 'done', 'dead', 'skipped')),
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at DOUBLE PRECISION NOT NULL,
    claim           TEXT,
    last_error      TEXT,
    created_at      TEXT NOT NULL,
    updated_at      TEXT NOT NULL,
    UNIQUE (sink, event_id)
);
CREATE INDEX deliveries_open ON deliveries(sink, lane, id) WHERE state IN ('pending', 'in_flight', 'dead');
CREATE INDEX deliveries_due ON deliveries(sink, next_attempt_at) WHERE state IN ('pending', 'in_flight');
CREATE INDEX deliveries_claim ON deliveries(claim) WHERE claim IS NOT NULL;
CREATE TABLE register_times (
    store_id        TEXT NOT NULL,
    register_id     TEXT NOT NULL,
    occurred_at_utc TEXT NOT NULL,
    PRIMARY KEY (store_id, register_id)
);
CREATE TABLE forward_cursors (
    store_id        TEXT NOT NULL,
    epoch           INTEGER NOT NULL,
    derived_through BIGINT NOT NULL,
    PRIMARY KEY (store_id, epoch)
);
CREATE TABLE derive_errors (
    id       BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    store_id TEXT NOT NULL,
    epoch    INTEGER NOT NULL,
    seq      BIGINT NOT NULL,
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
    seq         BIGINT NOT NULL,
    event_id    TEXT,
    adjustments TEXT NOT NULL,
    PRIMARY KEY (store_id, register_id, txn_id)
);
CREATE TABLE time_fallbacks (
    id          BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    store_id    TEXT NOT NULL,
    epoch       INTEGER NOT NULL,
    seq         BIGINT NOT NULL,
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
