"""SQLite side of what an ERP books (migration 3), as a mixin of the adapter's unit of work.

- ``stock_moves``: the sellable-stock movement of each sale and return, per ``(store_id,
  register_id, txn_id)``, so a void that arrives in a later burst or file reverses it.
- ``time_fallbacks``: records whose POS time was not trusted (listed for operators, counted).
- ``derive_errors.resolved_at``: set once an operator re-derived the record (exactly once).
- ``streams.backlog``: the agent's pending count and oldest pending time, as last reported.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

import apsw

from .recorders import BookRecorder
from .records import DeriveError, StockMove, TimeFallback

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

_DERIVE_COLS = "id, store_id, epoch, seq, reason, at, resolved_at"
_FALLBACK_COLS = "id, store_id, epoch, seq, register_id, txn_id, pos_time, used_time, method, reason, at"


class SQLiteBookkeeping(BookRecorder):
    """Stock movements, time fallbacks, and the derive errors of :class:`EventRecorder` with their
    resolution (``self._c`` is the connection)."""

    _c: apsw.Connection

    def record_derive_error(self, store_id: str, epoch: int, seq: int, reason: str, at: str) -> None:
        self._c.execute(
            "INSERT INTO derive_errors (store_id, epoch, seq, reason, at) VALUES (?, ?, ?, ?, ?)",
            (store_id, epoch, seq, reason, at),
        )

    def derive_errors(self, store_id: str | None = None, *, open_only: bool = False) -> list[DeriveError]:
        rows = self._c.execute(
            f"SELECT {_DERIVE_COLS} FROM derive_errors WHERE (? IS NULL OR store_id = ?)"
            " AND (? = 0 OR resolved_at IS NULL) ORDER BY id",
            (store_id, store_id, int(open_only)),
        )
        return [DeriveError(*r) for r in rows]

    def derive_error(self, error_id: int) -> DeriveError | None:
        row = self._c.execute(f"SELECT {_DERIVE_COLS} FROM derive_errors WHERE id = ?", (error_id,)).fetchone()
        return DeriveError(*row) if row else None

    def resolve_derive_error(self, error_id: int, at: str) -> bool:
        self._c.execute("UPDATE derive_errors SET resolved_at = ? WHERE id = ? AND resolved_at IS NULL", (at, error_id))
        return bool(self._c.changes() == 1)

    def record_stock_moves(self, moves: Sequence[StockMove]) -> None:
        self._c.executemany(
            "INSERT INTO stock_moves VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (store_id, register_id, txn_id)"
            " DO UPDATE SET epoch = excluded.epoch, seq = excluded.seq, event_id = excluded.event_id,"
            " adjustments = excluded.adjustments",
            [
                (m.store_id, m.register_id, m.txn_id, m.epoch, m.seq, m.event_id, json.dumps(m.adjustments))
                for m in moves
            ],
        )

    def stock_moves(self, store_id: str, keys: Sequence[tuple[str, str]]) -> dict[tuple[str, str], StockMove]:
        out: dict[tuple[str, str], StockMove] = {}
        for register_id, txn_id in dict.fromkeys(keys):
            row = self._c.execute(
                "SELECT epoch, seq, event_id, adjustments FROM stock_moves"
                " WHERE store_id = ? AND register_id = ? AND txn_id = ?",
                (store_id, register_id, txn_id),
            ).fetchone()
            if row is not None:
                out[(register_id, txn_id)] = StockMove(
                    store_id, register_id, txn_id, int(row[0]), int(row[1]), row[2], json.loads(row[3])
                )
        return out

    def record_time_fallbacks(self, rows: Sequence[TimeFallback]) -> None:
        self._c.executemany(
            "INSERT INTO time_fallbacks (store_id, epoch, seq, register_id, txn_id, pos_time, used_time, method,"
            " reason, at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [
                (r.store_id, r.epoch, r.seq, r.register_id, r.txn_id, r.pos_time, r.used_time, r.method, r.reason, r.at)
                for r in rows
            ],
        )

    def time_fallbacks(self, store_id: str | None = None, *, limit: int = 100) -> list[TimeFallback]:
        rows = self._c.execute(
            f"SELECT {_FALLBACK_COLS} FROM time_fallbacks WHERE ? IS NULL OR store_id = ? ORDER BY id DESC LIMIT ?",
            (store_id, store_id, limit),
        )
        return [TimeFallback(*r) for r in rows]

    def time_fallback_counts(self) -> dict[str, int]:
        rows = self._c.execute("SELECT store_id, COUNT(*) FROM time_fallbacks GROUP BY store_id")
        return {s: int(n) for s, n in rows}
