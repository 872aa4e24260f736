"""Read-only access to the agent's outbox database for the store TUI.

The database is opened with ``SQLITE_OPEN_READONLY`` (URI ``file:…?mode=ro``): the TUI can never
change a record, and it works while the agent is stopped. :class:`ReadOnlyOutbox` is the agent's own
:class:`edge_agent.outbox.Outbox` minus the write side, so status, identity, bursts and chain
verification are computed by exactly the code the agent uses.

Every function here blocks on SQLite; the app calls them from thread workers.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import apsw

from edge_agent.outbox import BUSY_TIMEOUT_MS, Outbox
from edge_agent.status import compute_status
from edge_agent.verify import VerifyReport
from sync_protocol import chain as _chain
from sync_protocol import keys
from sync_protocol._exceptions import RecordInvalid
from sync_protocol.record import SignedRecord, check_body, verify_run

from .format import parse_time, zone

SPARK_HOURS = 6
SPARK_BUCKETS = 36
SEARCH_LIMIT = 200


class ReadOnlyOutbox(Outbox):
    """The agent's outbox opened read-only: no migrations, no pragmas, writes fail in SQLite.

    Args:
        path: The ``outbox.db`` file.

    Raises:
        FileNotFoundError: when the file does not exist.
        apsw.Error: when SQLite cannot open it.
    """

    def __init__(self, path: Path) -> None:  # noqa: D107 - deliberately not calling Outbox.__init__
        if not path.exists():
            raise FileNotFoundError(str(path))
        self.path = path
        self._key = None
        self._key_id = None
        self.conn = apsw.Connection(f"file:{path}?mode=ro", flags=apsw.SQLITE_OPEN_READONLY | apsw.SQLITE_OPEN_URI)
        self.conn.set_busy_timeout(BUSY_TIMEOUT_MS)


@dataclass(frozen=True)
class AgentView:
    """Everything the main screen shows from the outbox, read in one go.

    Attributes:
        status: ``edge_agent.status.compute_status`` for ``now`` (None without an outbox).
        error: Why the outbox could not be read, if it could not.
        tz: The store's zone name.
        captured_today: Records captured since local midnight (store zone).
        captured_last_hour: Records captured in the last hour.
        backlog: Records waiting at each point of the last hours, oldest first, ending now.
        bursts: The newest bursts first (``Outbox.recent_bursts``), ``at`` parsed.
    """

    status: dict[str, Any] | None
    error: str | None = None
    tz: str = ""
    captured_today: int = 0
    captured_last_hour: int = 0
    backlog: list[float] = field(default_factory=list)
    bursts: list[dict[str, Any]] = field(default_factory=list)


def open_outbox(db_path: Path) -> ReadOnlyOutbox:
    """Open the outbox read-only (see :class:`ReadOnlyOutbox`)."""
    return ReadOnlyOutbox(db_path)


def read_view(db_path: Path, now: datetime, *, burst_limit: int = 12) -> AgentView:
    """Read the main screen's data; never raises for a missing or unreadable database."""
    try:
        ob = open_outbox(db_path)
    except FileNotFoundError:
        return AgentView(None, error=f"no outbox at {db_path}")
    except apsw.Error as exc:
        return AgentView(None, error=f"cannot open {db_path}: {exc}")
    try:
        with ob.conn:  # one read transaction: a consistent picture
            status = compute_status(ob.snapshot(), now)
            bursts = ob.query(
                "SELECT at, epoch, first_seq, last_seq, count, result, http_status, ms, id FROM bursts ORDER BY id"
            )
            epoch = status.get("epoch")
            tz_name = str(status.get("tz") or "")
            if epoch is None:
                return AgentView(status, tz=tz_name)
            bounds = ob.query("SELECT anchor_seq, head_seq FROM writers WHERE epoch = ?", (epoch,))
            anchor, head = (int(bounds[0][0]), int(bounds[0][1])) if bounds else (0, 0)
            lo = _first_stored(ob, int(epoch), anchor) - 1
            seq_at = _SeqFinder(ob, int(epoch), lo, head)
            tz = zone(tz_name)
            local_now = now.astimezone(tz) if tz else now
            midnight = local_now.replace(hour=0, minute=0, second=0, microsecond=0)
            today = head - seq_at(midnight)
            last_hour = head - seq_at(now - timedelta(hours=1))
            backlog = _backlog(seq_at, bursts, now, int(status.get("acked_through") or 0), head)
        cols = ("at", "epoch", "first_seq", "last_seq", "count", "result", "http_status", "ms", "id")
        recent = [dict(zip(cols, row, strict=True)) for row in reversed(bursts[-burst_limit:])]
        for b in recent:
            b["at"] = parse_time(b["at"])
        return AgentView(status, None, tz_name, today, last_hour, backlog, recent)
    except apsw.Error as exc:
        return AgentView(None, error=f"cannot read {db_path}: {exc}")
    except Exception as exc:  # an AgentError from the outbox helpers
        return AgentView(None, error=f"cannot read {db_path}: {exc}")
    finally:
        ob.close()


