"""Time stamps as the project writes them, and the NTP-style clock offset estimate (DESIGN §5).

:func:`iso` is the one formatter of an instant (ISO 8601 with milliseconds) and :func:`now_iso` the
one "now as ISO" helper, for the agent (local time with offset for ``captured_at``, UTC for its
bookkeeping) and the hub (UTC with a ``Z`` suffix).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime


def iso(moment: datetime, *, z: bool = False) -> str:
    """``moment`` as ISO 8601 with milliseconds; with ``z``, in UTC with a ``Z`` suffix (``…T09:15:03.120Z``)."""
    if z:
        return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    return moment.isoformat(timespec="milliseconds")


def now_iso(*, local: bool = False, z: bool = False) -> str:
    """Now as ISO 8601 with milliseconds: UTC (``+00:00``, or ``Z`` with ``z``), or local time with its offset."""
    return iso(datetime.now().astimezone() if local else datetime.now(UTC), z=z)


@dataclass(frozen=True)
class ClockSample:
    """One exchange's estimate.

    Attributes:
        theta_ms: Hub clock minus agent clock, in milliseconds (positive: the agent is behind).
        delta_ms: Round-trip delay less hub processing time; the uncertainty is ``delta_ms / 2``.
        sampled_at: Agent time of the exchange (ISO 8601, UTC).
    """

    theta_ms: float
    delta_ms: float
    sampled_at: str

    def as_dict(self) -> dict[str, object]:
        return {
            "theta_ms": round(self.theta_ms, 3),
            "delta_ms": round(self.delta_ms, 3),
            "sampled_at": self.sampled_at,
        }

    @classmethod
    def from_dict(cls, doc: dict[str, object]) -> ClockSample:
        return cls(float(doc["theta_ms"]), float(doc["delta_ms"]), str(doc["sampled_at"]))  # type: ignore[arg-type]


def estimate(t1: datetime, t2: datetime, t3: datetime, t4: datetime) -> ClockSample:
    """θ = ((T2−T1)+(T3−T4))/2 and δ = (T4−T1)−(T3−T2); T1/T4 agent clock, T2/T3 hub clock."""
    ms = 1000.0
    theta = ((t2 - t1).total_seconds() + (t3 - t4).total_seconds()) / 2 * ms
    delta = ((t4 - t1).total_seconds() - (t3 - t2).total_seconds()) * ms
    return ClockSample(theta, max(delta, 0.0), iso(t4.astimezone(UTC)))


def better(current: ClockSample | None, new: ClockSample) -> ClockSample:
    """Keep the sample with the smallest round-trip delay."""
    return new if current is None or new.delta_ms <= current.delta_ms else current
