"""Audit export (issue 13): cloud-hub ledger export / edge-agent export, checked offline by storesync verify-export."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import pytest

from storesync_harness.pos import Pos
from storesync_harness.processes import Agent, Hub, agent_cli, hub_cli
from sync_protocol import keys


def verify_export(path: Path, *key_args: str) -> subprocess.CompletedProcess[str]:
    argv = [sys.executable, "-m", "storesync_runtime.audit_cli", "verify-export", str(path)]
    for k in key_args:
        argv += ["--public-key", k]
    return subprocess.run([*argv, "--json"], capture_output=True, text=True, timeout=120)


@pytest.fixture
def synced(tmp_path: Path, hub: Hub, agent: Agent) -> tuple[Hub, Agent, str, list[dict]]:
    sales = []
    for day in ("2026-11-20", "2026-11-21", "2026-11-22"):
        pos = Pos({"2026-11-20": "R1", "2026-11-21": "R2"}.get(day, "R3"))
        for _ in range(3):
            sale = pos.sale()
            sale["occurred_at"] = f"{day}T10:{len(sales):02d}:00"
            assert agent.post(sale).status_code == 201
            sales.append(sale)
    agent.wait_synced(30)
    public = keys.public_hex(keys.load_private_key(agent.data_dir / "agent.key"))
    return hub, agent, public, sales


@pytest.mark.parametrize("suffix", [".db", ".csv", ".jsonl"])
def test_hub_export_verifies_offline_in_every_format(tmp_path: Path, synced, suffix: str) -> None:
    hub, _, public, sales = synced
    out = tmp_path / f"ledger{suffix}"
    res = hub_cli("ledger", "export", "--store", "S1", "--out", str(out), "--data-dir", str(hub.data_dir), "--json")
    assert json.loads(res.stdout)["records"] == len(sales)
    checked = verify_export(out, public)
    doc = json.loads(checked.stdout)
    assert checked.returncode == 0 and doc["ok"] and doc["records"] == 9, checked.stdout + checked.stderr
    assert doc["streams"]["S1/1"]["gaps"] == []
    # one day only: records 4..6, still every link and signature checks out
    day = tmp_path / f"day{suffix}"
    hub_cli("ledger", "export", "--store", "S1", "--from", "2026-11-21", "--to", "2026-11-21", "--out", str(day),
            "--data-dir", str(hub.data_dir))  # fmt: skip
    doc = json.loads(verify_export(day, public).stdout)
    assert doc["ok"] and doc["records"] == 3 and doc["streams"]["S1/1"]["first_seq"] == 4


def test_tampering_and_a_foreign_key_are_caught(tmp_path: Path, synced) -> None:
    hub, _, public, _ = synced
    out = tmp_path / "ledger.csv"
    hub_cli("ledger", "export", "--store", "S1", "--out", str(out), "--data-dir", str(hub.data_dir))
    with out.open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    body = json.loads(rows[4]["body"])
    body["txn"]["total"] = "0.01"  # the cashier's dream
    rows[4]["body"] = json.dumps(body, separators=(",", ":"), sort_keys=True)
    tampered = tmp_path / "tampered.csv"
    with tampered.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    res = verify_export(tampered, public)
    doc = json.loads(res.stdout)
    assert res.returncode == 1 and not doc["ok"]
    assert doc["problems"] == ["S1 epoch 1 seq 5: body_hash does not match the body"]
    other = keys.public_hex(keys.generate())
    res = verify_export(out, other)
    assert res.returncode == 1 and "not a key you gave" in json.loads(res.stdout)["problems"][0]
    bad = subprocess.run(
        [sys.executable, "-m", "storesync_runtime.audit_cli", "verify-export", str(out), "--public-key", "zz"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert bad.returncode == 2 and "Traceback" not in bad.stderr


def test_agent_export_verifies_with_the_same_tool(tmp_path: Path, synced) -> None:
    _, agent, public, sales = synced
    out = tmp_path / "outbox.jsonl"
    res = agent_cli("export", "--data-dir", str(agent.data_dir), "--out", str(out), "--json")
    assert json.loads(res.stdout)["records"] == len(sales)
    doc = json.loads(verify_export(out, public).stdout)
    assert doc["ok"] and doc["records"] == len(sales)
    res = agent_cli("export", "--data-dir", str(agent.data_dir), "--store", "S9", "--out", str(tmp_path / "x"),
                    check=False)  # fmt: skip
    assert res.returncode == 2 and "not S9" in res.stderr
