"""What the store TUI shows from the agent's outbox, read through the agent store's read-only view.

Every read goes through :class:`edge_agent.store.StoreView` (``SQLITE_OPEN_READONLY``): the TUI can
never change a record, it works while the agent is stopped, and status, identity, bursts and chain
verification are computed by exactly the code the agent uses. No SQL here.

Every function here blocks on SQLite; the app calls them from thread workers.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

import apsw

from edge_agent.status import compute_status
from edge_agent.store.view import StoreView, VerifyReport, Writer
from sync_protocol import chain as _chain
from sync_protocol import keys
from sync_protocol._exceptions import RecordInvalid
from sync_protocol.record import SignedRecord, check_body, verify_run

from .format import parse_time, zone

SPARK_HOURS = 6
SPARK_BUCKETS = 36
SEARCH_LIMIT = 200


@dataclass(frozen=True)
class AgentView:
    """Everything the main screen shows from the outbox, read in one go.

    Attributes:
        status: ``edge_agent.status.compute_status`` for ``now`` (None without an outbox).
        error: Why the outbox could not be read, if it could not.
        tz: The store's zone name.
        captured_today: Records captured since local midnight (store zone).
        captured_last_hour: Records captured in the last hour.
        today: Transactions whose business day is today (their ``occurred_at`` in the store's zone),
            by kind: ``sale``, ``return``, ``void``. A back-dated import counts on its own day, not today.
        backlog: Records waiting at each point of the last hours, oldest first, ending now.
        bursts: The newest bursts first (``Outbox.recent_bursts``), ``at`` parsed.
    """

    status: dict[str, Any] | None
    error: str | None = None
    tz: str = ""
    captured_today: int = 0
    captured_last_hour: int = 0
    today: dict[str, int] = field(default_factory=dict)
    backlog: list[float] = field(default_factory=list)
    bursts: list[dict[str, Any]] = field(default_factory=list)


def open_outbox(db_path: Path) -> StoreView:
    """Open the outbox read-only (see :class:`edge_agent.store.StoreView`)."""
    return StoreView(db_path)


def read_view(db_path: Path, now: datetime, *, burst_limit: int = 12) -> AgentView:
    """Read the main screen's data; never raises for a missing or unreadable database."""
    try:
        ob = open_outbox(db_path)
    except FileNotFoundError:
        return AgentView(None, error=f"no outbox at {db_path}")
    except apsw.Error as exc:
        return AgentView(None, error=f"cannot open {db_path}: {exc}")
    try:
        with ob.read():  # one read transaction: a consistent picture
            status = compute_status(ob.snapshot(), now)
            bursts = ob.burst_log()
            epoch = status.get("epoch")
            tz_name = str(status.get("tz") or "")
            if epoch is None:
                return AgentView(status, tz=tz_name)
            anchor, head = ob.bounds(int(epoch))
            first = ob.first_stored_seq(int(epoch))
            lo = (first if first is not None else anchor + 1) - 1
            seq_at = _SeqFinder(ob, int(epoch), lo, head)
            tz = zone(tz_name)
            local_now = now.astimezone(tz) if tz else now
            midnight = local_now.replace(hour=0, minute=0, second=0, microsecond=0)
            today = head - seq_at(midnight)
            last_hour = head - seq_at(now - timedelta(hours=1))
            backlog = _backlog(seq_at, bursts, now, int(status.get("acked_through") or 0), head)
            # A sale of today is captured today; an hour's slack for a register clock a little ahead.
            since = seq_at(midnight - timedelta(hours=1))
            by_day = business_day_counts(ob.kinds_and_times(int(epoch), since, head), tz, local_now.date())
        recent = [dict(row) for row in reversed(bursts[-burst_limit:])]
        for b in recent:
            b["at"] = parse_time(b["at"])
        return AgentView(status, None, tz_name, today, last_hour, by_day, backlog, recent)
    except apsw.Error as exc:
        return AgentView(None, error=f"cannot read {db_path}: {exc}")
    except Exception as exc:  # an AgentError from the outbox helpers
        return AgentView(None, error=f"cannot read {db_path}: {exc}")
    finally:
        ob.close()


def business_day(occurred_at: str | None, tz: Any) -> date | None:
    """The business day of a POS time: a naive time is the store's wall clock, an offset time is
    converted to the store's zone (None when it cannot be read)."""
    if not occurred_at:
        return None
    try:
        moment = datetime.fromisoformat(occurred_at)
    except ValueError:
        return None
    if moment.tzinfo is None or tz is None:
        return moment.date()
    return moment.astimezone(tz).date()


def business_day_counts(rows: list[tuple[str, str | None]], tz: Any, day: date) -> dict[str, int]:
    """How many ``(kind, occurred_at)`` rows fall on ``day``, by kind (sale, return, void)."""
    out = {"sale": 0, "return": 0, "void": 0}
    for kind, occurred_at in rows:
        if business_day(occurred_at, tz) == day:
            out[kind] = out.get(kind, 0) + 1
    return out


class _SeqFinder:
    """``seq_at(t)``: the highest seq captured at or before ``t`` (binary search over seq).

    Capture times come from the agent clock and rise with seq; a clock jump only blurs the sparkline.
    """

    def __init__(self, ob: StoreView, epoch: int, lo: int, hi: int) -> None:
        self.ob, self.epoch, self.lo, self.hi = ob, epoch, lo, hi
        self._cache: dict[int, datetime | None] = {}

    def _at(self, seq: int) -> datetime | None:
        if seq not in self._cache:
            at = self.ob.captured_at(self.epoch, seq)
            self._cache[seq] = parse_time(at) if at is not None else None
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


def _backlog(seq_at: _SeqFinder, bursts: list[dict[str, Any]], now: datetime, acked: int, head: int) -> list[float]:
    """Records waiting at ``SPARK_BUCKETS`` points over the last ``SPARK_HOURS`` hours.

    Captured-by-then comes from ``captured_at``; acknowledged-by-then from the burst log (the last
    seq of each successful burst). The last point is exactly the current backlog.
    """
    oks = [(parse_time(b["at"]), b["last_seq"]) for b in bursts if b["result"] == "ok" and b["last_seq"]]
    starts = [b["first_seq"] for b in bursts if b["first_seq"] is not None]
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
    with open_outbox(db_path) as ob, ob.read():
        ident = ob.identity()
        acked = ob.acked_through()
        rows = ob.find_records(text.strip(), limit)
    out = []
    for r in rows:
        current = ident is not None and r.epoch == ident.epoch
        out.append(
            TxnRow(
                r.epoch,
                r.seq,
                r.register_id,
                r.txn_id,
                r.kind,
                r.captured_at,
                r.origin,
                _total(r.body),
                (r.seq <= acked) if current else None,
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
    with open_outbox(db_path) as ob, ob.read():
        found = ob.record(epoch, seq)
        if found is None:
            return None
        writer = ob.writer(epoch)
        ident = ob.identity()
        acked = ob.acked_through()
        prev = ob.chain_at(epoch, seq - 1)
        if prev is None and seq == 1 and writer is not None:
            prev = _chain.genesis(writer.store_id, epoch)
    r = found.row
    current = ident is not None and ident.epoch == epoch
    row = TxnRow(
        epoch, seq, r.register_id, r.txn_id, r.kind, r.captured_at, r.origin, _total(r.body),
        (seq <= acked) if current else None,
    )  # fmt: skip
    try:
        doc = json.loads(r.body)
    except ValueError:
        doc = {}
    ok, text = _check(writer, epoch, seq, r.body, found.chain, found.sig, prev)
    return TxnDetail(row, doc if isinstance(doc, dict) else {}, found.chain.hex(), ok, text)


def _check(
    writer: Writer | None, epoch: int, seq: int, body: str, chain_value: bytes, sig: bytes, prev: bytes | None
) -> tuple[bool, str]:
    if writer is None:
        return False, f"no writer for epoch {epoch}"
    if prev is None:
        return False, "the record before it is no longer here (pruned); run 'verify chain' for the whole outbox"
    try:
        check_body(body, store_id=writer.store_id, epoch=epoch, seq=seq)
        list(
            verify_run(
                [SignedRecord(seq, body, chain_value, sig)],
                prev_chain=prev,
                first_seq=seq,
                public_key=keys.public_from_hex(writer.public_key),
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
    with open_outbox(db_path) as ob, ob.read():
        ident = ob.identity()
        if ident is None:
            return 0, after_seq
        head, _ = ob.head(ident.epoch)
        count = ob.count_from_origin(ident.epoch, after_seq, head, origin)
    return count, head


def import_rows(db_path: Path) -> list[dict[str, Any]] | None:
    """Every row of the agent's drop-import table, oldest first; None when the file has none."""
    with open_outbox(db_path) as ob, ob.read():
        return ob.import_rows()
