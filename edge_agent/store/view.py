"""The read-only view of the agent's SQLite file: what the store TUI may read, as typed queries.

:class:`StoreView` opens the file with ``SQLITE_OPEN_READONLY`` (URI ``file:…?mode=ro``): the TUI can
never change a record, and it works while the agent is stopped. It shares the agent's own reads
(:class:`edge_agent.store._db.Db`), status snapshot and chain verification, so what the TUI shows is
computed by exactly the code the agent uses. No migrations and no pragmas run on open.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any, NamedTuple

import apsw

from . import imports
from ._db import BURST_COLUMNS, BUSY_TIMEOUT_MS, Db, Identity, Writer
from .snapshot import read_snapshot
from .verify import VerifyReport, verify_outbox

__all__ = ["Identity", "RecordRow", "StoreView", "StoredRecord", "VerifyReport", "Writer"]


class RecordRow(NamedTuple):
    """One stored record as the transaction browser lists it (``body`` is the signed canonical JSON)."""

    epoch: int
    seq: int
    register_id: str
    txn_id: str
    kind: str
    captured_at: str
    origin: str
    body: str


class StoredRecord(NamedTuple):
    """One stored record with its chain value and signature."""

    row: RecordRow
    chain: bytes
    sig: bytes


_RECORD_COLS = "epoch, seq, register_id, txn_id, kind, captured_at, origin, body"


def _like(text: str) -> str:
    return "%" + text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


class StoreView(Db):
    """The agent's outbox opened read-only.

    Args:
        path: The ``outbox.db`` file.

    Raises:
        FileNotFoundError: when the file does not exist.
        apsw.Error: when SQLite cannot open it.
    """

    def __init__(self, path: Path) -> None:
        if not path.exists():
            raise FileNotFoundError(str(path))
        self.path = path
        self.conn = apsw.Connection(f"file:{path}?mode=ro", flags=apsw.SQLITE_OPEN_READONLY | apsw.SQLITE_OPEN_URI)
        self.conn.set_busy_timeout(BUSY_TIMEOUT_MS)

    def snapshot(self) -> dict[str, Any]:
        """The agent's status snapshot (see :func:`edge_agent.store.snapshot.read_snapshot`)."""
        return read_snapshot(self)

    def verify(self) -> VerifyReport:
        """The agent's full chain verification (``edge-agent verify``)."""
        return verify_outbox(self)

    def burst_log(self) -> list[dict[str, Any]]:
        """The whole burst log, oldest first, each with its ``id``."""
        cols = (*BURST_COLUMNS, "id")
        return [
            dict(zip(cols, r, strict=True)) for r in self.query(f"SELECT {', '.join(cols)} FROM bursts ORDER BY id")
        ]

    def first_stored_seq(self, epoch: int) -> int | None:
        """The lowest seq still stored for ``epoch`` (records before it were pruned), or None."""
        row = self._one("SELECT min(seq) FROM outbox WHERE epoch = ?", (epoch,))
        return int(row[0]) if row and row[0] is not None else None

    def captured_at(self, epoch: int, seq: int) -> str | None:
        """``captured_at`` of one record, or None when it is not stored."""
        row = self._one("SELECT captured_at FROM outbox WHERE epoch = ? AND seq = ?", (epoch, seq))
        return row[0] if row else None

    def kinds_and_times(self, epoch: int, after_seq: int, through_seq: int) -> list[tuple[str, str | None]]:
        """``(kind, txn.occurred_at)`` of the records of ``epoch`` with ``after_seq < seq <= through_seq``."""
        rows = self.query(
            "SELECT kind, json_extract(body, '$.txn.occurred_at') FROM outbox WHERE epoch = ? AND seq > ? AND seq <= ?",
            (epoch, after_seq, through_seq),
        )
        return [(str(k), t if isinstance(t, str) else None) for k, t in rows]

    def find_records(self, text: str, limit: int) -> list[RecordRow]:
        """Newest first: records whose seq is ``text``, whose register is ``text``, or whose txn id contains it.

        An empty ``text`` lists the newest records.
        """
        if not text:
            rows = self.query(f"SELECT {_RECORD_COLS} FROM outbox ORDER BY epoch DESC, seq DESC LIMIT ?", (limit,))
        else:
            seq = int(text.lstrip("#")) if text.lstrip("#").isdigit() else -1
            rows = self.query(
                f"SELECT {_RECORD_COLS} FROM outbox WHERE seq = ? OR register_id = ? OR txn_id LIKE ? ESCAPE '\\' "
                "ORDER BY epoch DESC, seq DESC LIMIT ?",
                (seq, text, _like(text), limit),
            )
        return [RecordRow(int(e), int(s), *rest) for e, s, *rest in rows]

    def record(self, epoch: int, seq: int) -> StoredRecord | None:
        """One record with its chain value and signature, or None."""
        row = self._one(f"SELECT {_RECORD_COLS}, chain, sig FROM outbox WHERE epoch = ? AND seq = ?", (epoch, seq))
        if row is None:
            return None
        e, s, *rest, chain_value, sig = row
        return StoredRecord(RecordRow(int(e), int(s), *rest), bytes(chain_value), bytes(sig))

    def records_of(self, epoch: int) -> Iterator[tuple[int, str, bytes, bytes, str]]:
        """Every stored record of ``epoch`` in seq order: ``(seq, body, chain, sig, captured_at)`` (audit export)."""
        for seq, body, chain_value, sig, captured in self.iterate(
            "SELECT seq, body, chain, sig, captured_at FROM outbox WHERE epoch = ? ORDER BY seq", (epoch,)
        ):
            yield int(seq), body, bytes(chain_value), bytes(sig), captured

    def count_from_origin(self, epoch: int, after_seq: int, through_seq: int, origin: str) -> int:
        """Records of ``epoch`` with ``after_seq < seq <= through_seq`` whose origin is ``origin``."""
        row = self._one(
            "SELECT count(*) FROM outbox WHERE epoch = ? AND seq > ? AND seq <= ? AND origin = ?",
            (epoch, after_seq, through_seq, origin),
        )
        return int(row[0]) if row else 0

    def import_rows(self) -> list[dict[str, Any]] | None:
        """Every drop import row, oldest first; None when the file predates drop imports."""
        if not self.query("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'imports'"):
            return None
        return imports.every(self)
