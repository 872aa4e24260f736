"""Time normalization of one record (DESIGN §5): pure functions, no storage, no clock reads.

The hub never rewrites signed values. :func:`normalize_times` reads a record body and returns only
*added* fields:

- ``occurred_at_utc``: when the sale happened, in UTC (``...Z``, milliseconds).
- ``captured_at_utc``: the agent's ``captured_at``, corrected by the clock offset θ when |θ| exceeds
  the tolerance.
- ``hub_received_at``: when the hub received the burst, in UTC.
- ``time_quality``: ``{"method", "theta_ms", "uncertainty_ms", "pos_skew_ms", "flags"}``.

``method`` says how ``occurred_at_utc`` was obtained:

=====================  ==========================================================================
``offset``             the POS sent a time with a UTC offset
``zone``               a naive POS time, unambiguous in the store's IANA zone
``zone-gap-shifted``   a naive time inside a spring-forward gap, moved forward by the gap
``zone-fold-0``        an ambiguous fall-back time, the first (earlier) occurrence chosen
``zone-fold-1``        an ambiguous fall-back time, the second (later) occurrence chosen
``capture-fallback``   a live POS time was implausibly far from the corrected capture time; the
                       corrected capture time is used instead
``file-fallback``      a batch-file time was outside the file's own timeline (after the file, or
                       older than the maximum age before it); the file's time is used instead
=====================  ==========================================================================

Live records (captured through the API or CLI) are judged against the corrected capture time within
``max_pos_skew_s`` (register clocks drift). Batch records (``origin`` ``file:...``) are the record of
when the sale happened however late the file arrives: they are judged against the file's own
timeline (``body["batch"]["file_time"]``, the file's modification time on the agent, corrected by θ
like the capture time; the import moment for bodies without it), and trusted from
``max_batch_age_s`` before it up to ``max_pos_skew_s`` after it.

An ambiguous fall-back time takes the fold that keeps the register's records in seq order (the
previous record of the register must not be later). When seq order allows both folds (an equal
instant is a tie, not an order), the fold nearest the corrected capture time is taken for live
records; for batch records the capture time is the import moment and says nothing, so the first
occurrence is taken. ``fold_by_seq``, ``fold_by_capture_time`` or ``fold_default`` says which rule
decided; ``fold_out_of_order`` marks a time whose both folds precede the previous record.

``flags`` (sorted) may hold ``dst_gap``, ``dst_fold`` (with one of the fold flags above),
``agent_clock_corrected``, ``no_clock_estimate``, ``pos_time_implausible``, ``batch_time_after_file``,
``batch_time_too_old``. All numbers are integers (milliseconds), so the result can be part of
canonical JSON.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from typing import Any
from zoneinfo import ZoneInfo

from sync_protocol.clock import ClockSample, iso

DEFAULT_TOLERANCE_MS = 2_000
DEFAULT_MAX_POS_SKEW_S = 24 * 3600
DEFAULT_MAX_BATCH_AGE_S = 35 * 24 * 3600

METHODS = ("offset", "zone", "zone-gap-shifted", "zone-fold-0", "zone-fold-1", "capture-fallback", "file-fallback")
FALLBACK_METHODS = ("capture-fallback", "file-fallback")


@dataclass(frozen=True)
class TimePolicy:
    """Thresholds of normalization.

    Attributes:
        tolerance_ms: Agent clock offsets up to this size are left uncorrected.
        max_pos_skew_s: A live POS time further than this from the corrected capture time is not
            trusted; a batch-file time may be this much after the file's time.
        max_batch_age_s: A batch-file time may be this much older than the file's time.
    """

    tolerance_ms: float = DEFAULT_TOLERANCE_MS
    max_pos_skew_s: float = DEFAULT_MAX_POS_SKEW_S
    max_batch_age_s: float = DEFAULT_MAX_BATCH_AGE_S


def parse_instant(value: datetime | str) -> datetime:
    """An aware datetime from an ISO 8601 string or datetime.

    Raises:
        ValueError: when the value is naive or not ISO 8601.
    """
    moment = value if isinstance(value, datetime) else datetime.fromisoformat(value)
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError(f"{value!r} has no UTC offset")
    return moment


@dataclass(frozen=True)
class LocalResolution:
    """How a naive wall-clock time maps to UTC in a zone.

    Attributes:
        utc: The chosen instant.
        method: ``zone``, ``zone-gap-shifted``, ``zone-fold-0`` or ``zone-fold-1``.
        flags: ``dst_gap`` or ``dst_fold`` when the wall time was not simple.
    """

    utc: datetime
    method: str
    flags: tuple[str, ...] = ()


def _wall(moment: datetime, zone: ZoneInfo) -> datetime:
    return moment.astimezone(zone).replace(tzinfo=None, fold=0)


def resolve_local(
    naive: datetime,
    zone: ZoneInfo,
    *,
    not_before: datetime | None = None,
    near: datetime | None = None,
) -> LocalResolution:
    """Interpret a naive wall time in ``zone``.

    A time inside a spring-forward gap is shifted forward by the gap (02:30 in Berlin on the spring
    day becomes 03:30 CEST). An ambiguous fall-back time takes the fold that is not before
    ``not_before`` (the previous record of the same register, so records stay in seq order). When
    both folds are (an equal instant is a tie, not an order), or there is no previous record, it
    takes the fold nearest ``near`` (the corrected capture time), else the first one. Nothing here
    assumes a one-hour shift: the two folds are whatever the zone's rules give (30 minutes on Lord Howe).
    """
    naive = naive.replace(tzinfo=None, fold=0)
    first = naive.replace(tzinfo=zone, fold=0)
    second = naive.replace(tzinfo=zone, fold=1)
    u0 = first.astimezone(UTC)
    u1 = second.astimezone(UTC)
    if u0 == u1:
        return LocalResolution(u0, "zone")
    if _wall(u0, zone) != naive:
        # In a gap, fold=0 applies the offset from before the transition, which lands the instant
        # after the gap: exactly "shifted forward by the gap".
        return LocalResolution(u0, "zone-gap-shifted", ("dst_gap",))
    early, late = sorted((u0, u1))
    allowed = [u for u in (early, late) if not_before is None or u >= not_before]
    if len(allowed) == 1:
        chosen, basis = allowed[0], "fold_by_seq"
    elif not allowed:
        chosen, basis = late, "fold_out_of_order"  # both precede the previous record: the later breaks order least
    elif near is not None:
        chosen = early if abs(early - near) <= abs(late - near) else late
        basis = "fold_by_capture_time"
    else:
        chosen, basis = early, "fold_default"
    method = "zone-fold-0" if chosen == early else "zone-fold-1"
    return LocalResolution(chosen, method, ("dst_fold", basis))


def _clock_fields(clock: ClockSample | Mapping[str, Any] | None) -> tuple[float, float] | None:
    if clock is None:
        return None
    if isinstance(clock, ClockSample):
        return clock.theta_ms, clock.delta_ms
    theta = clock.get("theta_ms")
    if theta is None:
        return None
    delta = clock.get("delta_ms")
    return float(theta), float(delta) if delta is not None else 0.0


def correct_capture(
    captured_at: str | datetime,
    clock: ClockSample | Mapping[str, Any] | None,
    policy: TimePolicy = TimePolicy(),
) -> tuple[datetime, dict[str, Any]]:
    """The agent capture time corrected by θ when |θ| exceeds the tolerance.

    Returns:
        The corrected instant and the partial quality block (``theta_ms``, ``uncertainty_ms``,
        ``flags``). θ is hub clock minus agent clock, so the hub-time of an agent reading is
        ``reading + θ``.
    """
    moment = parse_instant(captured_at)
    fields = _clock_fields(clock)
    if fields is None:
        return moment, {"theta_ms": None, "uncertainty_ms": None, "flags": ["no_clock_estimate"]}
    theta, delta = fields
    quality: dict[str, Any] = {
        "theta_ms": int(round(theta)),
        "uncertainty_ms": int(round(max(delta, 0.0) / 2)),
        "flags": [],
    }
    if abs(theta) > policy.tolerance_ms:
        moment = moment + timedelta(milliseconds=theta)
        quality["flags"].append("agent_clock_corrected")
    return moment, quality


def is_batch(body: Mapping[str, Any]) -> bool:
    """True for a record imported from a batch file (franchise drop), whose times are history."""
    return str(body.get("origin", "")).startswith("file:")


@lru_cache(maxsize=256)
def _received_iso(text: str) -> str:
    """The hub receive time as written in events: every record of a burst shares one, so it is cached."""
    return iso(parse_instant(text), z=True)


def normalize_times(
    body: Mapping[str, Any],
    *,
    tz: str,
    clock: ClockSample | Mapping[str, Any] | None,
    hub_received_at: datetime | str,
    prev_occurred_at_utc: datetime | str | None = None,
    policy: TimePolicy = TimePolicy(),
) -> dict[str, Any]:
    """The normalized time fields of one record.

    Args:
        body: The parsed record body (``captured_at``, ``origin``, ``batch`` and ``txn.occurred_at``
            are read).
        tz: The store's IANA zone, e.g. ``Europe/Berlin``.
        clock: The agent clock estimate (θ, δ) in force for this record, or None when unknown.
        hub_received_at: When the hub received the burst (aware).
        prev_occurred_at_utc: The normalized ``occurred_at_utc`` of the previous record (by seq) of
            the same register, used to choose the fold of an ambiguous time.
        policy: Tolerances.

    Raises:
        ValueError: when ``captured_at``, ``batch.file_time`` or ``occurred_at`` is not ISO 8601,
            or the zone is unknown.
    """
    zone = ZoneInfo(tz)
    captured_utc, quality = correct_capture(body["captured_at"], clock, policy)
    flags: list[str] = list(quality["flags"])
    prev = parse_instant(prev_occurred_at_utc) if prev_occurred_at_utc is not None else None
    batch = is_batch(body)
    timeline = captured_utc
    if batch:
        file_time = (body.get("batch") or {}).get("file_time")
        if file_time is not None:
            timeline, _ = correct_capture(file_time, clock, policy)

    raw = datetime.fromisoformat(body["txn"]["occurred_at"])
    if raw.tzinfo is not None and raw.utcoffset() is not None:
        occurred, method = raw.astimezone(UTC), "offset"
    else:
        # A batch record's capture time is the import moment: no evidence for a fold.
        res = resolve_local(raw, zone, not_before=prev, near=None if batch else captured_utc)
        occurred, method = res.utc, res.method
        flags.extend(res.flags)

    skew_ms = int(round((occurred - timeline).total_seconds() * 1000))
    if not batch:
        if abs(skew_ms) > policy.max_pos_skew_s * 1000:
            flags.append("pos_time_implausible")
            occurred, method = captured_utc, "capture-fallback"
    elif skew_ms > policy.max_pos_skew_s * 1000:
        flags.extend(("pos_time_implausible", "batch_time_after_file"))
        occurred, method = timeline, "file-fallback"
    elif -skew_ms > policy.max_batch_age_s * 1000:
        flags.extend(("pos_time_implausible", "batch_time_too_old"))
        occurred, method = timeline, "file-fallback"

    return {
        "occurred_at_utc": iso(occurred, z=True),
        "captured_at_utc": iso(captured_utc, z=True),
        "hub_received_at": _received_iso(hub_received_at)
        if isinstance(hub_received_at, str)
        else iso(parse_instant(hub_received_at), z=True),
        "time_quality": {
            "method": method,
            "theta_ms": quality["theta_ms"],
            "uncertainty_ms": quality["uncertainty_ms"],
            "pos_skew_ms": skew_ms,
            "flags": sorted(set(flags)),
        },
    }
