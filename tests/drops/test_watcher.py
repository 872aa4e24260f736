"""The drop-folder watcher: real watchdog observers, real files, and a real agent killed mid-import."""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import apsw
import httpx
import pytest

from agent.conftest import AgentProcess, init_data_dir, run_cli, wait_for, write_identity
from edge_agent.config import AgentConfig
from edge_agent.drops import load
from edge_agent.drops.watcher import DropWatcher, is_candidate
from edge_agent.store import Outbox
from edge_agent.store import imports as ledger
from storesync_harness.dropfiles import write_jsonl


@pytest.fixture
def agent_dir(tmp_path: Path) -> Path:
    data = tmp_path / "agent"
    write_identity(data, init_data_dir(data))
    return data


@pytest.fixture
def watcher(agent_dir: Path, tmp_path: Path) -> Iterator[DropWatcher]:
    cfg = AgentConfig.load(agent_dir)
    key = cfg.load_key()
    w = DropWatcher(lambda: Outbox(cfg.db_path, key=key), tmp_path / "drop", settle=0.6, poll=0.1, workers=0)
    w.start()
    try:
        yield w
    finally:
        w.stop()


def imports(data: Path) -> list[dict[str, object]]:
    with Outbox(AgentConfig.load(data).db_path) as outbox:
        return ledger.recent(outbox)


def outbox_keys(data: Path) -> list[tuple[str, str]]:
    with Outbox(AgentConfig.load(data).db_path) as outbox:
        return [(r, t) for r, t in outbox.query("SELECT register_id, txn_id FROM outbox")]


def test_temporary_and_hidden_names_are_never_read() -> None:
    for name in ("day.jsonl.part", "day.tmp", ".day.jsonl", "x.csv~", "a.CRDOWNLOAD"):
        assert not is_candidate(Path(name))
    assert is_candidate(Path("day.jsonl")) and is_candidate(Path("orders_export.csv"))


def test_a_part_file_waits_until_renamed(watcher: DropWatcher, agent_dir: Path, tmp_path: Path) -> None:
    part = watcher.folders.root / "day.jsonl.part"
    write_jsonl(part, 30)
    time.sleep(2.0)  # well past the settle time
    assert part.exists() and imports(agent_dir) == []
    os.rename(part, watcher.folders.root / "day.jsonl")
    wait_for(lambda: (watcher.folders.processed / "day.jsonl.result.json").exists(), timeout=30)
    assert len(outbox_keys(agent_dir)) == 30


def test_a_growing_file_waits_until_stable(watcher: DropWatcher, agent_dir: Path, tmp_path: Path) -> None:
    src = tmp_path / "src.jsonl"
    write_jsonl(src, 40)
    lines = src.read_bytes().splitlines(keepends=True)
    target = watcher.folders.root / "growing.jsonl"
    with open(target, "wb") as f:
        for line in lines:  # one line every 0.05 s: 2 s of writing, each pause below the settle time
            f.write(line)
            f.flush()
            time.sleep(0.05)
            assert imports(agent_dir) == []
    # the file is moved before its row is marked finished: wait for both
    wait_for(
        lambda: (watcher.folders.processed / "growing.jsonl").exists() and imports(agent_dir)[0]["result"], timeout=30
    )
    (row,) = imports(agent_dir)
    assert (row["result"], row["accepted"], row["rows"]) == ("ok", 40, 40)


def test_repeated_events_import_a_file_once(watcher: DropWatcher, agent_dir: Path) -> None:
    src = watcher.folders.root / "twice.jsonl"
    write_jsonl(src, 25)
    stop = threading.Event()

    def chatter() -> None:  # what a noisy file system or a second event source looks like
        while not stop.is_set():
            watcher.notice(src)
            time.sleep(0.01)

    t = threading.Thread(target=chatter)
    t.start()
    try:
        wait_for(lambda: (watcher.folders.processed / "twice.jsonl").exists(), timeout=30)
        time.sleep(1.0)
    finally:
        stop.set()
        t.join()
    assert [r["status"] for r in imports(agent_dir)] == ["done"]
    assert watcher.imported == 1 and len(outbox_keys(agent_dir)) == 25


def test_files_dropped_while_stopped_are_imported_on_start(agent_dir: Path, tmp_path: Path) -> None:
    drop = tmp_path / "drop"
    drop.mkdir()
    write_jsonl(drop / "a.jsonl", 10, register_id="R1")
    write_jsonl(drop / "b.jsonl", 10, register_id="R2")
    cfg = AgentConfig.load(agent_dir)
    key = cfg.load_key()
    w = DropWatcher(lambda: Outbox(cfg.db_path, key=key), drop, settle=0.2, poll=0.1, workers=0).start()
    try:
        wait_for(lambda: len(imports(agent_dir)) == 2 and all(r["status"] == "done" for r in imports(agent_dir)))
    finally:
        w.stop()
    assert len(set(outbox_keys(agent_dir))) == 20
    assert sorted(p.name for p in drop.iterdir() if p.is_file()) == []