def _first_stored(ob: Outbox, epoch: int, anchor: int) -> int:
    row = ob.query("SELECT min(seq) FROM outbox WHERE epoch = ?", (epoch,))
    return int(row[0][0]) if row and row[0][0] is not None else anchor + 1


class _SeqFinder:
    """``seq_at(t)``: the highest seq captured at or before ``t`` (binary search over seq).

    Capture times come from the agent clock and rise with seq; a clock jump only blurs the sparkline.
    """

    def __init__(self, ob: Outbox, epoch: int, lo: int, hi: int) -> None:
        self.ob, self.epoch, self.lo, self.hi = ob, epoch, lo, hi
        self._cache: dict[int, datetime | None] = {}

    def _at(self, seq: int) -> datetime | None:
        if seq not in self._cache:
            row = self.ob.query("SELECT captured_at FROM outbox WHERE epoch = ? AND seq = ?", (self.epoch, seq))
            self._cache[seq] = parse_time(row[0][0]) if row else None
        return self._cache[seq]

    def __call__(self, t: datetime) -> int:
        lo, hi = self.lo, self.hi
        while lo < hi:
            mid = (lo + hi + 1) // 2
            at = self._at(mid)
            if at is None or at <= t:
                lo = mid
            else:
                hi = mid - 1
        return lo


def _backlog(seq_at: _SeqFinder, bursts: list[Any], now: datetime, acked: int, head: int) -> list[float]:
    """Records waiting at ``SPARK_BUCKETS`` points over the last ``SPARK_HOURS`` hours.

    Captured-by-then comes from ``captured_at``; acknowledged-by-then from the burst log (the last
    seq of each successful burst). The last point is exactly the current backlog.
    """
    oks = [(parse_time(at), last) for at, _e, _f, last, _c, result, _s, _m, _i in bursts if result == "ok" and last]
    starts = [first for _a, _e, first, _l, _c, _r, _s, _m, _i in bursts if first is not None]
    baseline = (min(starts) - 1) if starts else acked
    step = timedelta(hours=SPARK_HOURS) / SPARK_BUCKETS
    points: list[float] = []
    for i in range(SPARK_BUCKETS, 0, -1):
        t = now - step * (i - 1)
        if i == 1:
            points.append(float(max(0, head - acked)))
            continue
        done = max([baseline, *(int(last) for at, last in oks if at is not None and at <= t)])
        points.append(float(max(0, seq_at(t) - min(done, acked))))
    return points


@dataclass(frozen=True)
class TxnRow:
    """One outbox record as the transaction browser lists it."""

    epoch: int
    seq: int
    register_id: str
    txn_id: str
    kind: str
    captured_at: str
    origin: str
    total: str
    reached_hub: bool | None


