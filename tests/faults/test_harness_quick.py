"""The quick fault harness, run in CI: 30 crash trials, every proxy fault, a shortened long outage.

The full size (``make faults``) is the same code with 200 trials and 259,200 records.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from storesync_harness.crashmatrix import CRASH_KINDS, PROXY_KINDS, run_matrix
from storesync_harness.faults import format_report
from storesync_harness.longoutage import run_long_outage

pytestmark = pytest.mark.faults


def test_crash_matrix_and_every_proxy_fault_keep_the_promise(tmp_path: Path) -> None:
    result = run_matrix(tmp_path, crash_trials=30, proxy_rounds=1, seed=7, verify_every=5)
    report = format_report(result, None)
    assert result.failures == [], report
    for kind in (*CRASH_KINDS, *PROXY_KINDS):
        assert result.tallies[kind].trials >= 1, f"{kind} never ran\n{report}"
        assert result.tallies[kind].faults_injected >= 1, f"{kind} never struck\n{report}"
    final = result.final
    assert final.acknowledged > 300, report
    assert (final.lost, final.duplicated, final.unexpected, final.chain_errors) == (0, 0, 0, 0), report
    assert (final.mismatched, final.bad_signatures, final.event_problems) == (0, 0, 0), report
    assert final.events_checked == ["archive", "stream"], report
    assert final.found == final.acknowledged
    assert final.agent_verify_ok is True
    assert result.ok and "RESULT: PASS" in report


def test_shortened_long_outage_catches_up_exactly(tmp_path: Path) -> None:
    result = run_long_outage(tmp_path, 20_000, seed=3)
    report = format_report(None, result)
    assert result.ok, report
    assert result.verdict.found == result.verdict.acknowledged >= 20_000
    assert result.verdict.events_checked == ["events"] and result.verdict.event_problems == 0, report
    assert result.pos_posts > 20, report
    assert result.catchup_s < 120, report
    assert result.p99_ms < 1000, report
