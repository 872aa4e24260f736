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


FOLDS = [
    ("Europe/Berlin", "2026-10-25T02:30:00", "2026-10-25T00:30:00.000Z", "2026-10-25T01:30:00.000Z"),
    ("America/New_York", "2026-11-01T01:30:00", "2026-11-01T05:30:00.000Z", "2026-11-01T06:30:00.000Z"),
    # Lord Howe falls back by 30 minutes: 01:45 happens at +11:00 and again at +10:30.
    ("Australia/Lord_Howe", "2026-04-05T01:45:00", "2026-04-04T14:45:00.000Z", "2026-04-04T15:15:00.000Z"),
]


def _at(iso: str, minutes: float = 0) -> str:
    return (datetime.fromisoformat(iso.replace("Z", "+00:00")) + timedelta(minutes=minutes)).isoformat()


@pytest.mark.parametrize(("tz", "wall", "first", "second"), FOLDS)
def test_fall_back_fold_that_seq_order_excludes_is_never_taken(tz: str, wall: str, first: str, second: str) -> None:
    # The previous record of this register is already after the first occurrence: only the second
    # keeps seq order, even though the capture clock points at the first.
    out = norm(wall, tz, captured_at=_at(first, 1), prev=_at(first, 1))
    assert out["occurred_at_utc"] == second
    assert out["time_quality"]["method"] == "zone-fold-1"
    assert {"dst_fold", "fold_by_seq"} <= set(out["time_quality"]["flags"])


@pytest.mark.parametrize(("tz", "wall", "first", "second"), FOLDS)
def test_when_seq_order_allows_both_folds_the_corrected_capture_time_decides(
    tz: str, wall: str, first: str, second: str
) -> None:
    before_first = _at(first, -5)
    out = norm(wall, tz, captured_at=_at(first, 0.5), prev=before_first)
    assert (out["occurred_at_utc"], out["time_quality"]["method"]) == (first, "zone-fold-0")
    assert "fold_by_capture_time" in out["time_quality"]["flags"]
    out = norm(wall, tz, captured_at=_at(second, 0.5), prev=before_first)
    assert (out["occurred_at_utc"], out["time_quality"]["method"]) == (second, "zone-fold-1")


@pytest.mark.parametrize(("tz", "wall", "first", "second"), FOLDS)
def test_a_tie_with_the_previous_record_is_not_an_order(tz: str, wall: str, first: str, second: str) -> None:
    """Two sales at the same wall time in the fold: the second, captured a shift later, is the second fold."""
    out = norm(wall, tz, captured_at=_at(second, 0.2), prev=first)  # prev IS the first occurrence
    assert (out["occurred_at_utc"], out["time_quality"]["method"]) == (second, "zone-fold-1")
    assert {"dst_fold", "fold_by_capture_time"} <= set(out["time_quality"]["flags"])
    out = norm(wall, tz, captured_at=_at(first, 0.2), prev=first)  # the same sale time, captured at once
    assert (out["occurred_at_utc"], out["time_quality"]["method"]) == (first, "zone-fold-0")


def test_fold_without_previous_record_takes_the_occurrence_nearest_the_capture_time() -> None:
    out = norm("2026-10-25T02:30:00", "Europe/Berlin", captured_at="2026-10-25T01:31:00+00:00")
    assert out["occurred_at_utc"] == "2026-10-25T01:30:00.000Z"
    out = norm("2026-10-25T02:30:00", "Europe/Berlin", captured_at="2026-10-25T00:31:00+00:00")
    assert out["occurred_at_utc"] == "2026-10-25T00:30:00.000Z"


@pytest.mark.parametrize("tz", ["Europe/Berlin", "Australia/Lord_Howe"])
def test_a_register_through_the_fall_back_hour_stays_in_order_and_true(tz: str) -> None:
    """Sales every few minutes through the repeated wall-clock span, each captured when it happened."""
    zone = ZoneInfo(tz)
    day = {"Europe/Berlin": datetime(2026, 10, 25), "Australia/Lord_Howe": datetime(2026, 4, 5)}[tz]
    start = datetime(day.year, day.month, day.day, 0, 40, tzinfo=zone).astimezone(ZoneInfo("UTC"))
    prev = None
    for step in range(0, 200, 7):
        instant = start + timedelta(minutes=step)
        wall = instant.astimezone(zone).replace(tzinfo=None).isoformat()
        out = norm(wall, tz, captured_at=(instant + timedelta(seconds=3)).isoformat(), prev=prev)
        assert out["occurred_at_utc"] == instant.isoformat(timespec="milliseconds").replace("+00:00", "Z"), wall
        prev = out["occurred_at_utc"]


