"""Plain unit tests of the TUI's pure formatting."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from tui import format as fmt

NOW = datetime(2026, 11, 22, 16, 30, tzinfo=UTC)
BERLIN = fmt.zone("Europe/Berlin")


def status(**kw: object) -> dict[str, object]:
    base: dict[str, object] = {
        "enrolled": True,
        "pending": 0,
        "heartbeat_at": (NOW - timedelta(seconds=3)).isoformat(),
        "last_sync_result": "ok",
        "last_success_at": (NOW - timedelta(minutes=1)).isoformat(),
        "blocked": None,
    }
    base.update(kw)
    return base


def test_durations_and_counts() -> None:
    assert fmt.duration(None) == "-"
    assert fmt.duration(2) == "just now"
    assert fmt.duration(40) == "40 s"
    assert fmt.duration(180) == "3 min"
    assert fmt.duration(2 * 3600 + 5 * 60) == "2 h 05 min"
    assert fmt.duration(3 * 86400) == "3 days"
    assert fmt.count(1234567) == "1,234,567"
    assert fmt.count(None) == "-"
    assert fmt.plural(1, "sale") == "1 sale"
    assert fmt.plural(3, "sale") == "3 sales"
    assert fmt.age(None, NOW) == "never"
    assert fmt.age(NOW - timedelta(minutes=3), NOW) == "3 min ago"


def test_clock_in_store_zone() -> None:
    assert fmt.clock(NOW, NOW, BERLIN) == "17:30"
    assert fmt.clock(NOW - timedelta(days=1), NOW, BERLIN) == "Sat 17:30"
    assert fmt.clock(NOW - timedelta(days=30), NOW, BERLIN) == "23 Oct 18:30"
    assert fmt.clock(None, NOW) == "never"
    assert fmt.zone("Not/AZone") is None


def test_status_lines() -> None:
    assert fmt.status_line(None, NOW).level == "error"
    assert fmt.status_line(status(enrolled=False), NOW).text == "Not set up"
    assert fmt.status_line(status(), NOW, BERLIN).text == "All synced"
    assert fmt.status_line(status(pending=5, last_sync_result="ok"), NOW).text == "Syncing 5"
    offline = fmt.status_line(
        status(pending=42, last_sync_result="offline", last_success_at="2026-11-22T14:40:00+00:00"), NOW, BERLIN
    )
    assert (offline.text, offline.level) == ("Offline since 15:40, 42 sales waiting", "warn")
    blocked = fmt.status_line(status(pending=2, blocked={"code": "conflict", "seq": 7, "message": "x"}), NOW)
    assert blocked.text == "Blocked: Head office holds a different version of a sale"
    down = fmt.status_line(status(pending=3, heartbeat_at=(NOW - timedelta(minutes=41)).isoformat()), NOW, BERLIN)
    assert down.text == "Agent not running · 3 sales waiting"
    assert "41 min ago, at 16:49" in down.detail
    assert fmt.status_line(status(heartbeat_at=None), NOW).text == "Agent not running"


def test_catching_up_shows_records_and_eta_while_a_backlog_drains() -> None:
    draining = status(pending=12_000, catch_up={"rate_per_s": 120.0, "eta_s": 100.0, "window_s": 50.0})
    line = fmt.status_line(draining, NOW)
    assert (line.text, line.level) == ("Catching up: 12,000 records, ~2 min (120/s)", "busy")
    assert fmt.catch_up_text(status(pending=1, catch_up={"rate_per_s": 900.0, "eta_s": 0.1})) == (
        "Catching up: 1 record, under 5 s (900/s)"
    )
    assert fmt.catch_up_text(status(pending=0, catch_up={"rate_per_s": 1.0, "eta_s": 3.0})) is None
    assert fmt.status_line(status(pending=5, catch_up=None), NOW).text == "Syncing 5"  # nothing moved lately
    offline = status(pending=5, last_sync_result="offline", catch_up={"rate_per_s": 1.0, "eta_s": 5.0})
    assert fmt.status_line(offline, NOW).text.startswith("Offline")  # an outage is said first


def test_block_explanations_name_the_sale_and_a_next_step() -> None:
    for code in ("conflict", "record_refused", "gap_unrecoverable", "key_revoked", "bad_receipt", "weird"):
        p = fmt.explain_block({"code": code, "seq": 12, "message": "why"})
        assert p is not None and p.title and p.next_step
    conflict = fmt.explain_block({"code": "conflict", "seq": 12, "message": "m"})
    assert conflict is not None and "#12" in conflict.explanation and conflict.ref == "12"
    assert fmt.explain_block(None) is None


def test_hub_bursts_progress_and_token() -> None:
    assert fmt.hub_text(status(last_sync_at=NOW.isoformat()), NOW, BERLIN) == "reachable 17:30"
    assert fmt.hub_text(status(last_sync_result="never"), NOW) == "not contacted yet"
    never = fmt.hub_text(status(last_sync_result="offline", last_success_at=None), NOW)
    assert never == "unreachable; no sync has succeeded yet" and "since never" not in never
    assert fmt.sales_today({"sale": 1234, "return": 2, "void": 1}) == ("1,234", "2 ret · 1 void")
    assert fmt.sales_today({"sale": 0}) == ("0", "")
    assert fmt.burst_result("ok", 200) == "sent"
    assert fmt.burst_result("conflict", 409) == "conflict (409)"
    assert fmt.burst_records(0, 5, None) == "check"
    assert fmt.burst_records(120, 5, 124) == "120 (#5-#124)"
    assert fmt.progress_text(24, 60) == "24 / 60 (40%)"
    assert fmt.progress_text(24, None) == "24 so far"
    assert fmt.progress_text(0, 0, "rejected") == "refused whole"
    assert fmt.progress_text(40, 40, "partial") == "done"
    token = "sat_0123456789abcdef"
    assert fmt.mask_token(token) == "set" and fmt.mask_token(None) == "(none)"
    assert not any(part in fmt.mask_token(token) for part in (token[:2], token[-2:], "sat", "ef"))
    assert fmt.lag_text(None) == "-"


def test_drop_and_chain_problems() -> None:
    whole = fmt.drop_problem("a.csv", "rejected", 0, "empty file")
    assert "empty file" in whole.explanation and whole.ref == "a.csv"
    partial = fmt.drop_problem("b.jsonl", "partial", 3, None)
    assert "3 transactions" in partial.explanation
    assert "#9" in fmt.chain_problem(9, "chain link broken").explanation
