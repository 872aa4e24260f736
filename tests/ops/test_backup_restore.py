"""Backup and restore drills with real processes (issue 13): backups taken while serving and capturing.

- A hub restored from an older backup is refilled by its agent (the rewind): every sale the POS was
  told is saved is in the ledger once, with the content the POS sent.
- An agent restored from an older backup re-enrolls to a new epoch (runbook: restore, sync, new token,
  enroll --force): no sale is lost or stored twice across the epochs.
"""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

from storesync_harness.pos import Pos
from storesync_harness.processes import Agent, Hub, agent_cli, hub_cli
from sync_protocol.canonical import canonical_dumps
from sync_protocol.transaction import parse_transaction

from .test_cli_errors import one_line_error


def _ledger_txns(hub: Hub, store_id: str, epoch: int) -> list[dict]:
    return [json.loads(r["body"])["txn"] for r in hub.ledger(store_id, epoch)]


def _post_while(agent: Agent, pos: Pos, stop: threading.Event, sent: list[dict]) -> None:
    while not stop.is_set():
        sale = pos.sale()
        if agent.post(sale).status_code in (200, 201):
            sent.append(sale)
        time.sleep(0.01)


def _same(stored: list[dict], sent: list[dict]) -> None:
    assert [t["txn_id"] for t in stored] == [t["txn_id"] for t in sent]
    for got, want in zip(stored, sent, strict=True):  # content, not just keys: what the POS sent, canonically
        assert canonical_dumps(got) == parse_transaction(want).canonical_json()


def test_hub_restored_from_an_older_backup_is_refilled_by_the_agent(tmp_path: Path, hub: Hub, agent: Agent) -> None:
    pos, sent = Pos("R1"), []
    for _ in range(5):
        sale = pos.sale()
        assert agent.post(sale).status_code == 201
        sent.append(sale)
    agent.wait_synced(30)
    # back up while the agent keeps capturing and syncing
    stop = threading.Event()
    poster = threading.Thread(target=_post_while, args=(agent, pos, stop, sent))
    poster.start()
    try:
        res = hub_cli("backup", str(tmp_path / "hub-backup"), "--data-dir", str(hub.data_dir), "--json")
    finally:
        stop.set()
        poster.join()
    manifest = json.loads(res.stdout)
    assert manifest["engine"] == "sqlite" and set(manifest["files"]) >= {"hub.db", "hub.key", "admin.token"}
    assert (tmp_path / "hub-backup" / "hub.key").stat().st_mode & 0o777 == 0o600
    for _ in range(5):
        sale = pos.sale()
        assert agent.post(sale).status_code == 201
        sent.append(sale)
    agent.wait_synced(30)
    before = len(hub.ledger("S1"))
    assert before == len(sent)

    refused = hub_cli("restore", str(tmp_path / "hub-backup"), "--data-dir", str(hub.data_dir), check=False)
    assert refused.returncode == 4 and "'cloud-hub serve'" in one_line_error(refused, "cloud-hub")  # still serving
    hub.stop()
    restored = hub_cli("restore", str(tmp_path / "hub-backup"), "--data-dir", str(hub.data_dir), "--json")
    assert json.loads(restored.stdout)["moved_aside"]
    hub.start()
    assert len(hub.ledger("S1")) < before  # the backup is older
    sale = pos.sale()
    assert agent.post(sale).status_code == 201
    sent.append(sale)
    assert agent.wait_synced(60)["acked_through"] == len(sent)
    _same(_ledger_txns(hub, "S1", 1), sent)


def test_agent_restored_from_a_backup_re_enrolls_to_a_new_epoch(tmp_path: Path, hub: Hub, agent: Agent) -> None:
    pos, sent = Pos("R1"), []
    for _ in range(4):
        sale = pos.sale()
        assert agent.post(sale).status_code == 201
        sent.append(sale)
    agent.wait_synced(30)
    backup = tmp_path / "agent-backup"
    manifest = json.loads(agent_cli("backup", str(backup), "--data-dir", str(agent.data_dir), "--json").stdout)
    assert (manifest["store_id"], manifest["epoch"], manifest["last_seq"]) == ("S1", 1, 4)
    assert (backup / "agent.key").stat().st_mode & 0o777 == 0o600
    for _ in range(3):  # captured and synced after the backup: at the hub, not in the backup
        sale = pos.sale()
        assert agent.post(sale).status_code == 201
        sent.append(sale)
    agent.wait_synced(30)
    agent.stop()
    # the disaster: the data folder is gone; restore into a fresh one
    lost = agent.data_dir.rename(agent.data_dir.with_name("agent-lost"))
    assert lost.exists()
    res = agent_cli("restore", str(backup), "--data-dir", str(agent.data_dir), "--json")
    assert json.loads(res.stdout)["store_id"] == "S1"
    refused = agent_cli("run", "--data-dir", str(agent.data_dir), "--port", "0", check=False)
    assert refused.returncode == 2 and "restored from a backup" in one_line_error(refused, "edge-agent")
    synced = json.loads(agent_cli("sync", "--data-dir", str(agent.data_dir), "--json", check=False).stdout)
    assert synced["pending"] == 0, synced
    token = hub.add_store("S1")
    agent_cli("enroll", "--data-dir", str(agent.data_dir), "--hub", hub.url, "--token", token, "--force")
    agent.start()
    after = []
    for _ in range(3):
        sale = pos.sale()
        assert agent.post(sale).status_code == 201
        after.append(sale)
    status = agent.wait_synced(30)
    assert status["epoch"] == 2 and status["acked_through"] == 3
    _same(_ledger_txns(hub, "S1", 1), sent)  # epoch 1: all 7, once
    _same(_ledger_txns(hub, "S1", 2), after)  # epoch 2: the new ones
    assert agent_cli("verify", "--data-dir", str(agent.data_dir)).returncode == 0