def search(db_path: Path, text: str, limit: int = SEARCH_LIMIT) -> list[TxnRow]:
    """Records whose txn id contains ``text``, whose register is ``text``, or whose seq is ``text``.

    An empty ``text`` lists the newest records. ``reached_hub`` is ``seq <= acked_through`` for the
    current epoch and None for older epochs (their acknowledgement is not kept on this computer).
    """
    with open_outbox(db_path) as ob, ob.conn:
        ident = ob.identity()
        acked = ob.acked_through()
        text = text.strip()
        cols = "epoch, seq, register_id, txn_id, kind, captured_at, origin, body"
        if not text:
            rows = ob.query(f"SELECT {cols} FROM outbox ORDER BY epoch DESC, seq DESC LIMIT ?", (limit,))
        else:
            seq = int(text.lstrip("#")) if text.lstrip("#").isdigit() else -1
            rows = ob.query(
                f"SELECT {cols} FROM outbox WHERE seq = ? OR register_id = ? OR txn_id LIKE ? ESCAPE '\\' "
                "ORDER BY epoch DESC, seq DESC LIMIT ?",
                (seq, text, "%" + text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%", limit),
            )
    out = []
    for epoch, seq, register_id, txn_id, kind, captured_at, origin, body in rows:
        current = ident is not None and int(epoch) == ident.epoch
        out.append(
            TxnRow(
                int(epoch),
                int(seq),
                register_id,
                txn_id,
                kind,
                captured_at,
                origin,
                _total(body),
                (int(seq) <= acked) if current else None,
            )
        )
    return out


def _total(body: str) -> str:
    try:
        txn = json.loads(body).get("txn", {})
        return f"{txn.get('total', '')} {txn.get('currency', '')}".strip()
    except (ValueError, AttributeError):
        return "?"


@dataclass(frozen=True)
class TxnDetail:
    """One record with its checks: the body, where it stands, whether its chain link holds."""

    row: TxnRow
    body: dict[str, Any]
    chain_hex: str
    chain_ok: bool
    chain_text: str


def detail(db_path: Path, epoch: int, seq: int) -> TxnDetail | None:
    """A record, checked on its own: body names its writer and seq, link from its predecessor, signature."""
    with open_outbox(db_path) as ob, ob.conn:
        rows = ob.query(
            "SELECT register_id, txn_id, kind, captured_at, origin, body, chain, sig FROM outbox "
            "WHERE epoch = ? AND seq = ?",
            (epoch, seq),
        )
        if not rows:
            return None
        register_id, txn_id, kind, captured_at, origin, body, chain_value, sig = rows[0]
        writer = ob.query("SELECT store_id, public_key FROM writers WHERE epoch = ?", (epoch,))
        ident = ob.identity()
        acked = ob.acked_through()
        prev = ob.chain_at(epoch, seq - 1)
        if prev is None and seq == 1 and writer:
            prev = _chain.genesis(writer[0][0], epoch)
    current = ident is not None and ident.epoch == epoch
    row = TxnRow(
        epoch, seq, register_id, txn_id, kind, captured_at, origin, _total(body), (seq <= acked) if current else None
    )
    try:
        doc = json.loads(body)
    except ValueError:
        doc = {}
    ok, text = _check(writer, epoch, seq, body, bytes(chain_value), bytes(sig), prev)
    return TxnDetail(row, doc if isinstance(doc, dict) else {}, bytes(chain_value).hex(), ok, text)


def _check(
    writer: list[Any], epoch: int, seq: int, body: str, chain_value: bytes, sig: bytes, prev: bytes | None
) -> tuple[bool, str]:
    if not writer:
        return False, f"no writer for epoch {epoch}"
    if prev is None:
        return False, "the record before it is no longer here (pruned); run 'verify chain' for the whole outbox"
    try:
        check_body(body, store_id=writer[0][0], epoch=epoch, seq=seq)
        list(
            verify_run(
                [SignedRecord(seq, body, chain_value, sig)],
                prev_chain=prev,
                first_seq=seq,
                public_key=keys.public_from_hex(writer[0][1]),
            )
        )
    except RecordInvalid as exc:
        return False, exc.reason
    return True, "link from the previous sale and signature verify"


def verify(db_path: Path) -> VerifyReport:
    """The agent's full chain verification (``edge-agent verify``), on a read-only connection."""
    with open_outbox(db_path) as ob:
        return ob.verify()


def origin_count(db_path: Path, origin: str, after_seq: int = 0) -> tuple[int, int]:
    """Records of the current epoch from ``origin`` with seq > ``after_seq``, and the head seq.

    Callers keep a running total and pass the head back as ``after_seq`` so each call scans only the
    records added since the last one.
    """
    with open_outbox(db_path) as ob, ob.conn:
        ident = ob.identity()
        if ident is None:
            return 0, after_seq
        head, _ = ob.head(ident.epoch)
        row = ob.query(
            "SELECT count(*) FROM outbox WHERE epoch = ? AND seq > ? AND seq <= ? AND origin = ?",
            (ident.epoch, after_seq, head, origin),
        )
    return int(row[0][0]), head


def table_rows(db_path: Path, table: str) -> list[dict[str, Any]] | None:
    """All rows of an optional table as dicts, or None when the table does not exist."""
    with open_outbox(db_path) as ob, ob.conn:
        found = ob.query("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (table,))
        if not found:
            return None
        names = [str(r[1]) for r in ob.query(f'PRAGMA table_info("{table}")')]
        quoted = ", ".join('"' + n.replace('"', '""') + '"' for n in names)
        rows = ob.query(f'SELECT {quoted} FROM "{table}"')
    return [dict(zip(names, r, strict=True)) for r in rows]
