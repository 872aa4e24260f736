"""Drop-import trials at CI size: a franchise file killed and power-cut mid-import keeps the promise.

Two trials of :mod:`storesync_harness.droptrials` (``make faults`` runs 20): one kill trial (the agent,
and in some kills its reader worker processes, kill -9'd at seeded random moments, then restarted)
and one on the power-cut VFS. Every good row of each file must be at the hub once with the file's
content, bad rows reported once and stored never, the file in ``processed/`` once, a second drop
of it a ``duplicate_file``.
"""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from storesync_harness.dropcases import write_case
from storesync_harness.droptrials import run_drop_trials
from storesync_harness.faults import format_report

pytestmark = pytest.mark.faults


def test_two_drop_trials_keep_every_row_once_with_its_content(tmp_path: Path) -> None:
    result = run_drop_trials(tmp_path, 2, seed=3, max_bytes=2_600_000)
    report = format_report(None, None, (), result)
    assert result.failures == [], report
    assert (result.trials, result.power_trials, result.files_acknowledged) == (2, 1, 2), report
    assert result.kills >= 1 and result.cuts >= 1, report
    assert result.rows_acknowledged > 5_000 and result.bad_rows >= 6, report
    assert result.duplicate_drops == 2, report
    assert (result.lost_at_cut, result.mismatched_at_cut) == (0, 0), report
    assert set(result.totals().values()) == {0}, report
    assert [v.events_checked for v in result.final] == [["archive", "stream"]] * 2, report
    assert all(v.agent_verify_ok for v in result.final), report
    assert result.ok and "RESULT: PASS" in report


@pytest.mark.parametrize("fmt", ["jsonl", "csv_canonical", "shopify_csv"])
def test_a_case_knows_its_bad_rows_and_the_canonical_form_of_its_good_ones(tmp_path: Path, fmt: str) -> None:
    case = write_case(tmp_path / f"f-{fmt}", fmt, 400, random.Random(3), 1)
    assert 3 <= len(case.bad) <= 6 and case.good >= 390
    assert {"sale", "return", "void"} <= set(case.kinds)
    assert case.rows >= 400 and len(case.sha256) == 64
