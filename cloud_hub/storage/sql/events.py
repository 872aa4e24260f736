"""The event recorder's SQL, once for every engine: events, deliveries and lanes, derivation cursors,
register times, sink statistics.

Delivery rows are never deleted: ``done`` rows are the audit trail and can be replayed. Two partial
indexes keep the hot queries on open rows only, so finished work does not slow claiming down:
``deliveries_open`` (sink, lane, id) for strict lanes and ``deliveries_due`` (sink, next_attempt_at).

Concurrency on an engine with row locks (PostgreSQL) is the database's, not luck's:

- the derivation cursor of a stream is read ``FOR UPDATE`` in a write transaction (the row is made
  when missing), so two replicas never derive the same records twice;
- a claim locks the due rows it takes with ``FOR UPDATE SKIP LOCKED``; rows another claimer is taking
  are skipped, never waited for;
- register times are upserted in sorted order, so two transactions lock them in the same order.

- a strict lane is claimed only by whoever locks its head row (re-checked after the lock: still open,
  due, not leased), so one lane has one holder at a time and is delivered in id (= seq) order.

SQLite's ``BEGIN IMMEDIATE`` serializes writers instead, and the same statements run without the locks.
One step differs by engine and is its hook, :meth:`SQLEvents._insert_event_rows`: SQLite numbers
events itself, PostgreSQL takes identity values with ``RETURNING``.
"""

from __future__ import annotations

import abc
from collections.abc import Sequence
from typing import Any

from ..recorders import EventRecorder
from ..records import Delivery, DeliverySelector, DeliveryUpdate, NewDelivery, NewEvent, SinkCounts
from . import SQLWork, where

DELIVERY_COLS = (
    "d.id, d.event_id, d.sink, d.store_id, d.epoch, d.seq, d.lane, d.state, d.attempts, d.next_attempt_at,"
    " d.last_error, d.created_at, d.updated_at"
)
OPEN = "('pending', 'in_flight', 'dead')"
"""Delivery states that still hold a lane (``dead`` parks a strict one)."""
DUE = "('pending', 'in_flight')"
"""Delivery states a claim may take once due (an ``in_flight`` one when its lease ran out)."""

INSERT_DELIVERY = (
    "INSERT INTO deliveries (event_pk, event_id, sink, store_id, epoch, seq, lane, state,"
    " next_attempt_at, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, 'pending', ?, ?, ?)"
)
SET_IN_FLIGHT = "UPDATE deliveries SET state = 'in_flight', claim = ?, next_attempt_at = ?"
FINISH = (
    "UPDATE deliveries SET state = ?, attempts = attempts + ?, next_attempt_at = ?,"
    " last_error = COALESCE(?, last_error), claim = NULL, updated_at = ?"
    " WHERE id = ? AND claim = ? AND state = 'in_flight'"
)
NOT_IN_FLIGHT = "d.state != 'in_flight'"
CURSOR = "SELECT derived_through FROM forward_cursors WHERE store_id = ? AND epoch = ?"


def _selected(sel: DeliverySelector) -> tuple[list[str], list[Any]]:
    """The conditions and arguments of a selector, on deliveries ``d``."""
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
    return terms, args


