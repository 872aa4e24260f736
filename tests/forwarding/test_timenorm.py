"""Time normalization (DESIGN §5): zones, DST gaps and folds, clock offsets, implausible POS clocks."""

from __future__ import annotations

import copy
import json
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from forwarding_support import body_for
from hypothesis import given, settings
from hypothesis import strategies as st

from cloud_hub.timenorm import TimePolicy, normalize_times, resolve_local
from storesync_harness.pos import Pos
from sync_protocol.clock import ClockSample

RECEIVED = "2026-11-22T09:30:00.000Z"


def body(occurred_at: str, captured_at: str = "2026-11-22T10:16:00.000+01:00") -> dict:
    txn = Pos("R1").sale()
    txn["occurred_at"] = occurred_at
    return json.loads(body_for(txn, 1, captured=captured_at))


def norm(occurred_at: str, tz: str, *, captured_at: str, prev: str | None = None, clock=None, **kw) -> dict:
    return normalize_times(
        body(occurred_at, captured_at), tz=tz, clock=clock, hub_received_at=RECEIVED, prev_occurred_at_utc=prev, **kw
    )


# --------------------------------------------------------------------------------- zones and DST


@pytest.mark.parametrize(
    ("tz", "wall", "captured", "utc"),
    [
        # 02:30 does not exist on the spring day: shifted forward by the 1 h gap to 03:30 CEST.
        ("Europe/Berlin", "2026-03-29T02:30:00", "2026-03-29T03:31:00+02:00", "2026-03-29T01:30:00.000Z"),
        ("America/New_York", "2026-03-08T02:30:00", "2026-03-08T03:31:00-04:00", "2026-03-08T07:30:00.000Z"),
        # Lord Howe moves 30 minutes: 02:15 becomes 02:45 (+11:00).
        ("Australia/Lord_Howe", "2026-10-04T02:15:00", "2026-10-04T02:46:00+11:00", "2026-10-03T15:45:00.000Z"),
    ],
)
def test_spring_forward_gap_is_shifted_by_the_gap_and_flagged(tz: str, wall: str, captured: str, utc: str) -> None:
    out = norm(wall, tz, captured_at=captured)
    assert out["occurred_at_utc"] == utc
    assert out["time_quality"]["method"] == "zone-gap-shifted"
    assert "dst_gap" in out["time_quality"]["flags"]


@pytest.mark.parametrize(
    ("tz", "wall", "first", "second"),
    [
        ("Europe/Berlin", "2026-10-25T02:30:00", "2026-10-25T00:30:00.000Z", "2026-10-25T01:30:00.000Z"),
        ("America/New_York", "2026-11-01T01:30:00", "2026-11-01T05:30:00.000Z", "2026-11-01T06:30:00.000Z"),
        ("Australia/Lord_Howe", "2026-04-05T01:45:00", "2026-04-04T14:45:00.000Z", "2026-04-04T15:15:00.000Z"),
    ],
)
def test_fall_back_fold_keeps_the_register_in_seq_order(tz: str, wall: str, first: str, second: str) -> None:
    captured = second.replace("Z", "+00:00")  # capture clock gives no hint here: prev decides
    # The previous record of this register was before the first occurrence: take the first.
    prev = (datetime.fromisoformat(first.replace("Z", "+00:00")) - timedelta(minutes=5)).isoformat()
    out = norm(wall, tz, captured_at=captured, prev=prev)
    assert out["occurred_at_utc"] == first
    assert out["time_quality"]["method"] == "zone-fold-0"
    assert "dst_fold" in out["time_quality"]["flags"]
    # The previous record was already after the first occurrence: only the second keeps seq order.
    prev = (datetime.fromisoformat(first.replace("Z", "+00:00")) + timedelta(minutes=1)).isoformat()
    out = norm(wall, tz, captured_at=captured, prev=prev)
    assert out["occurred_at_utc"] == second
    assert out["time_quality"]["method"] == "zone-fold-1"


