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
``capture-fallback``   the POS time was implausibly far from the corrected capture time; the
                       corrected capture time is used instead
=====================  ==========================================================================

``flags`` (sorted) may hold ``dst_gap``, ``dst_fold``, ``agent_clock_corrected``,
``no_clock_estimate``, ``pos_time_implausible``. All numbers are integers (milliseconds), so the
result can be part of canonical JSON.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sync_protocol.clock import ClockSample, iso

DEFAULT_TOLERANCE_MS = 2_000
DEFAULT_MAX_POS_SKEW_S = 24 * 3600

METHODS = ("offset", "zone", "zone-gap-shifted", "zone-fold-0", "zone-fold-1", "capture-fallback")


@dataclass(frozen=True)
class TimePolicy:
    """Thresholds of normalization.

    Attributes:
        tolerance_ms: Agent clock offsets up to this size are left uncorrected.
        max_pos_skew_s: A POS time further than this from the corrected capture time is not trusted.
    """

    tolerance_ms: float = DEFAULT_TOLERANCE_MS
    max_pos_skew_s: float = DEFAULT_MAX_POS_SKEW_S


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
    day becomes 03:30 CEST). An ambiguous fall-back time takes the earliest occurrence that is not
    before ``not_before`` (the previous record of the same register, so records stay in seq order);
    without ``not_before`` it takes the occurrence nearest to ``near`` (the corrected capture time),
    else the first one.
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
    if not_before is not None:
        if early >= not_before:
            chosen = early
        elif late >= not_before:
            chosen = late
        else:
            chosen = late  # both precede the previous record: the later one breaks order least
    elif near is not None:
        chosen = early if abs(early - near) <= abs(late - near) else late
    else:
        chosen = early
    return LocalResolution(chosen, "zone-fold-0" if chosen == early else "zone-fold-1", ("dst_fold",))


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
        body: The parsed record body (``captured_at`` and ``txn.occurred_at`` are read).
        tz: The store's IANA zone, e.g. ``Europe/Berlin``.
        clock: The agent clock estimate (θ, δ) in force for this record, or None when unknown.
        hub_received_at: When the hub received the burst (aware).
        prev_occurred_at_utc: The normalized ``occurred_at_utc`` of the previous record (by seq) of
            the same register, used to choose the fold of an ambiguous time.
        policy: Tolerances.

    Raises:
        ValueError: when ``captured_at`` or ``occurred_at`` is not ISO 8601, or the zone is unknown.
    """
    zone = ZoneInfo(tz)
    captured_utc, quality = correct_capture(body["captured_at"], clock, policy)
    flags: list[str] = list(quality["flags"])
    prev = parse_instant(prev_occurred_at_utc) if prev_occurred_at_utc is not None else None

    raw = datetime.fromisoformat(body["txn"]["occurred_at"])
    if raw.tzinfo is not None and raw.utcoffset() is not None:
        occurred, method = raw.astimezone(UTC), "offset"
    else:
        res = resolve_local(raw, zone, not_before=prev, near=captured_utc)
        occurred, method = res.utc, res.method
        flags.extend(res.flags)

    skew_ms = int(round((occurred - captured_utc).total_seconds() * 1000))
    if abs(skew_ms) > policy.max_pos_skew_s * 1000:
        flags.append("pos_time_implausible")
        occurred, method = captured_utc, "capture-fallback"

    return {
        "occurred_at_utc": iso(occurred, z=True),
        "captured_at_utc": iso(captured_utc, z=True),
        "hub_received_at": iso(parse_instant(hub_received_at), z=True),
        "time_quality": {
            "method": method,
            "theta_ms": quality["theta_ms"],
            "uncertainty_ms": quality["uncertainty_ms"],
            "pos_skew_ms": skew_ms,
            "flags": sorted(set(flags)),
        },
    }