def test_batch_records_take_the_first_fold_when_seq_order_allows_both() -> None:
    src = body("2026-10-25T02:30:00", captured_at="2026-11-22T10:16:00.000+01:00")
    src["origin"] = "file:weekend.jsonl"
    src["batch"] = {"file_time": "2026-10-26T08:00:00.000+01:00", "file_time_source": "mtime"}
    out = normalize_times(src, tz="Europe/Berlin", clock=None, hub_received_at=RECEIVED)
    assert out["occurred_at_utc"] == "2026-10-25T00:30:00.000Z"
    assert {"dst_fold", "fold_default"} <= set(out["time_quality"]["flags"])
    out = normalize_times(
        src, tz="Europe/Berlin", clock=None, hub_received_at=RECEIVED, prev_occurred_at_utc="2026-10-25T00:31:00Z"
    )
    assert out["occurred_at_utc"] == "2026-10-25T01:30:00.000Z"


# ------------------------------------------------------------------------------ batch-file times


def batch_body(occurred_at: str, file_time: str | None, captured_at: str = "2026-12-01T09:00:00.000+01:00") -> dict:
    src = body(occurred_at, captured_at)
    src["origin"] = "file:franchise.csv"
    if file_time is not None:
        src["batch"] = {"file_time": file_time, "file_time_source": "mtime"}
    return src


def test_a_late_file_keeps_its_sale_times() -> None:
    """A weekend's file imported a week later: the sales stay on their business day."""
    src = batch_body("2026-11-21T18:05:00+01:00", "2026-11-22T23:00:00.000+01:00")
    out = normalize_times(src, tz="Europe/Berlin", clock=None, hub_received_at=RECEIVED)
    assert out["occurred_at_utc"] == "2026-11-21T17:05:00.000Z"
    assert out["time_quality"]["method"] == "offset"
    assert "pos_time_implausible" not in out["time_quality"]["flags"]


def test_batch_times_are_judged_against_the_file_not_the_import_moment() -> None:
    # A month-end catch-up: 34 days before the file is still trusted (default maximum age 35 days).
    ok = normalize_times(
        batch_body("2026-10-28T12:00:00+01:00", "2026-12-01T08:00:00.000+01:00"),
        tz="Europe/Berlin", clock=None, hub_received_at=RECEIVED,
    )  # fmt: skip
    assert ok["time_quality"]["method"] == "offset"
    # 40 days before the file: not trusted; falls back to the file's time, flagged.
    old = normalize_times(
        batch_body("2026-10-22T12:00:00+01:00", "2026-12-01T08:00:00.000+01:00"),
        tz="Europe/Berlin", clock=None, hub_received_at=RECEIVED,
    )  # fmt: skip
    q = old["time_quality"]
    assert q["method"] == "file-fallback" and old["occurred_at_utc"] == "2026-12-01T07:00:00.000Z"
    assert {"pos_time_implausible", "batch_time_too_old"} <= set(q["flags"])
    # Two days AFTER the file was written: impossible, falls back.
    later = normalize_times(
        batch_body("2026-12-03T12:00:00+01:00", "2026-12-01T08:00:00.000+01:00"),
        tz="Europe/Berlin", clock=None, hub_received_at=RECEIVED,
    )  # fmt: skip
    assert later["time_quality"]["method"] == "file-fallback"
    assert "batch_time_after_file" in later["time_quality"]["flags"]


def test_batch_maximum_age_is_configurable_and_file_time_is_corrected_by_theta() -> None:
    src = batch_body("2026-11-20T12:00:00+01:00", "2026-12-01T08:00:00.000+01:00")
    out = normalize_times(
        src, tz="Europe/Berlin", clock=None, hub_received_at=RECEIVED, policy=TimePolicy(max_batch_age_s=7 * 86400)
    )
    assert out["time_quality"]["method"] == "file-fallback"
    clock = {"theta_ms": -3600_000.0, "delta_ms": 20.0}  # the agent's clock is an hour fast
    old = normalize_times(
        batch_body("2026-10-22T12:00:00+01:00", "2026-12-01T08:00:00.000+01:00"),
        tz="Europe/Berlin", clock=clock, hub_received_at=RECEIVED,
    )  # fmt: skip
    assert old["occurred_at_utc"] == "2026-12-01T06:00:00.000Z"


def test_batch_body_without_file_time_is_judged_against_the_import_moment() -> None:
    src = batch_body("2026-11-03T12:00:00+01:00", None, captured_at="2026-12-01T09:00:00.000+01:00")
    out = normalize_times(src, tz="Europe/Berlin", clock=None, hub_received_at=RECEIVED)
    assert out["time_quality"]["method"] == "offset"  # 28 days: within the batch window


def test_live_capture_keeps_its_window() -> None:
    src = body("2026-11-21T18:05:00+01:00", captured_at="2026-11-28T10:00:00.000+01:00")
    out = normalize_times(src, tz="Europe/Berlin", clock=None, hub_received_at=RECEIVED)
    assert out["time_quality"]["method"] == "capture-fallback"


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
