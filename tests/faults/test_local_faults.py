"""Local faults: a full disk and a database locked by another process.

The full disk is real: the agent's data folder sits on a small tmpfs mounted for the test (we run as
root in CI; where ``mount`` is not permitted the test skips). The POS must get a clear 507 / 503 JSON
error, never a false 201, and the outbox must stay intact and usable once the fault is gone.
(A read-only remount is not tested: Linux refuses to remount a file system read-only while the agent
holds its database open for writing, so that case shows up as the full-disk or locked cases do.)
"""

from __future__ import annotations

import sqlite3
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from agent.conftest import init_data_dir, write_identity
from storesync_harness.invariants import agent_verify
from storesync_harness.pos import Pos
from storesync_harness.processes import Agent

pytestmark = pytest.mark.faults


def _mount(target: Path, options: str) -> None:
    subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(target)], check=True, capture_output=True)


@pytest.fixture
def small_fs(tmp_path: Path) -> Iterator[Path]:
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    try:
        _mount(mnt, "size=3m,mode=0700")
    except (OSError, subprocess.CalledProcessError) as exc:
        pytest.skip(f"cannot mount a tmpfs here: {exc}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False, capture_output=True)


def _remount(mnt: Path, options: str) -> None:
    subprocess.run(["mount", "-o", f"remount,{options}", str(mnt)], check=True, capture_output=True)


def _count(db: Path) -> int:
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        return int(con.execute("SELECT count(*) FROM outbox").fetchone()[0])
    finally:
        con.close()


def test_full_disk_gives_507_and_keeps_the_outbox(small_fs: Path) -> None:
    data = small_fs / "agent"
    write_identity(data, init_data_dir(data))
    agent = Agent.create(data)
    agent.start()
    pos = Pos("R1", seed=11)
    saved: list[int] = []
    try:
        with httpx.Client(timeout=30) as client:
            full = None
            for _ in range(200):
                batch = [pos.sale() for _ in range(100)]
                r = client.post(agent.url + "/v1/transactions", json=batch)
                assert r.status_code == 200, r.text
                for item in r.json()["results"]:
                    if item["status"] == 201:
                        saved.append(item["seq"])
                    else:
                        full = item
                if full is not None:
                    break
            assert full is not None, "the 3 MiB file system never filled up"
            assert full["status"] == 507 and full["error"] == "storage"
            assert "disk is full" in full["message"]
            # Single sales may still fit for a while; each is either saved (next seq) or a clear 507.
            for _ in range(500):
                single = client.post(agent.url + "/v1/transactions", json=pos.sale())
                if single.status_code == 507:
                    assert single.json()["error"] == "storage"
                    break
                assert single.status_code == 201, single.text
                saved.append(single.json()["seq"])
            assert single.status_code == 507
            assert saved == list(range(1, len(saved) + 1))
            assert _count(data / "outbox.db") == len(saved)

            _remount(small_fs, "size=64m")  # IT frees space
            r = client.post(agent.url + "/v1/transactions", json=pos.sale())
            assert r.status_code == 201, r.text
            assert r.json()["seq"] == len(saved) + 1
    finally:
        agent.stop()
    ok, text = agent_verify(data)
    assert ok, text
    assert _count(data / "outbox.db") == len(saved) + 1


def _hold_exclusive(db: Path, seconds: float, locked: threading.Event) -> None:
    con = sqlite3.connect(db, timeout=1, isolation_level=None)
    try:
        con.execute("BEGIN EXCLUSIVE")
        locked.set()
        time.sleep(seconds)
        con.execute("ROLLBACK")
    finally:
        con.close()


def test_locked_database_is_waited_for_then_reported(tmp_path: Path) -> None:
    data = tmp_path / "agent"
    write_identity(data, init_data_dir(data))
    agent = Agent.create(data)
    agent.start()
    pos = Pos("R1", seed=13)
    db = data / "outbox.db"
    try:
        assert agent.post(pos.sale()).status_code == 201
        # A short lock (1 s) is waited for: the POS gets its 201, a little late.
        locked = threading.Event()
        holder = threading.Thread(target=_hold_exclusive, args=(db, 1.0, locked))
        holder.start()
        assert locked.wait(10)
        t0 = time.monotonic()
        r = agent.post(pos.sale())
        waited = time.monotonic() - t0
        holder.join()
        assert r.status_code == 201 and r.json()["seq"] == 2, r.text
        assert 0.5 < waited < 5.0
        # A lock held longer than the bound (5 s) is reported as 503 within the bound.
        locked.clear()
        holder = threading.Thread(target=_hold_exclusive, args=(db, 8.0, locked))
        holder.start()
        assert locked.wait(10)
        t0 = time.monotonic()
        r = agent.post(pos.sale())
        waited = time.monotonic() - t0
        holder.join()
        assert r.status_code == 503, r.text
        assert r.json()["error"] == "storage"
        assert 4.0 < waited < 7.5
        r = agent.post(pos.sale())
        assert r.status_code == 201 and r.json()["seq"] == 3, r.text
    finally:
        agent.stop()
    ok, text = agent_verify(data)
    assert ok, text
