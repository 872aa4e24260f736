"""Tampering with the agent's outbox: a deleted row blocks sync, a rolled-back head fails verify (issue 15)."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

from agent.conftest import make_txn, run_cli
from storesync_harness.processes import Agent, Hub
from tui.format import explain_block


def wait_for_status(agent: Agent, predicate, timeout: float = 60.0) -> dict:
    deadline = time.monotonic() + timeout
    st = agent.status()
    while time.monotonic() < deadline:
        st = agent.status()
        if predicate(st):
            return st
        time.sleep(0.3)
    raise AssertionError(f"status never matched: {st}")


def test_a_row_deleted_from_the_middle_blocks_sync_and_keeps_everything(hub: Hub, tmp_path: Path) -> None:
    agent = Agent.enrolled(tmp_path / "agent", hub, "S1").start()
    try:
        hub.stop()
        for i in range(1, 11):
            assert agent.post(make_txn(i)).status_code == 201
        agent.stop()
        db = agent.data_dir / "outbox.db"
        with sqlite3.connect(db) as conn:
            conn.execute("DELETE FROM outbox WHERE seq = 5")
        hub.start()
        agent.start()
        st = wait_for_status(agent, lambda s: bool(s.get("blocked")))
        assert st["blocked"]["code"] == "outbox_damaged" and st["blocked"]["seq"] == 5, st
        assert "outbox damaged at seq 5" in st["blocked"]["message"]
        assert st["acked_through"] == 4  # the intact records before the hole reached the hub
        text = run_cli("status", "--data-dir", str(agent.data_dir)).stdout
        assert "outbox damaged at seq 5" in text, text
        problem = explain_block(st["blocked"])
        assert problem is not None and "damaged" in problem.title and problem.ref == "5"
        time.sleep(3)  # several sync rounds: no crash loop, no traceback, nothing deleted
        assert "Traceback" not in agent.log_path.read_text()
        with sqlite3.connect(db) as conn:
            assert [s for (s,) in conn.execute("SELECT seq FROM outbox ORDER BY seq")] == [1, 2, 3, 4, 6, 7, 8, 9, 10]
        assert [r["seq"] for r in hub.ledger("S1")] == [1, 2, 3, 4]
        assert agent.post(make_txn(11)).status_code == 201  # capture goes on
    finally:
        agent.stop()


def test_verify_fails_when_the_newest_rows_are_deleted_and_the_head_rewritten(hub: Hub, tmp_path: Path) -> None:
    agent = Agent.enrolled(tmp_path / "agent", hub, "S2").start()
    try:
        for i in range(1, 11):
            assert agent.post(make_txn(i)).status_code == 201
        agent.wait_synced()
    finally:
        agent.stop()
    ok = run_cli("verify", "--data-dir", str(agent.data_dir))
    assert ok.returncode == 0, ok.stdout + ok.stderr
    with sqlite3.connect(agent.data_dir / "outbox.db") as conn:
        (chain7,) = conn.execute("SELECT chain FROM outbox WHERE seq = 7").fetchone()
        conn.execute("DELETE FROM outbox WHERE seq > 7")
        conn.execute("UPDATE writers SET head_seq = 7, head_chain = ?", (chain7,))
    bad = run_cli("verify", "--data-dir", str(agent.data_dir))
    assert bad.returncode != 0, bad.stdout
    assert "receipt" in bad.stdout and "Traceback" not in bad.stderr, bad.stdout + bad.stderr
    with sqlite3.connect(agent.data_dir / "outbox.db") as conn:
        conn.execute("UPDATE sync_state SET receipt = NULL")  # hiding the receipt does not help
    hidden = run_cli("verify", "--data-dir", str(agent.data_dir))
    assert hidden.returncode != 0 and "receipt" in hidden.stdout, hidden.stdout


def test_the_hub_reports_a_store_whose_chain_head_goes_backwards(hub: Hub, tmp_path: Path) -> None:
    agent = Agent.enrolled(tmp_path / "agent", hub, "S3").start()
    try:
        for i in range(1, 11):
            assert agent.post(make_txn(i)).status_code == 201
        agent.wait_synced()
        agent.stop()
        with sqlite3.connect(agent.data_dir / "outbox.db") as conn:
            (chain7,) = conn.execute("SELECT chain FROM outbox WHERE seq = 7").fetchone()
            conn.execute("DELETE FROM outbox WHERE seq > 7")
            conn.execute("UPDATE writers SET head_seq = 7, head_chain = ?", (chain7,))
        agent.start()
        st = wait_for_status(agent, lambda s: bool(s.get("blocked")))
        assert st["blocked"]["code"] == "conflict" and st["blocked"]["seq"] == 8, st
        assert "chain head went backwards" in st["blocked"]["message"]
        stores = {s["store_id"]: s for s in hub.admin("/v1/admin/stores")["stores"]}
        assert stores["S3"]["conflicts"] == 1 and stores["S3"]["acked_through"] == 10
        conflicts = hub.admin("/v1/admin/stores/S3")
        assert "8" in str(conflicts)
        assert [r["seq"] for r in hub.ledger("S3")] == list(range(1, 11))  # the hub keeps what it had
    finally:
        agent.stop()
