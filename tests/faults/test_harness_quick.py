"""The quick fault harness, run in CI: one crash trial of every kind, every proxy fault, a shortened long outage.

The crash kinds and the proxy faults run on two rigs of their own, so the two tests can run side by side
on two workers. ``make faults`` is the same code at full size: 200 crash trials (40 of every kind), two
rounds of every proxy fault and the 72-hour outage (259,200 records).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from storesync_harness.crashmatrix import CRASH_KINDS, PROXY_KINDS, MatrixResult, run_matrix
from storesync_harness.faults import format_report
from storesync_harness.longoutage import run_long_outage

pytestmark = pytest.mark.faults
# The POS really sold through the trials (seed 7 acknowledged 63 and 571 sales on the idle machine).
MIN_CRASH_ACKS = 30
MIN_PROXY_ACKS = 200


def _assert_kept_the_promise(result: MatrixResult, kinds: tuple[str, ...], min_acknowledged: int) -> None:
    report = format_report(result, None)
    print(report)
    assert result.failures == [], report
    for kind in kinds:
        assert result.tallies[kind].trials >= 1, f"{kind} never ran\n{report}"
        assert result.tallies[kind].faults_injected >= 1, f"{kind} never struck\n{report}"
    final = result.final
    assert final.acknowledged > min_acknowledged, report
    assert (final.lost, final.duplicated, final.unexpected, final.chain_errors) == (0, 0, 0, 0), report
    assert (final.mismatched, final.bad_signatures, final.event_problems) == (0, 0, 0), report
    assert final.events_checked == ["archive", "stream"], report
    assert final.found == final.acknowledged
    assert final.agent_verify_ok is True
    assert result.ok and "RESULT: PASS" in report


def test_every_crash_kind_keeps_the_promise(tmp_path: Path) -> None:
    result = run_matrix(tmp_path, crash_trials=len(CRASH_KINDS), proxy_rounds=0, seed=7, verify_every=2)
    assert [result.tallies[k].trials for k in CRASH_KINDS] == [1] * len(CRASH_KINDS), format_report(result, None)
    _assert_kept_the_promise(result, CRASH_KINDS, MIN_CRASH_ACKS)


def test_every_proxy_fault_keeps_the_promise(tmp_path: Path) -> None:
    result = run_matrix(tmp_path, crash_trials=0, proxy_rounds=1, seed=7, verify_every=4)
    _assert_kept_the_promise(result, PROXY_KINDS, MIN_PROXY_ACKS)


def test_shortened_long_outage_catches_up_exactly(tmp_path: Path) -> None:
    result = run_long_outage(tmp_path, 20_000, seed=3)
    report = format_report(None, result)
    assert result.ok, report
    assert result.verdict.found == result.verdict.acknowledged >= 20_000
    assert result.verdict.events_checked == ["events"] and result.verdict.event_problems == 0, report
    assert result.pos_posts > 20, report
    assert result.catchup_s < 120, report
    assert result.p99_ms < 1000, report
