"""SQLite side of the event recorder: events, deliveries and lanes, register times (migration 2), as a
mixin of the adapter's unit of work.

Delivery rows are never deleted: ``done`` rows are the audit trail and can be replayed. Two partial
indexes keep the hot queries on open rows only, so finished work does not slow claiming down:
``deliveries_open`` (sink, lane, id) for strict lanes and ``deliveries_due`` (sink, next_attempt_at).
Event primary keys are assigned by the adapter inside the write transaction (SQLite has one writer);
a PostgreSQL adapter would use a sequence and ``INSERT ... RETURNING``.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import apsw

from .._exceptions import StorageError
from .recorders import EventRecorder
from .records import Delivery, DeliverySelector, DeliveryUpdate, NewDelivery, NewEvent, SinkCounts

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

_COLS = (
    "d.id, d.event_id, d.sink, d.store_id, d.epoch, d.seq, d.lane, d.state, d.attempts, d.next_attempt_at,"
    " d.last_error, d.created_at, d.updated_at"
)


def _where(sel: DeliverySelector) -> tuple[str, list[Any]]:
    terms: list[str] = []
    args: list[Any] = []
    for column, value in (("sink", sel.sink), ("event_id", sel.event_id), ("store_id", sel.store_id)):
        if value is not None:
            terms.append(f"d.{column} = ?")
            args.append(value)
    if sel.state is not None:
        terms.append("d.state = ?")
        args.append(sel.state)
    if sel.from_seq is not None:
        terms.append("d.seq >= ?")
        args.append(sel.from_seq)
    if sel.to_seq is not None:
        terms.append("d.seq <= ?")
        args.append(sel.to_seq)
    return (" AND ".join(terms) or "1"), args


class SQLiteEvents(EventRecorder):
    """:class:`~cloud_hub.storage.EventRecorder` on SQLite; mixed into the adapter's unit of work
    (``self._c`` is the connection)."""

    _c: apsw.Connection

    def register_times(self, store_id: str, register_ids: Sequence[str]) -> dict[str, str]:
        ids = sorted(set(register_ids))
        if not ids:
            return {}
        marks = ",".join("?" * len(ids))
        rows = self._c.execute(
            f"SELECT register_id, occurred_at_utc FROM register_times WHERE store_id = ? AND register_id IN ({marks})",
            (store_id, *ids),
        )
        return {r: t for r, t in rows}

    def set_register_times(self, store_id: str, times: dict[str, str]) -> None:
        self._c.executemany(
            "INSERT INTO register_times VALUES (?, ?, ?)"
            " ON CONFLICT (store_id, register_id) DO UPDATE SET occurred_at_utc = excluded.occurred_at_utc",
            [(store_id, reg, at) for reg, at in times.items()],
        )

    def forward_cursor(self, store_id: str, epoch: int) -> int:
        row = self._c.execute(
            "SELECT derived_through FROM forward_cursors WHERE store_id = ? AND epoch = ?", (store_id, epoch)
        ).fetchone()
        return int(row[0]) if row else 0

    def set_forward_cursor(self, store_id: str, epoch: int, seq: int) -> None:
        self._c.execute(
            "INSERT INTO forward_cursors VALUES (?, ?, ?)"
            " ON CONFLICT (store_id, epoch) DO UPDATE SET derived_through = excluded.derived_through",
            (store_id, epoch, seq),
        )

    def forward_lag(self) -> list[tuple[str, int, int, int]]:
        rows = self._c.execute(
            "SELECT s.store_id, s.epoch, COALESCE(f.derived_through, 0), s.acked_through FROM streams s"
            " LEFT JOIN forward_cursors f ON f.store_id = s.store_id AND f.epoch = s.epoch"
            " WHERE s.acked_through > COALESCE(f.derived_through, 0) ORDER BY s.store_id, s.epoch"
        )
        return [(a, int(b), int(c), int(d)) for a, b, c, d in rows]

    def insert_events(self, events: Sequence[NewEvent], deliveries: Sequence[NewDelivery]) -> None:
        if not events:
            return
        top: Any = self._c.execute("SELECT COALESCE(MAX(pk), 0) FROM events").fetchone()
        base = int(top[0]) + 1
        try:
            self._c.executemany(
                "INSERT INTO events VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [
                    (base + i, e.source, e.id, e.store_id, e.epoch, e.seq, e.type, e.event_json, e.created_at)
                    for i, e in enumerate(events)
                ],
            )
            self._c.executemany(
                "INSERT INTO deliveries (event_pk, event_id, sink, store_id, epoch, seq, lane, state,"
                " next_attempt_at, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, 'pending', ?, ?, ?)",
                [
                    (
                        base + d.event_index,
                        (e := events[d.event_index]).id,
                        d.sink,
                        e.store_id,
                        e.epoch,
                        e.seq,
                        d.lane,
                        d.next_attempt_at,
                        e.created_at,
                        e.created_at,
                    )
                    for d in deliveries
                ],
            )
        except apsw.ConstraintError as exc:
            raise StorageError(f"event insert refused: {exc}") from None

    def _strict_candidates(self, sink: str, now: float, limit: int) -> list[int]:
        heads = self._c.execute(
            "SELECT d.lane, MIN(d.id) FROM deliveries d"
            " WHERE d.sink = ? AND d.state IN ('pending', 'in_flight', 'dead') GROUP BY d.lane ORDER BY 2",
            (sink,),
        ).fetchall()
        ids: list[int] = []
        for lane, head in heads:
            if len(ids) >= limit:
                break
            found: Any = self._c.execute(
                "SELECT state, next_attempt_at FROM deliveries WHERE id = ?", (head,)
            ).fetchone()
            state, due = found
            if state == "dead" or due > now:
                continue  # parked behind a dead letter, backing off, or leased to a live worker
            rows = self._c.execute(
                "SELECT d.id, d.state, d.next_attempt_at FROM deliveries d WHERE d.sink = ? AND d.lane = ?"
                " AND d.state IN ('pending', 'in_flight', 'dead') ORDER BY d.id LIMIT ?",
                (sink, lane, limit - len(ids)),
            )
            for rid, rstate, rdue in rows:
                if rstate == "dead" or rdue > now:  # dead, leased to a live worker, or not due yet
                    break
                ids.append(rid)
        return ids

    def claim_deliveries(
        self, sink: str, *, strict: bool, now: float, lease_until: float, claim: str, limit: int
    ) -> list[Delivery]:
        if strict:
            ids = self._strict_candidates(sink, now, limit)
            if not ids:
                return []
            self._c.executemany(
                "UPDATE deliveries SET state = 'in_flight', claim = ?, next_attempt_at = ? WHERE id = ?",
                [(claim, lease_until, i) for i in ids],
            )
        else:
            # One statement (PostgreSQL: the subquery takes FOR UPDATE SKIP LOCKED).
            self._c.execute(
                "UPDATE deliveries SET state = 'in_flight', claim = ?, next_attempt_at = ? WHERE id IN"
                " (SELECT d.id FROM deliveries d WHERE d.sink = ? AND d.state IN ('pending', 'in_flight')"
                " AND d.next_attempt_at <= ? ORDER BY d.next_attempt_at, d.id LIMIT ?)",
                (claim, lease_until, sink, now, limit),
            )
            if self._c.changes() == 0:
                return []
        rows = self._c.execute(
            f"SELECT {_COLS}, e.event_json, d.claim, e.type FROM deliveries d JOIN events e ON e.pk = d.event_pk"
            " WHERE d.sink = ? AND d.claim = ? AND d.state = 'in_flight' ORDER BY d.lane, d.id",
            (sink, claim),
        )
        return [Delivery(*r) for r in rows]

    def renew_claim(self, claim: str, lease_until: float) -> set[int]:
        rows: Any = self._c.execute(
            "UPDATE deliveries SET next_attempt_at = ? WHERE claim = ? AND state = 'in_flight' RETURNING id",
            (lease_until, claim),
        ).fetchall()
        return {int(r[0]) for r in rows}

    def finish_deliveries(self, claim: str, updates: Sequence[DeliveryUpdate], at: str) -> int:
        before = self._c.totalchanges()
        done = [u.id for u in updates if u.state == "done" and u.attempted]
        if done:  # the common case in one statement
            self._c.execute(
                "UPDATE deliveries SET state = 'done', attempts = attempts + 1, claim = NULL, updated_at = ?"
                " WHERE claim = ? AND state = 'in_flight' AND id IN (SELECT value FROM json_each(?))",
                (at, claim, json.dumps(done)),
            )
        self._c.executemany(
            "UPDATE deliveries SET state = ?, attempts = attempts + ?, next_attempt_at = ?,"
            " last_error = COALESCE(?, last_error), claim = NULL, updated_at = ?"
            " WHERE id = ? AND claim = ? AND state = 'in_flight'",
            [
                (u.state, int(u.attempted), u.next_attempt_at, u.last_error, at, u.id, claim)
                for u in updates
                if not (u.state == "done" and u.attempted)
            ],
        )
        return int(self._c.totalchanges() - before)

    def list_deliveries(self, selector: DeliverySelector, *, after_id: int = 0, limit: int = 100) -> list[Delivery]:
        where, args = _where(selector)
        rows = self._c.execute(
            f"SELECT {_COLS} FROM deliveries d WHERE {where} AND d.id > ? ORDER BY d.id LIMIT ?",
            (*args, after_id, limit),
        )
        return [Delivery(*r) for r in rows]

    def replay_deliveries(self, selector: DeliverySelector, now: float, at: str) -> int:
        where, args = _where(selector)
        self._c.execute(
            f"UPDATE deliveries AS d SET state = 'pending', attempts = 0, next_attempt_at = ?, claim = NULL,"
            f" updated_at = ? WHERE {where} AND d.state != 'in_flight'",
            (now, at, *args),
        )
        return int(self._c.changes())

    def skip_delivery(self, sink: str, event_id: str, at: str) -> bool:
        self._c.execute(
            "UPDATE deliveries SET state = 'skipped', claim = NULL, updated_at = ?"
            " WHERE sink = ? AND event_id = ? AND state IN ('dead', 'pending')",
            (at, sink, event_id),
        )
        return bool(self._c.changes() == 1)

    def sink_counts(self, *, include_done: bool = True) -> list[SinkCounts]:
        out: dict[str, dict[str, int]] = {}
        states = "" if include_done else " WHERE state IN ('pending', 'in_flight', 'dead')"
        for sink, state, n in self._c.execute(f"SELECT sink, state, COUNT(*) FROM deliveries{states} GROUP BY 1, 2"):
            out.setdefault(sink, {})[state] = n
        oldest: dict[str, str] = dict(
            self._c.execute(  # type: ignore[arg-type]
                "SELECT sink, MIN(created_at) FROM deliveries WHERE state IN ('pending', 'in_flight') GROUP BY sink"
            ).fetchall()
        )
        return [SinkCounts(s, c, oldest.get(s)) for s, c in sorted(out.items())]

    def open_by_store(self) -> dict[str, int]:
        rows = self._c.execute(
            "SELECT store_id, COUNT(*) FROM deliveries WHERE state IN ('pending', 'in_flight') GROUP BY store_id"
        )
        return {s: n for s, n in rows}
