"""Text from a POS, a drop file or the hub is never read as markup by store-tui (docs/security.md)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
from textual.widgets import DataTable, Static
from textual.widgets._data_table import default_cell_formatter
from tui_support import HubStandIn, settle

from storesync_harness.processes import Agent, Hub
from tui.agent_client import AgentClient
from tui.app import StoreTuiApp
from tui.screens import ErrorReportScreen, TxnScreen

MARKUP = ["[/]X", "[bold red]R[/]", "[link=http://evil.example]x[/link]", "a\\[b]", "[@click=app.quit]q[/]"]


def sale(txn_id: str, name: str) -> dict[str, Any]:
    return {
        "txn_id": txn_id,
        "register_id": "R1",
        "kind": "sale",
        "occurred_at": "2026-11-22T10:15:03",
        "currency": "EUR",
        "lines": [{"sku": "TEE", "name": name, "qty": "1", "unit_price": "10.00"}],
        "tenders": [{"type": "cash", "amount": "10.00"}],
        "total": "10.00",
    }


async def test_markup_in_sales_and_drop_reports_is_shown_literally(
    hub: Hub, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    drops = tmp_path / "drops"
    agent = Agent.enrolled(tmp_path / "agent", hub, "S1", "Europe/Berlin", "--drop-dir", str(drops))
    agent.start()
    try:
        for text in MARKUP:
            answer = agent.post(sale(text.replace(" ", "")[:64], text))
            assert answer.status_code == 201, (text, answer.text)
        bad = json.dumps(sale("[/]BAD", "[/]") | {"total": "11.00"})
        (drops / "[red]f[b].jsonl").write_text(bad + "\n")
        agent.wait_synced()
        for _ in range(100):
            if (drops / "rejected" / "[red]f[b].jsonl.errors.jsonl").exists():
                break
            await asyncio.sleep(0.1)
        notes: list[str] = []
        app = StoreTuiApp.for_store(agent.data_dir, drop_dir=drops, agent=AgentClient(agent.url), refresh_s=0)
        monkeypatch.setattr(app, "notify", lambda message, **_: notes.append(str(message)))
        async with app.run_test(size=(120, 40)) as pilot:
            await settle(pilot)
            await pilot.press("d", "e")
            for _ in range(50):
                await settle(pilot)
                if isinstance(app.screen, ErrorReportScreen):
                    break
            assert isinstance(app.screen, ErrorReportScreen), notes
            assert app.screen.file == "[red]f[b].jsonl"
            await pilot.press("escape")
            await settle(pilot)
            table = app.query_one("#txns", DataTable)
            shown = [str(table.get_row_at(i)[1]) for i in range(table.row_count)]
            assert table.row_count == len(MARKUP)
            rendered = "\n".join(default_cell_formatter(table.get_row_at(i)[1]).plain for i in range(table.row_count))
            assert sorted(rendered.splitlines()) == sorted(t.replace(" ", "") for t in MARKUP), (shown, rendered)
            table.focus()
            await pilot.press("enter")
            await settle(pilot)
            assert isinstance(app.screen, TxnScreen)
            await pilot.press("escape")
            await settle(pilot)
    finally:
        agent.stop()


async def test_fleet_view_shows_no_part_of_the_admin_token() -> None:
    stand_in = HubStandIn()
    app = stand_in.app()
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(pilot)
        detail = str(app.query_one("#status-detail", Static).render())
        assert "admin token set" in detail
        token = stand_in.token
        assert not any(part in detail for part in (token[:2], token[-2:], token[:3], token[-3:])), detail
