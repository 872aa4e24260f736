"""Restore drill for a hub on PostgreSQL (docs/operations.md "Restoring a hub on PostgreSQL"), real processes.

``cloud-hub backup`` of a serving PostgreSQL hub writes ``hub.pgdump`` (pg_dump, custom format); ``cloud-hub
restore`` refuses it and points to pg_restore; the documented ``pg_restore`` command puts the hub's schema
back after it was lost, and the agent refills what the hub received after the backup (the rewind):
every sale once, with the content the POS sent.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from urllib.parse import urlsplit

import psycopg
import pytest
from psycopg import sql

from storesync_harness.pos import Pos
from storesync_harness.processes import Agent, Hub, hub_cli
from sync_protocol.canonical import canonical_dumps
from sync_protocol.transaction import parse_transaction

pytestmark = [pytest.mark.postgres, pytest.mark.slow]


def assert_ledger_is(hub: Hub, sent: list[dict]) -> None:
    """The ledger holds exactly what the POS was told is saved, in order, with its content."""
    stored = [json.loads(r["body"])["txn"] for r in hub.ledger("S1", 1)]
    assert [t["txn_id"] for t in stored] == [t["txn_id"] for t in sent]
    for got, want in zip(stored, sent, strict=True):
        assert canonical_dumps(got) == parse_transaction(want).canonical_json()


def test_pg_dump_backup_restores_with_pg_restore_and_the_agent_refills(tmp_path: Path, postgres_url: str) -> None:
    if shutil.which("pg_restore") is None:
        pytest.skip("the PostgreSQL client tools (pg_dump, pg_restore) are not installed")
    schema = postgres_url.rsplit("schema=", 1)[1]
    hub = Hub.create(tmp_path / "hub", database=postgres_url).start()
    agent = Agent.enrolled(tmp_path / "agent", hub, "S1", "Europe/Berlin", "--sync-interval", "1").start()
    pos, sent = Pos("R1", seed=8), []
    try:
        for _ in range(5):
            sale = pos.sale()
            assert agent.post(sale).status_code == 201
            sent.append(sale)
        agent.wait_synced(60)
        backup_dir = tmp_path / "hub-backup"
        res = hub_cli("backup", str(backup_dir), *hub.cli_args(), "--json")  # while serving
        manifest = json.loads(res.stdout)
        assert manifest["engine"] == "postgresql" and "hub.pgdump" in manifest["files"]
        assert manifest["stores"] == [{"store_id": "S1", "epoch": 1, "acked_through": 5}]
        refused = hub_cli("restore", str(backup_dir), "--data-dir", str(tmp_path / "hub"), check=False)
        assert refused.returncode == 2
        assert refused.stderr.strip() == (
            "cloud-hub: error: this is a PostgreSQL hub backup: restore hub.pgdump with pg_restore (docs/operations.md)"
        )
        for _ in range(5):  # after the backup: the hub gets them, then loses them with its schema
            sale = pos.sale()
            assert agent.post(sale).status_code == 201
            sent.append(sale)
        agent.wait_synced(60)
        hub.stop()
        base = postgres_url.split("?", 1)[0]  # libpq's URI, without the hub's ?schema=
        assert urlsplit(base).path == "/test"
        with psycopg.connect(base, autocommit=True) as conn:  # the disaster: the hub's schema is gone
            conn.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(schema)))

        # docs/operations.md: pg_restore into the hub's database (the dump re-creates the schema)
        subprocess.run(
            ["pg_restore", "--no-owner", f"--dbname={base}", str(backup_dir / "hub.pgdump")],
            check=True,
            capture_output=True,
            timeout=120,
        )
        hub.start()
        for _ in range(2):
            sale = pos.sale()
            assert agent.post(sale).status_code == 201
            sent.append(sale)
        final = agent.wait_synced(90)
        assert final["acked_through"] == 12 and final["blocked"] is None
        assert_ledger_is(hub, sent)
        assert "hub asked for seq 6 again" in agent.log_path.read_text()  # the rewind refilled 6..10
    finally:
        agent.stop()
        hub.stop()
