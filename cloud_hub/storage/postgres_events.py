"""PostgreSQL side of the event recorder: events, deliveries and lanes, cursors, register times.

Concurrency is the database's, not luck's:

- event and delivery ids come from identity columns via ``INSERT ... RETURNING``;
- the derivation cursor of a stream is read ``FOR UPDATE`` in a write transaction (the row is made
  when missing), so two replicas never derive the same records twice;
- a claim locks the due rows it takes with ``FOR UPDATE SKIP LOCKED``; rows another claimer is
  taking are skipped, never waited for. A strict lane is claimed only by whoever locks its head row
  (re-checked after the lock: still open, due, not leased), so one lane has one holder at a time
  and is delivered in id (= seq) order;
- register times are upserted in sorted order, so two transactions lock them in the same order.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from psycopg import errors

from .._exceptions import StorageError
from .postgres_recorders import _PgBase
from .recorders import EventRecorder
from .records import Delivery, DeliverySelector, DeliveryUpdate, NewDelivery, NewEvent, SinkCounts

_COLS = (
    "d.id, d.event_id, d.sink, d.store_id, d.epoch, d.seq, d.lane, d.state, d.attempts, d.next_attempt_at,"
    " d.last_error, d.created_at, d.updated_at"
)
_OPEN = "('pending', 'in_flight', 'dead')"


def _where(sel: DeliverySelector) -> tuple[str, list[Any]]:
    terms: list[str] = []
    args: list[Any] = []
    for column, value in (("sink", sel.sink), ("event_id", sel.event_id), ("store_id", sel.store_id)):
        if value is not None:
            terms.append(f"d.{column} = %s")
            args.append(value)
    if sel.state is not None:
        terms.append("d.state = %s")
        args.append(sel.state)
    if sel.from_seq is not None:
        terms.append("d.seq >= %s")
        args.append(sel.from_seq)
    if sel.to_seq is not None:
        terms.append("d.seq <= %s")
        args.append(sel.to_seq)
    return (" AND ".join(terms) or "TRUE"), args


class PgEvents(_PgBase, EventRecorder):
    """:class:`~cloud_hub.storage.EventRecorder` on PostgreSQL."""

    def register_times(self, store_id: str, register_ids: Sequence[str]) -> dict[str, str]:
        ids = sorted(set(register_ids))
        if not ids:
            return {}
        rows = self._all(
            "SELECT register_id, occurred_at_utc FROM register_times WHERE store_id = %s AND register_id = ANY(%s)",
            (store_id, ids),
        )
        return {r: t for r, t in rows}

    def set_register_times(self, store_id: str, times: dict[str, str]) -> None:
        if not times:
            return
        with self._c.cursor() as cur:
            cur.executemany(
                "INSERT INTO register_times VALUES (%s, %s, %s)"
                " ON CONFLICT (store_id, register_id) DO UPDATE SET occurred_at_utc = excluded.occurred_at_utc",
                [(store_id, reg, times[reg]) for reg in sorted(times)],
            )

    def forward_cursor(self, store_id: str, epoch: int) -> int:
        sql = "SELECT derived_through FROM forward_cursors WHERE store_id = %s AND epoch = %s"
        if not self._write:
            row = self._one(sql, (store_id, epoch))
            return int(row[0]) if row else 0
        row = self._one(sql + " FOR UPDATE", (store_id, epoch))
        if row is None:  # make the row, so there is something to lock
            self._c.execute(
                "INSERT INTO forward_cursors VALUES (%s, %s, 0) ON CONFLICT (store_id, epoch) DO NOTHING",
                (store_id, epoch),
            )
            row = self._one(sql + " FOR UPDATE", (store_id, epoch))
        return int(row[0])

    def set_forward_cursor(self, store_id: str, epoch: int, seq: int) -> None:
        self._c.execute(
            "INSERT INTO forward_cursors VALUES (%s, %s, %s)"
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
        try:
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
                if not deliveries:
                    return
                cur.executemany(
                    "INSERT INTO deliveries (event_pk, event_id, sink, store_id, epoch, seq, lane, state,"
                    " next_attempt_at, created_at, updated_at)"
                    " VALUES (%s, %s, %s, %s, %s, %s, %s, 'pending', %s, %s, %s)",
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
        except errors.UniqueViolation as exc:
            raise StorageError(f"event insert refused: {exc.diag.message_detail or exc}") from None

    def _strict_candidates(self, sink: str, now: float, limit: int) -> list[int]:
        heads = self._all(
            f"SELECT lane, MIN(id) FROM deliveries WHERE sink = %s AND state IN {_OPEN} GROUP BY lane ORDER BY 2",
            (sink,),
        )
        ids: list[int] = []
        for lane, head in heads:
            if len(ids) >= limit:
                break
            # Whoever holds the head row holds the lane; re-checked on the newest row version after the lock.
            held = self._one(
                "SELECT id FROM deliveries WHERE id = %s AND state IN ('pending', 'in_flight')"
                " AND next_attempt_at <= %s FOR UPDATE SKIP LOCKED",
                (head, now),
            )
            if held is None:
                continue  # parked behind a dead letter, backing off, leased, or being claimed right now
            rows = self._all(
                f"SELECT id, state, next_attempt_at FROM deliveries WHERE sink = %s AND lane = %s"
                f" AND state IN {_OPEN} AND id >= %s ORDER BY id LIMIT %s FOR UPDATE",
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
            self._c.execute(
                "UPDATE deliveries SET state = 'in_flight', claim = %s, next_attempt_at = %s WHERE id = ANY(%s)",
                (claim, lease_until, ids),
            )
        else:
            n = self._count(
                "UPDATE deliveries SET state = 'in_flight', claim = %s, next_attempt_at = %s WHERE id IN"
                " (SELECT d.id FROM deliveries d WHERE d.sink = %s AND d.state IN ('pending', 'in_flight')"
                " AND d.next_attempt_at <= %s ORDER BY d.next_attempt_at, d.id LIMIT %s FOR UPDATE SKIP LOCKED)",
                (claim, lease_until, sink, now, limit),
            )
            if n == 0:
                return []
        rows = self._all(
            f"SELECT {_COLS}, e.event_json, d.claim, e.type FROM deliveries d JOIN events e ON e.pk = d.event_pk"
            " WHERE d.claim = %s AND d.sink = %s AND d.state = 'in_flight' ORDER BY d.lane, d.id",
            (claim, sink),
        )
        return [Delivery(*r) for r in rows]

    def renew_claim(self, claim: str, lease_until: float) -> set[int]:
        rows = self._c.execute(
            "UPDATE deliveries SET next_attempt_at = %s WHERE claim = %s AND state = 'in_flight' RETURNING id",
            (lease_until, claim),
        ).fetchall()
        return {int(r[0]) for r in rows}

    def finish_deliveries(self, claim: str, updates: Sequence[DeliveryUpdate], at: str) -> int:
        changed = 0
        done = [u.id for u in updates if u.state == "done" and u.attempted]
        if done:  # the common case in one statement
            changed += self._count(
                "UPDATE deliveries SET state = 'done', attempts = attempts + 1, claim = NULL, updated_at = %s"
                " WHERE claim = %s AND state = 'in_flight' AND id = ANY(%s)",
                (at, claim, done),
            )
        rest = [u for u in updates if not (u.state == "done" and u.attempted)]
        for u in rest:
            changed += self._count(
                "UPDATE deliveries SET state = %s, attempts = attempts + %s, next_attempt_at = %s,"
                " last_error = COALESCE(%s, last_error), claim = NULL, updated_at = %s"
                " WHERE id = %s AND claim = %s AND state = 'in_flight'",
                (u.state, int(u.attempted), u.next_attempt_at, u.last_error, at, u.id, claim),
            )
        return changed

    def list_deliveries(self, selector: DeliverySelector, *, after_id: int = 0, limit: int = 100) -> list[Delivery]:
        where, args = _where(selector)
        rows = self._all(
            f"SELECT {_COLS} FROM deliveries d WHERE {where} AND d.id > %s ORDER BY d.id LIMIT %s",
            (*args, after_id, limit),
        )
        return [Delivery(*r) for r in rows]

    def replay_deliveries(self, selector: DeliverySelector, now: float, at: str) -> int:
        where, args = _where(selector)
        return self._count(
            f"UPDATE deliveries AS d SET state = 'pending', attempts = 0, next_attempt_at = %s, claim = NULL,"
            f" updated_at = %s WHERE {where} AND d.state != 'in_flight'",
            (now, at, *args),
        )

    def skip_delivery(self, sink: str, event_id: str, at: str) -> bool:
        n = self._count(
            "UPDATE deliveries SET state = 'skipped', claim = NULL, updated_at = %s"
            " WHERE sink = %s AND event_id = %s AND state IN ('dead', 'pending')",
            (at, sink, event_id),
        )
        return n == 1

    def sink_counts(self, *, include_done: bool = True) -> list[SinkCounts]:
        out: dict[str, dict[str, int]] = {}
        states = "" if include_done else f" WHERE state IN {_OPEN}"
        for sink, state, n in self._all(f"SELECT sink, state, COUNT(*) FROM deliveries{states} GROUP BY 1, 2"):
            out.setdefault(sink, {})[state] = int(n)
        oldest: dict[str, str] = {
            s: t
            for s, t in self._all(
                "SELECT sink, MIN(created_at) FROM deliveries WHERE state IN ('pending', 'in_flight') GROUP BY sink"
            )
        }
        return [SinkCounts(s, c, oldest.get(s)) for s, c in sorted(out.items())]

    def open_by_store(self) -> dict[str, int]:
        rows = self._all(
            "SELECT store_id, COUNT(*) FROM deliveries WHERE state IN ('pending', 'in_flight') GROUP BY store_id"
        )
        return {s: int(n) for s, n in rows}