def test_fold_without_previous_record_takes_the_occurrence_nearest_the_capture_time() -> None:
    out = norm("2026-10-25T02:30:00", "Europe/Berlin", captured_at="2026-10-25T01:31:00+00:00")
    assert out["occurred_at_utc"] == "2026-10-25T01:30:00.000Z"
    out = norm("2026-10-25T02:30:00", "Europe/Berlin", captured_at="2026-10-25T00:31:00+00:00")
    assert out["occurred_at_utc"] == "2026-10-25T00:30:00.000Z"


def test_a_register_through_the_berlin_fall_back_hour_stays_in_order() -> None:
    walls = ["01:50", "02:10", "02:40", "02:10", "02:40", "03:05"]  # the 02:xx hour happens twice
    prev = None
    seen = []
    for wall in walls:
        out = norm(f"2026-10-25T{wall}:00", "Europe/Berlin", captured_at="2026-10-25T02:10:00+00:00", prev=prev)
        prev = out["occurred_at_utc"]
        seen.append(prev)
    assert seen == sorted(seen) and len(set(seen)) == len(seen)
    assert seen[1] == "2026-10-25T00:10:00.000Z" and seen[3] == "2026-10-25T01:10:00.000Z"


def test_plain_local_time_uses_the_store_zone() -> None:
    out = norm("2026-11-22T10:15:03", "America/New_York", captured_at="2026-11-22T10:15:04-05:00")
    assert out["occurred_at_utc"] == "2026-11-22T15:15:03.000Z"
    assert out["time_quality"]["method"] == "zone"
    assert out["time_quality"]["flags"] == ["no_clock_estimate"]


ZONES = ["Europe/Berlin", "America/New_York", "Australia/Lord_Howe", "Asia/Kathmandu", "UTC"]


@settings(max_examples=300, deadline=None)
@given(
    zone=st.sampled_from(ZONES),
    wall=st.datetimes(min_value=datetime(2025, 1, 1), max_value=datetime(2027, 12, 31)),
)
def test_local_resolution_round_trips_or_shifts_forward_by_the_gap(zone: str, wall: datetime) -> None:
    wall = wall.replace(microsecond=0)
    res = resolve_local(wall, ZoneInfo(zone))
    back = res.utc.astimezone(ZoneInfo(zone)).replace(tzinfo=None, fold=0)
    if res.method == "zone-gap-shifted":
        assert timedelta(0) < back - wall <= timedelta(hours=1)
    else:
        assert back == wall


# ---------------------------------------------------------------------------- offsets and clocks


@pytest.mark.parametrize(
    ("occurred", "utc"),
    [
        ("2026-11-22T10:15:03-05:00", "2026-11-22T15:15:03.000Z"),
        ("2026-11-22T20:00:03.250+05:45", "2026-11-22T14:15:03.250Z"),
        ("2026-10-25T02:30:00+01:00", "2026-10-25T01:30:00.000Z"),  # in the fold hour, yet unambiguous
        ("2026-11-22T09:15:03Z", "2026-11-22T09:15:03.000Z"),
    ],
)
def test_offset_bearing_pos_times_convert_to_utc_without_zone_rules(occurred: str, utc: str) -> None:
    captured = utc.replace("Z", "+00:00")
    out = norm(occurred, "Europe/Berlin", captured_at=captured)
    assert out["occurred_at_utc"] == utc
    assert out["time_quality"]["method"] == "offset"
    assert "dst_fold" not in out["time_quality"]["flags"]