class SQLEvents(SQLWork, EventRecorder):
    """:class:`~cloud_hub.storage.EventRecorder` in SQL (the derive errors are in :mod:`.books`)."""

    @abc.abstractmethod
    def _insert_event_rows(self, events: Sequence[NewEvent]) -> list[int]:
        """Insert events (inside :meth:`SQLWork._refused`); their primary keys, in order."""

    def register_times(self, store_id: str, register_ids: Sequence[str]) -> dict[str, str]:
        ids = sorted(set(register_ids))
        if not ids:
            return {}
        rows = self._all(
            "SELECT register_id, occurred_at_utc FROM register_times"
            f" WHERE store_id = ? AND {self.dialect.any('register_id')}",
            (store_id, self.dialect.pack(ids)),
        )
        return {r: t for r, t in rows}

    def set_register_times(self, store_id: str, times: dict[str, str]) -> None:
        self._many(
            "INSERT INTO register_times VALUES (?, ?, ?)"
            " ON CONFLICT (store_id, register_id) DO UPDATE SET occurred_at_utc = excluded.occurred_at_utc",
            [(store_id, reg, times[reg]) for reg in sorted(times)],
        )

    def forward_cursor(self, store_id: str, epoch: int) -> int:
        lock = self._for_update
        row = self._one(CURSOR + lock, (store_id, epoch))
        if row is None and lock:  # make the row, so there is something to lock
            self._run(
                "INSERT INTO forward_cursors VALUES (?, ?, 0) ON CONFLICT (store_id, epoch) DO NOTHING",
                (store_id, epoch),
            )
            row = self._one(CURSOR + lock, (store_id, epoch))
        return int(row[0]) if row else 0

    def set_forward_cursor(self, store_id: str, epoch: int, seq: int) -> None:
        self._run(
            "INSERT INTO forward_cursors VALUES (?, ?, ?)"
            " ON CONFLICT (store_id, epoch) DO UPDATE SET derived_through = excluded.derived_through",
            (store_id, epoch, seq),
        )

    def forward_lag(self) -> list[tuple[str, int, int, int]]:
        rows = self._all(
            "SELECT s.store_id, s.epoch, COALESCE(f.derived_through, 0), s.acked_through FROM streams s"
            " LEFT JOIN forward_cursors f ON f.store_id = s.store_id AND f.epoch = s.epoch"
            " WHERE s.acked_through > COALESCE(f.derived_through, 0) ORDER BY s.store_id, s.epoch"
        )
        return [(a, int(b), int(c), int(d)) for a, b, c, d in rows]

    def insert_events(self, events: Sequence[NewEvent], deliveries: Sequence[NewDelivery]) -> None:
        if not events:
            return
        with self._refused("event insert"):
            pks = self._insert_event_rows(events)
            self._many(
                INSERT_DELIVERY,
                [
                    (
                        pks[d.event_index],
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

    def _strict_candidates(self, sink: str, now: float, limit: int) -> list[int]:
        """Ids a strict claim may take: a due prefix of each lane whose oldest open delivery is due.

        Whoever holds a lane's head row holds the lane: with row locks the head is taken
        ``FOR UPDATE SKIP LOCKED`` and re-checked on its newest version (still open, due, not leased), so
        one lane has one holder at a time and is delivered in id (= seq) order.
        """
        heads = self._all(
            f"SELECT lane, MIN(id) FROM deliveries WHERE sink = ? AND state IN {OPEN} GROUP BY lane ORDER BY 2",
            (sink,),
        )
        ids: list[int] = []
        for lane, head in heads:
            if len(ids) >= limit:
                break
            held = self._one(
                f"SELECT id FROM deliveries WHERE id = ? AND state IN {DUE} AND next_attempt_at <= ?"
                f"{self.dialect.skip_locked}",
                (head, now),
            )
            if held is None:
                continue  # parked behind a dead letter, backing off, leased, or being claimed right now
            rows = self._all(
                f"SELECT id, state, next_attempt_at FROM deliveries WHERE sink = ? AND lane = ?"
                f" AND state IN {OPEN} AND id >= ? ORDER BY id LIMIT ?{self._for_update}",
                (sink, lane, head, limit - len(ids)),
            )
            for rid, rstate, rdue in rows:
                if rstate == "dead" or rdue > now:  # dead, leased to a live worker, or not due yet
                    break
                ids.append(int(rid))
        return ids

    def claim_deliveries(
        self, sink: str, *, strict: bool, now: float, lease_until: float, claim: str, limit: int
    ) -> list[Delivery]:
        if strict:
            ids = self._strict_candidates(sink, now, limit)
            if not ids:
                return []
            self._run(f"{SET_IN_FLIGHT} WHERE {self.dialect.any('id')}", (claim, lease_until, self.dialect.pack(ids)))
        else:
            n = self._count(
                f"{SET_IN_FLIGHT} WHERE id IN (SELECT d.id FROM deliveries d WHERE d.sink = ? AND d.state IN {DUE}"
                f" AND d.next_attempt_at <= ? ORDER BY d.next_attempt_at, d.id LIMIT ?{self.dialect.skip_locked})",
                (claim, lease_until, sink, now, limit),
            )
            if n == 0:
                return []
        rows = self._all(
            f"SELECT {DELIVERY_COLS}, e.event_json, d.claim, e.type"
            " FROM deliveries d JOIN events e ON e.pk = d.event_pk"
            " WHERE d.claim = ? AND d.sink = ? AND d.state = 'in_flight' ORDER BY d.lane, d.id",
            (claim, sink),
        )
        return [Delivery(*r) for r in rows]

    def renew_claim(self, claim: str, lease_until: float) -> set[int]:
        rows = self._all(
            "UPDATE deliveries SET next_attempt_at = ? WHERE claim = ? AND state = 'in_flight' RETURNING id",
            (lease_until, claim),
        )
        return {int(r[0]) for r in rows}

    def finish_deliveries(self, claim: str, updates: Sequence[DeliveryUpdate], at: str) -> int:
        changed = 0
        done = [u.id for u in updates if u.state == "done" and u.attempted]
        if done:  # the common case in one statement
            changed += self._count(
                "UPDATE deliveries SET state = 'done', attempts = attempts + 1, claim = NULL, updated_at = ?"
                f" WHERE claim = ? AND state = 'in_flight' AND {self.dialect.any('id')}",
                (at, claim, self.dialect.pack(done)),
            )
        changed += self._many(
            FINISH,
            [
                (u.state, int(u.attempted), u.next_attempt_at, u.last_error, at, u.id, claim)
                for u in updates
                if not (u.state == "done" and u.attempted)
            ],
        )
        return changed

    def list_deliveries(self, selector: DeliverySelector, *, after_id: int = 0, limit: int = 100) -> list[Delivery]:
        terms, args = _selected(selector)
        rows = self._all(
            f"SELECT {DELIVERY_COLS} FROM deliveries d{where([*terms, 'd.id > ?'])} ORDER BY d.id LIMIT ?",
            (*args, after_id, limit),
        )
        return [Delivery(*r) for r in rows]

    def replay_deliveries(self, selector: DeliverySelector, now: float, at: str) -> int:
        terms, args = _selected(selector)
        return self._count(
            "UPDATE deliveries AS d SET state = 'pending', attempts = 0, next_attempt_at = ?, claim = NULL,"
            f" updated_at = ?{where([*terms, NOT_IN_FLIGHT])}",
            (now, at, *args),
        )

    def skip_delivery(self, sink: str, event_id: str, at: str) -> bool:
        n = self._count(
            "UPDATE deliveries SET state = 'skipped', claim = NULL, updated_at = ?"
            " WHERE sink = ? AND event_id = ? AND state IN ('dead', 'pending')",
            (at, sink, event_id),
        )
        return n == 1

    def sink_counts(self, *, include_done: bool = True) -> list[SinkCounts]:
        out: dict[str, dict[str, int]] = {}
        states = "" if include_done else f" WHERE state IN {OPEN}"
        for sink, state, n in self._all(f"SELECT sink, state, COUNT(*) FROM deliveries{states} GROUP BY 1, 2"):
            out.setdefault(sink, {})[state] = int(n)
        oldest: dict[str, str] = {
            s: t
            for s, t in self._all(f"SELECT sink, MIN(created_at) FROM deliveries WHERE state IN {DUE} GROUP BY sink")
        }
        return [SinkCounts(s, c, oldest.get(s)) for s, c in sorted(out.items())]

    def open_by_store(self) -> dict[str, int]:
        rows = self._all(f"SELECT store_id, COUNT(*) FROM deliveries WHERE state IN {DUE} GROUP BY store_id")
        return {s: int(n) for s, n in rows}
