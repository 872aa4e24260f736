"""Power loss, not kill -9: the agent and the hub on the power-cut VFS, cut at random points.

Bounded here (a cut per point, two for the control); ``make faults`` runs 50 and more.
"""

from __future__ import annotations

import shutil
import sqlite3
from pathlib import Path

import apsw
import pytest

from storesync_harness.powercut import Disk, PowerCutVFS, Spec
from storesync_harness.powerloss import AGENT_POINTS, HUB_KILL_POINTS, run_power_cuts

pytestmark = pytest.mark.faults


def _on_disk(db: Path, tmp: Path) -> list[tuple[int]]:
    """What a fresh process would read from the real files (copied, so nothing of ours is reused)."""
    out = tmp / "copy"
    out.mkdir(exist_ok=True)
    for suffix in ("", "-wal"):
        src = Path(f"{db}{suffix}")
        if src.exists():
            shutil.copy(src, out / f"t.db{suffix}")
    con = sqlite3.connect(out / "t.db")
    try:
        return con.execute("SELECT x FROM t ORDER BY x").fetchall()
    except sqlite3.OperationalError:  # not even the table reached the disk
        return []
    finally:
        con.close()


@pytest.mark.parametrize(("sync", "survives"), [("FULL", True), ("OFF", False)])
def test_the_vfs_keeps_unsynced_writes_in_memory_only(tmp_path: Path, sync: str, survives: bool) -> None:
    disk = Disk(Spec())
    vfs = PowerCutVFS(disk, name=f"powercut-test-{sync}", makedefault=False)
    db = tmp_path / "t.db"
    con = apsw.Connection(str(db), vfs=f"powercut-test-{sync}")
    con.execute("PRAGMA journal_mode=WAL")
    con.execute(f"PRAGMA synchronous={sync}")
    con.execute("CREATE TABLE t (x INTEGER)")
    con.execute("INSERT INTO t VALUES (1)")
    assert con.execute("SELECT count(*) FROM t").fetchone() == (1,)  # the process sees its own writes
    # The real files hold only what was synced: with FULL every commit, with OFF nothing.
    assert (_on_disk(db, tmp_path) == [(1,)]) is survives
    disk.cut = True  # from now on every operation fails, as after a power cut
    with pytest.raises(apsw.IOError):
        con.execute("INSERT INTO t VALUES (2)")
    disk.cut = False  # power back for the clean-up only
    con.close()
    vfs.unregister()


def test_agent_power_cuts_keep_every_acknowledged_sale(tmp_path: Path) -> None:
    result = run_power_cuts(tmp_path, target="agent", cuts=len(AGENT_POINTS), seed=11)
    report = "\n".join(result.lines() + result.failures)
    assert result.cuts == len(AGENT_POINTS), report
    assert sum(n for p, n in result.points.items() if ":missed" not in p) >= 3, report
    assert result.durable and result.ok, report
    assert result.final is not None and result.final.acknowledged > 50, report
    assert result.final.found == result.final.acknowledged, report


def test_hub_power_cuts_and_kills_sign_receipts_only_for_what_survives(tmp_path: Path) -> None:
    """A power cut mid-commit, and kill -9 between ledger commit and answer, between event derivation and
    delivery, and between a sink call and the record of its outcome; then the content checker with every
    sink. (SIGKILL, after-commit and checkpoint cuts of the hub run in make faults.)"""
    points = ("mid_commit", *HUB_KILL_POINTS)
    result = run_power_cuts(tmp_path, target="hub", cuts=len(points), seed=12, only=points)
    report = "\n".join(result.lines() + result.failures)
    assert result.cuts == len(points), report
    assert all(result.points[p] == 1 for p in HUB_KILL_POINTS), report  # each struck where it was aimed
    assert result.receipts_beyond == 0 and result.ok, report
    assert result.final is not None and result.final.found == result.final.acknowledged > 50, report
    assert result.final.events_checked == ["archive", "stream"] and result.final.event_problems == 0, report


def test_control_synchronous_off_loses_acknowledged_sales(tmp_path: Path) -> None:
    """The harness must be able to see loss: with synchronous=OFF the same cuts lose what was answered."""
    agent = run_power_cuts(tmp_path / "agent", target="agent", cuts=1, seed=13, sync_off=True)
    assert agent.lost_at_cut > 0, "\n".join(agent.lines())
    hub = run_power_cuts(tmp_path / "hub", target="hub", cuts=1, seed=14, sync_off=True)
    assert hub.receipts_beyond > 0, "\n".join(hub.lines())
