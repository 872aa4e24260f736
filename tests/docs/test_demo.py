"""README's ``make demo`` (scripts/demo.py), run as ``make demo`` runs it but with 40 sales per store, not 400.

It must exit 0 with the content checker's clean verdict (nothing lost, doubled or altered, every signature
valid, every event in ``hub/events.jsonl`` once); that the checker finds each kind of loss is
tests/faults/test_invariants.py.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_demo_exits_0_with_a_clean_content_check(tmp_path: Path) -> None:
    data = tmp_path / "demo-data"
    res = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "demo.py"), "--data-dir", str(data), "--per-store", "40"],
        capture_output=True,
        text=True,
        timeout=240,
    )
    out = res.stdout + res.stderr
    assert res.returncode == 0, out[-4000:]
    assert "lost 0, duplicated 0, unexpected 0, content mismatches 0, chain errors 0, bad signatures 0" in out, out
    assert "sink events: events missing 0, doubled 0, content mismatches 0, unexpected 0" in out, out
    assert "hub STOPPED (simulated outage)" in out and "hub STARTED again" in out, out
    assert (data / "hub" / "events.jsonl").stat().st_size > 0
