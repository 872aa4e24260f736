"""What an ERP books beyond the events, in SQL once for every engine (migration 3 of each schema).

- ``stock_moves``: the sellable-stock movement of each sale and return, per ``(store_id,
  register_id, txn_id)``, so a void that arrives in a later burst or file reverses it.
- ``time_fallbacks``: records whose POS time was not trusted (listed for operators, counted).
- ``derive_errors``: stored records from which no event could be derived; ``resolved_at`` is set
  once an operator re-derived the record (exactly once). They belong to the event recorder.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from ..recorders import BookRecorder
from ..records import DeriveError, StockMove, TimeFallback
from . import SQLWork, where

DERIVE_COLS = "id, store_id, epoch, seq, reason, at, resolved_at"
FALLBACK_COLS = "id, store_id, epoch, seq, register_id, txn_id, pos_time, used_time, method, reason, at"

UPSERT_STOCK_MOVE = (
    "INSERT INTO stock_moves VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (store_id, register_id, txn_id)"
    " DO UPDATE SET epoch = excluded.epoch, seq = excluded.seq, event_id = excluded.event_id,"
    " adjustments = excluded.adjustments"
)
INSERT_FALLBACK = (
    "INSERT INTO time_fallbacks (store_id, epoch, seq, register_id, txn_id, pos_time, used_time, method,"
    " reason, at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)


def _of_store(store_id: str | None) -> tuple[list[str], list[Any]]:
    return (["store_id = ?"], [store_id]) if store_id is not None else ([], [])


class SQLBooks(SQLWork, BookRecorder):
    """:class:`~cloud_hub.storage.BookRecorder` in SQL, and the derive errors of the event recorder."""

    def record_derive_error(self, store_id: str, epoch: int, seq: int, reason: str, at: str) -> None:
        self._run(
            "INSERT INTO derive_errors (store_id, epoch, seq, reason, at) VALUES (?, ?, ?, ?, ?)",
            (store_id, epoch, seq, reason, at),
        )

    def derive_errors(self, store_id: str | None = None, *, open_only: bool = False) -> list[DeriveError]:
        terms, args = _of_store(store_id)
        if open_only:
            terms.append("resolved_at IS NULL")
        rows = self._all(f"SELECT {DERIVE_COLS} FROM derive_errors{where(terms)} ORDER BY id", args)
        return [DeriveError(*r) for r in rows]

    def derive_error(self, error_id: int) -> DeriveError | None:
        row = self._one(f"SELECT {DERIVE_COLS} FROM derive_errors WHERE id = ?", (error_id,))
        return DeriveError(*row) if row else None

    def resolve_derive_error(self, error_id: int, at: str) -> bool:
        n = self._count("UPDATE derive_errors SET resolved_at = ? WHERE id = ? AND resolved_at IS NULL", (at, error_id))
        return n == 1

    def record_stock_moves(self, moves: Sequence[StockMove]) -> None:
        self._many(
            UPSERT_STOCK_MOVE,
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
                " WHERE store_id = ? AND register_id = ? AND txn_id = ?",
                (store_id, register_id, txn_id),
            )
            if row is not None:
                out[(register_id, txn_id)] = StockMove(
                    store_id, register_id, txn_id, int(row[0]), int(row[1]), row[2], json.loads(row[3])
                )
        return out

    def record_time_fallbacks(self, rows: Sequence[TimeFallback]) -> None:
        self._many(
            INSERT_FALLBACK,
            [
                (r.store_id, r.epoch, r.seq, r.register_id, r.txn_id, r.pos_time, r.used_time, r.method, r.reason, r.at)
                for r in rows
            ],
        )

    def time_fallbacks(self, store_id: str | None = None, *, limit: int = 100) -> list[TimeFallback]:
        terms, args = _of_store(store_id)
        rows = self._all(
            f"SELECT {FALLBACK_COLS} FROM time_fallbacks{where(terms)} ORDER BY id DESC LIMIT ?", (*args, limit)
        )
        return [TimeFallback(*r) for r in rows]

    def time_fallback_counts(self) -> dict[str, int]:
        rows = self._all("SELECT store_id, COUNT(*) FROM time_fallbacks GROUP BY store_id")
        return {s: int(n) for s, n in rows}