def test_store_clock_three_hours_fast_is_corrected_and_flagged() -> None:
    clock = ClockSample(theta_ms=-3 * 3600 * 1000 + 7.4, delta_ms=41.0, sampled_at="2026-11-22T12:00:00.000Z")
    src = body("2026-11-22T10:15:03", captured_at="2026-11-22T13:15:05.000+01:00")
    before = copy.deepcopy(src)
    out = normalize_times(src, tz="Europe/Berlin", clock=clock, hub_received_at=RECEIVED)
    assert src == before  # the signed values are never touched
    assert out["captured_at_utc"] == "2026-11-22T09:15:05.007Z"
    q = out["time_quality"]
    assert q["theta_ms"] == -10_799_993 and q["uncertainty_ms"] == 20
    assert "agent_clock_corrected" in q["flags"]
    assert out["occurred_at_utc"] == "2026-11-22T09:15:03.000Z" and q["method"] == "zone"
    assert q["pos_skew_ms"] == -2007
    assert out["hub_received_at"] == "2026-11-22T09:30:00.000Z"


def test_small_offset_within_tolerance_is_reported_but_not_applied() -> None:
    out = norm(
        "2026-11-22T10:15:03",
        "Europe/Berlin",
        captured_at="2026-11-22T10:15:05.000+01:00",
        clock={"theta_ms": 1500.0, "delta_ms": 10.0, "sampled_at": "x"},
    )
    assert out["captured_at_utc"] == "2026-11-22T09:15:05.000Z"
    assert out["time_quality"]["theta_ms"] == 1500 and out["time_quality"]["flags"] == []
    tight = norm(
        "2026-11-22T10:15:03",
        "Europe/Berlin",
        captured_at="2026-11-22T10:15:05.000+01:00",
        clock={"theta_ms": 1500.0, "delta_ms": 10.0},
        policy=TimePolicy(tolerance_ms=1000),
    )
    assert tight["captured_at_utc"] == "2026-11-22T09:15:06.500Z"


def test_pos_clock_a_year_off_falls_back_to_the_corrected_capture_time() -> None:
    src = body("2025-11-22T10:15:03", captured_at="2026-11-22T13:15:05.000+01:00")
    before = copy.deepcopy(src)
    clock = {"theta_ms": -3 * 3600 * 1000, "delta_ms": 50.0}
    out = normalize_times(src, tz="Europe/Berlin", clock=clock, hub_received_at=RECEIVED)
    q = out["time_quality"]
    assert q["method"] == "capture-fallback"
    assert set(q["flags"]) == {"pos_time_implausible", "agent_clock_corrected"}
    assert out["occurred_at_utc"] == out["captured_at_utc"] == "2026-11-22T09:15:05.000Z"
    assert q["pos_skew_ms"] < -364 * 86400 * 1000
    assert src == before and src["txn"]["occurred_at"] == "2025-11-22T10:15:03"


def test_implausibility_threshold_is_configurable() -> None:
    kw = {"captured_at": "2026-11-22T12:15:05+01:00"}
    assert norm("2026-11-22T10:15:03", "Europe/Berlin", **kw)["time_quality"]["method"] == "zone"
    out = norm("2026-11-22T10:15:03", "Europe/Berlin", policy=TimePolicy(max_pos_skew_s=3600), **kw)
    assert out["time_quality"]["method"] == "capture-fallback"


def test_result_is_canonical_json_safe() -> None:
    from sync_protocol.canonical import canonical_dumps

    out = norm(
        "2026-03-29T02:30:00",
        "Europe/Berlin",
        captured_at="2026-03-29T03:31:00+02:00",
        clock={"theta_ms": 2500.25, "delta_ms": 3.3},
    )
    canonical_dumps(out)  # no floats anywhere


def test_unknown_zone_and_bad_times_raise() -> None:
    with pytest.raises(Exception):  # noqa: B017 - ZoneInfoNotFoundError or ValueError
        norm("2026-11-22T10:15:03", "Mars/Olympus", captured_at="2026-11-22T10:15:05+01:00")
    with pytest.raises(ValueError):
        normalize_times(
            {"captured_at": "2026-11-22T10:15:05", "txn": {"occurred_at": "2026-11-22T10:15:03"}},
            tz="UTC",
            clock=None,
            hub_received_at=RECEIVED,
        )
