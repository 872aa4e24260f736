"""PostgreSQL side of what an ERP books (migration 3 in :mod:`postgres_schema`): stock movements,
time fallbacks and derive errors with their resolution; mirrors :mod:`sqlite_bookkeeping`."""

from __future__ import annotations

import json
from collections.abc import Sequence

from .postgres_recorders import _PgBase
from .recorders import BookRecorder
from .records import DeriveError, StockMove, TimeFallback

_DERIVE_COLS = "id, store_id, epoch, seq, reason, at, resolved_at"
_FALLBACK_COLS = "id, store_id, epoch, seq, register_id, txn_id, pos_time, used_time, method, reason, at"


class PgBookkeeping(_PgBase, BookRecorder):
    """:class:`~cloud_hub.storage.BookRecorder` and the derive errors of the event recorder on PostgreSQL."""

    def record_derive_error(self, store_id: str, epoch: int, seq: int, reason: str, at: str) -> None:
        self._c.execute(
            "INSERT INTO derive_errors (store_id, epoch, seq, reason, at) VALUES (%s, %s, %s, %s, %s)",
            (store_id, epoch, seq, reason, at),
        )

    def derive_errors(self, store_id: str | None = None, *, open_only: bool = False) -> list[DeriveError]:
        rows = self._all(
            f"SELECT {_DERIVE_COLS} FROM derive_errors WHERE (%s::text IS NULL OR store_id = %s)"
            " AND (NOT %s OR resolved_at IS NULL) ORDER BY id",
            (store_id, store_id, open_only),
        )
        return [DeriveError(*r) for r in rows]

    def derive_error(self, error_id: int) -> DeriveError | None:
        row = self._one(f"SELECT {_DERIVE_COLS} FROM derive_errors WHERE id = %s", (error_id,))
        return DeriveError(*row) if row else None

    def resolve_derive_error(self, error_id: int, at: str) -> bool:
        n = self._count(
            "UPDATE derive_errors SET resolved_at = %s WHERE id = %s AND resolved_at IS NULL", (at, error_id)
        )
        return n == 1

    def record_stock_moves(self, moves: Sequence[StockMove]) -> None:
        if not moves:
            return
        with self._c.cursor() as cur:
            cur.executemany(
                "INSERT INTO stock_moves VALUES (%s, %s, %s, %s, %s, %s, %s)"
                " ON CONFLICT (store_id, register_id, txn_id) DO UPDATE SET epoch = excluded.epoch,"
                " seq = excluded.seq, event_id = excluded.event_id, adjustments = excluded.adjustments",
                [
                    (m.store_id, m.register_id, m.txn_id, m.epoch, m.seq, m.event_id, json.dumps(m.adjustments))
                    for m in moves
                ],
            )

    def stock_moves(self, store_id: str, keys: Sequence[tuple[str, str]]) -> dict[tuple[str, str], StockMove]:
        out: dict[tuple[str, str], StockMove] = {}
        for register_id, txn_id in dict.fromkeys(keys):
            row = self._one(
                "SELECT epoch, seq, event_id, adjustments FROM stock_moves"
                " WHERE store_id = %s AND register_id = %s AND txn_id = %s",
                (store_id, register_id, txn_id),
            )
            if row is not None:
                out[(register_id, txn_id)] = StockMove(
                    store_id, register_id, txn_id, int(row[0]), int(row[1]), row[2], json.loads(row[3])
                )
        return out

    def record_time_fallbacks(self, rows: Sequence[TimeFallback]) -> None:
        if not rows:
            return
        with self._c.cursor() as cur:
            cur.executemany(
                "INSERT INTO time_fallbacks (store_id, epoch, seq, register_id, txn_id, pos_time, used_time, method,"
                " reason, at) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
                [
                    (
                        r.store_id,
                        r.epoch,
                        r.seq,
                        r.register_id,
                        r.txn_id,
                        r.pos_time,
                        r.used_time,
                        r.method,
                        r.reason,
                        r.at,
                    )  # fmt: skip
                    for r in rows
                ],
            )

    def time_fallbacks(self, store_id: str | None = None, *, limit: int = 100) -> list[TimeFallback]:
        rows = self._all(
            f"SELECT {_FALLBACK_COLS} FROM time_fallbacks WHERE %s::text IS NULL OR store_id = %s"
            " ORDER BY id DESC LIMIT %s",
            (store_id, store_id, limit),
        )
        return [TimeFallback(*r) for r in rows]

    def time_fallback_counts(self) -> dict[str, int]:
        rows = self._all("SELECT store_id, COUNT(*) FROM time_fallbacks GROUP BY store_id")
        return {s: int(n) for s, n in rows}