def _checkpoint(db: Path) -> int:
    conn = apsw.Connection(str(db), flags=apsw.SQLITE_OPEN_READONLY)
    try:
        row = conn.execute("SELECT checkpoint_offset FROM imports WHERE status = 'running'").fetchone()
        return int(row[0]) if row else 0
    except apsw.SQLError:
        return 0
    finally:
        conn.close()


def test_kill_9_mid_import_then_restart_resumes(agent_dir: Path, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("EDGE_AGENT_DROP_SETTLE", "0.3")
    drop = tmp_path / "drop"
    drop.mkdir()
    staged = tmp_path / "big.jsonl"
    df = write_jsonl(staged, 30_000, bad_every=1000)  # ~10 MB: read by worker processes
    _, items = load(staged)
    want = {(p.txn["register_id"], p.txn["txn_id"]) for p in items if p.ok and p.txn is not None}
    db = AgentConfig.load(agent_dir).db_path

    agent = AgentProcess(agent_dir, "--drop-dir", str(drop))
    try:
        os.rename(staged, drop / "big.jsonl")
        wait_for(lambda: _checkpoint(db) > 0, timeout=120, interval=0.05)
    finally:
        agent.stop(signal.SIGKILL)
    assert agent.proc.returncode == -signal.SIGKILL
    (row,) = [r for r in imports(agent_dir) if r["status"] == "running"]
    stored_at_kill = len(outbox_keys(agent_dir))
    assert 0 < stored_at_kill < len(want) and (drop / "big.jsonl").exists()

    agent = AgentProcess(agent_dir, "--drop-dir", str(drop))
    try:
        wait_for(lambda: (drop / "processed" / "big.jsonl").exists(), timeout=300, interval=0.2)
        listing = httpx.get(f"{agent.url}/v1/imports", timeout=10).json()
        status = httpx.get(f"{agent.url}/v1/status", timeout=10).json()
        missing = httpx.post(f"{agent.url}/v1/imports/{'0' * 64}/retry", json={}, timeout=10)
    finally:
        assert agent.stop() == 0

    keys = outbox_keys(agent_dir)
    assert len(keys) == len(set(keys)) == len(want) and set(keys) == want
    result = json.loads((drop / "processed" / "big.jsonl.result.json").read_text())
    assert (result["accepted"], result["duplicates"], result["rejected"]) == (len(want), 0, len(df.bad))
    assert result["rows"] == 30_000 and result["status"] == "partial"
    errors = (drop / "rejected" / "big.jsonl.errors.jsonl").read_text().splitlines()
    assert sorted({json.loads(e)["line"] for e in errors}) == [line for line, _ in df.bad]
    verify = run_cli("verify", "--data-dir", str(agent_dir))
    assert verify.returncode == 0 and f"chain OK: {len(want)} records" in verify.stdout
    assert listing["imports"][0]["id"] == row["id"] and listing["imports"][0]["status"] == "done"
    assert status["imports"]["last"]["accepted"] == len(want) and missing.status_code == 404


def test_staff_retry_of_a_rejected_file_through_the_tui_client(agent_dir: Path, tmp_path: Path, monkeypatch) -> None:
    """The TUI's retry goes to the real agent's /v1/imports/{sha}/retry and the file is imported again."""
    from tui.agent_client import AgentClient

    monkeypatch.setenv("EDGE_AGENT_DROP_SETTLE", "0.3")
    drop = tmp_path / "drop"
    drop.mkdir()
    staged = tmp_path / "day.jsonl"
    write_jsonl(staged, 6, bad_every=1)  # nothing good in it: the whole file is rejected
    agent = AgentProcess(agent_dir, "--drop-dir", str(drop))
    try:
        os.rename(staged, drop / "day.jsonl")
        result_file = drop / "rejected" / "day.jsonl.result.json"
        wait_for(result_file.exists, timeout=60, interval=0.1)
        result = json.loads(result_file.read_text())
        assert result["status"] == "rejected" and result["accepted"] == 0

        answer = AgentClient(agent.url).retry_drop("day.jsonl", result["sha256"])
        assert answer is not None and answer.ok, answer
        # Imported again: a second import of the same bytes, allowed because staff asked for it.
        wait_for(lambda: len([r for r in imports(agent_dir) if r["sha256"] == result["sha256"]]) == 2, timeout=60)
        assert AgentClient(agent.url).retry_drop("day.jsonl", "0" * 64) is None  # unknown file: fall back
    finally:
        assert agent.stop() == 0
    assert outbox_keys(agent_dir) == []
