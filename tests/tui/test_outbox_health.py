"""A damaged outbox is reported to the hub in a signed probe and shown in its fleet view (issue 15)."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

import httpx
import pytest
from textual.widgets import DataTable, Static
from tui_support import settle

from agent.conftest import make_txn
from storesync_harness.processes import Agent, Hub, hub_cli
from tui.app import StoreTuiApp
from tui.hub_client import HubClient

REASON = "outbox damaged at seq 5"


def wait_blocked_on_hub(hub: Hub, store_id: str, timeout: float = 60.0) -> dict:
    deadline = time.monotonic() + timeout
    row: dict = {}
    while time.monotonic() < deadline:
        row = next(s for s in hub.admin("/v1/admin/stores")["stores"] if s["store_id"] == store_id)
        if row.get("blocked"):
            return row
        time.sleep(0.3)
    raise AssertionError(f"the hub never learned of the damage: {row}")


async def test_the_fleet_view_shows_a_store_whose_outbox_is_damaged(
    hub: Hub, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    healthy = Agent.enrolled(tmp_path / "ok", hub, "S2").start()
    agent = Agent.enrolled(tmp_path / "agent", hub, "S1").start()
    try:
        assert healthy.post(make_txn(1)).status_code == 201
        hub.stop()
        for i in range(1, 11):
            assert agent.post(make_txn(i)).status_code == 201
        agent.stop()
        with sqlite3.connect(agent.data_dir / "outbox.db") as conn:
            conn.execute("DELETE FROM outbox WHERE seq = 5")
        hub.start()
        agent.start()
        healthy.wait_synced()
        row = wait_blocked_on_hub(hub, "S1")
        assert row["blocked"] == "outbox_damaged" and row["blocked_seq"] == 5, row
        assert REASON in row["blocked_reason"] and row["acked_through"] == 4, row
        ok = next(s for s in hub.admin("/v1/admin/stores")["stores"] if s["store_id"] == "S2")
        assert ok["blocked"] is None and ok["blocked_reason"] is None
        table = hub_cli("stores", *hub.cli_args()).stdout
        (s1,) = [line for line in table.splitlines() if line.startswith("S1 ")]
        assert f"blocked: {REASON}" in s1 and table.splitlines()[0].split()[-1] == "AGENT", table
        assert [line for line in table.splitlines() if line.startswith("S2 ")][0].endswith("ok"), table
        auth = {"Authorization": f"Bearer {hub.admin_token}"}
        metrics = httpx.get(hub.url + "/metrics", headers=auth, timeout=10).text
        assert 'storesync_store_blocked{code="outbox_damaged",store="S1"} 1.0' in metrics, metrics[-1500:]
        assert 'store="S2"} 1.0' not in [m for m in metrics.splitlines() if m.startswith("storesync_store_blocked")]
        app = StoreTuiApp.for_fleet(HubClient(hub.url, hub.admin_token), hub_url=hub.url, token=hub.admin_token,
                                    refresh_s=0)  # fmt: skip
        monkeypatch.setattr(app, "notify", lambda *a, **k: None)
        async with app.run_test(size=(200, 30)) as pilot:
            await settle(pilot)
            stores = app.query_one("#stores", DataTable)
            names = sorted(str(stores.get_row_at(i)[0]) for i in range(stores.row_count))
            assert names == ["S1 ⚠ blocked", "S2"], names
            line = str(app.query_one("#status-line", Static).render())
            assert f"1 agent blocked (S1: {REASON}" in line, line
    finally:
        agent.stop()
        healthy.stop()
