"""Pilot tests driving every action of the store TUI and the fleet view."""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import apsw
import httpx
import pytest
from textual.widgets import DataTable, Static
from tui_support import HubStandIn, settle

from storesync_harness.pos import Pos
from storesync_harness.processes import Agent, Hub
from tui.agent_client import AgentClient
from tui.app import StoreTuiApp
from tui.hub_client import HubClient
from tui.screens import ErrorReportScreen, TxnScreen

Notes = list[tuple[str, str]]


def record_notes(app: Any, monkeypatch: pytest.MonkeyPatch) -> Notes:
    """Capture ``app.notify`` calls as (severity, message)."""
    notes: Notes = []

    def notify(message: str, *, title: str = "", severity: str = "information", **_: Any) -> None:
        notes.append((severity, message))

    monkeypatch.setattr(app, "notify", notify)
    return notes


def text_of(app: Any, selector: str) -> str:
    return str(app.query_one(selector, Static).render())


async def test_sync_now_against_real_agent_then_agent_down(
    hub: Hub, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    agent = Agent.enrolled(tmp_path / "agent", hub, "S7")
    agent.start()
    try:
        pos = Pos("R1", seed=3)
        for _ in range(5):
            assert agent.post(pos.sale()).status_code == 201
        agent.wait_synced()
        app = StoreTuiApp.for_store(agent.data_dir, agent=AgentClient(agent.url), refresh_s=0)
        notes = record_notes(app, monkeypatch)
        async with app.run_test(size=(80, 24)) as pilot:
            await settle(pilot)
            assert text_of(app, "#status-line") == "All synced"
            await pilot.press("s")
            await settle(pilot)
            assert notes[-1] == ("information", "Sync started: the agent is sending now.")
            agent.kill()
            await pilot.press("s")
            await settle(pilot)
            assert notes[-1][0] == "error" and "not running" in notes[-1][1]
        # the same outbox, read after the agent died, with the clock past the heartbeat window
        later = StoreTuiApp.for_store(
            agent.data_dir, clock=lambda: datetime.now(UTC) + timedelta(minutes=2), refresh_s=0
        )
        async with later.run_test(size=(80, 24)) as pilot:
            await settle(pilot)
            assert text_of(later, "#status-line") == "Agent not running"
    finally:
        agent.stop()


async def test_sales_today_counts_by_business_day_with_returns_and_voids_apart(
    hub: Hub, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Three sales, a return and a void of today, and a back-dated sale imported today from a file."""
    drop = tmp_path / "drop"
    drop.mkdir()
    agent = Agent.enrolled(tmp_path / "agent", hub, "S7", "Europe/Berlin")
    agent.env = {"EDGE_AGENT_DROP_DIR": str(drop)}
    agent.start()
    try:
        local_now = datetime.now(UTC).astimezone(ZoneInfo("Europe/Berlin")).replace(tzinfo=None)
        midnight = local_now.replace(hour=0, minute=0, second=0, microsecond=0)
        # half an hour ago, but never yesterday (a run just after local midnight once counted 0 sales today)
        pos = Pos("R1", seed=3, start=max(local_now - timedelta(minutes=30), midnight + timedelta(seconds=1)))
        sales = [pos.sale() for _ in range(3)]
        for txn in [*sales, pos.return_of(sales[0]), pos.void_of(sales[1])]:
            assert agent.post(txn).status_code == 201
        old = Pos("F1", seed=4, start=datetime(2026, 5, 1, 10, 0)).sale()  # last spring's sale, imported today
        (drop / "old.jsonl").write_text(json.dumps(old) + "\n")

        def imported() -> bool:
            return (drop / "processed" / "old.jsonl").exists()

        for _ in range(100):
            if imported():
                break
            time.sleep(0.1)
        assert imported()
        app = StoreTuiApp.for_store(agent.data_dir, agent=AgentClient(agent.url), refresh_s=0)
        async with app.run_test(size=(100, 30)) as pilot:
            await settle(pilot)
            sales = str(app.screen.query_one("#fact-today .fact-value", Static).render())
            apart = str(app.screen.query_one("#fact-today .fact-sub", Static).render())
    finally:
        agent.stop()
    assert (sales, apart) == ("3", "1 ret · 1 void")


async def test_actions_say_when_agent_is_down(
    store_app: Callable[..., StoreTuiApp], monkeypatch: pytest.MonkeyPatch
) -> None:
    app = store_app("agent_down")
    notes = record_notes(app, monkeypatch)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        assert text_of(app, "#status-line").startswith("Agent not running")
        await pilot.press("s")
        await settle(pilot)
        assert notes[-1][0] == "error" and "The agent is not running" in notes[-1][1]
        await pilot.press("e", "r")
        await settle(pilot)
        assert all(sev == "warning" for sev, _ in notes[-2:])  # no drop folder: said, not silently ignored


async def test_verify_chain_ok_then_tampered(
    store_app: Callable[..., StoreTuiApp], monkeypatch: pytest.MonkeyPatch
) -> None:
    app = store_app("synced")
    notes = record_notes(app, monkeypatch)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        await pilot.press("v")
        await settle(pilot)
        assert notes[-1][0] == "information" and "stored sales check out" in notes[-1][1]
        conn = apsw.Connection(str(app.store.db_path))  # someone edits a stored sale behind the agent's back
        conn.execute("UPDATE outbox SET body = replace(body, '\"total\":', '\"total\" :') WHERE seq = 17")
        conn.close()
        await pilot.press("v")
        await settle(pilot)
        assert notes[-1][0] == "error" and "#17" in notes[-1][1]
        assert "fails its check" in text_of(app, "#problems")


async def test_tui_never_writes_the_outbox(store_app: Callable[..., StoreTuiApp]) -> None:
    app = store_app("importing")
    before = hashlib.sha256(app.store.db_path.read_bytes()).hexdigest()
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        await pilot.press("v", "slash", "R", "2")
        await settle(pilot)
    assert hashlib.sha256(app.store.db_path.read_bytes()).hexdigest() == before


async def test_error_report_and_retry(store_app: Callable[..., StoreTuiApp], monkeypatch: pytest.MonkeyPatch) -> None:
    app = store_app("importing")
    notes = record_notes(app, monkeypatch)
    folder = app.store.drops.folder
    assert folder is not None
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        await pilot.press("d", "e")
        await settle(pilot)
        assert isinstance(app.screen, ErrorReportScreen)
        assert app.screen.file == "franchise-0521.jsonl"
        report = folder / "rejected" / "franchise-0521.jsonl.errors.jsonl"
        assert app.screen.query_one(DataTable).row_count == len(report.read_text().splitlines()) >= 3
        await pilot.press("escape")
        await pilot.press("r")
        await settle(pilot)
        assert (folder / "franchise-0521.jsonl").is_file()
        assert not (folder / "processed" / "franchise-0521.jsonl").exists()
        assert len(list((folder / "rejected" / "retried").iterdir())) == 2  # old result and report kept
        assert "back in the drop folder" in notes[-1][1]
        drops = app.query_one("#drops", DataTable)
        assert "franchise-0521.jsonl" in [str(r.key.value) for r in drops.ordered_rows]
        await pilot.press("e")  # the refused-whole file has no error report: said so
        await settle(pilot)
        assert notes[-1][0] == "warning"


async def test_find_a_sale_and_check_it(store_app: Callable[..., StoreTuiApp]) -> None:
    app = store_app("offline")
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        await pilot.press("slash", *"R2-000003")
        await settle(pilot)
        table = app.query_one("#txns", DataTable)
        assert table.row_count == 1
        table.focus()
        await pilot.press("enter")
        await settle(pilot)
        assert isinstance(app.screen, TxnScreen)
        found = app.screen.found
        assert found.row.txn_id == "R2-000003" and found.row.reached_hub is True and found.chain_ok
        await pilot.press("escape")
        await pilot.press("slash", "ctrl+a", "ctrl+k", "#", "2", "0", "1")  # the newest sale is still waiting
        await settle(pilot)
        assert app.query_one("#txns", DataTable).get_row_at(0)[5] == "waiting"


async def test_fleet_replays_a_dead_letter(monkeypatch: pytest.MonkeyPatch) -> None:
    hub = HubStandIn()
    app = hub.app()
    notes = record_notes(app, monkeypatch)
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(pilot)
        assert app.query_one("#stores", DataTable).row_count == 3
        assert hub.token not in text_of(app, "#status-detail")
        await pilot.press("x")
        await settle(pilot)
    assert hub.replayed == ["erp/S043:2:977"]
    assert notes[-1] == ("information", "S043:2:977 queued again for erp")


async def test_fleet_against_real_hub(hub: Hub, monkeypatch: pytest.MonkeyPatch) -> None:
    """A real hub: stores always; sinks when it has the forwarding admin endpoints, else 'not available'."""
    hub.add_store("S1")
    has_sinks = httpx.get(hub.url + "/v1/admin/sinks", headers={"Authorization": f"Bearer {hub.admin_token}"})
    app = StoreTuiApp.for_fleet(
        HubClient(hub.url, hub.admin_token), hub_url=hub.url, token=hub.admin_token, refresh_s=0
    )
    notes = record_notes(app, monkeypatch)
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(pilot)
        assert app.query_one("#stores", DataTable).get_row_at(0)[0] == "S1"
        await pilot.press("x")
        await settle(pilot)
        if has_sinks.status_code == 404:
            assert text_of(app, "#sinks-note") == "not available on this hub"
            assert notes[-1] == ("warning", "Replay is not available on this hub.")
        else:
            sinks = has_sinks.json()["sinks"]
            assert app.query_one("#sinks", DataTable).row_count == len(sinks)
            assert text_of(app, "#dead-note") == "no dead letters"
            assert notes[-1] == ("warning", "No dead letter to replay.")


async def test_fleet_with_a_wrong_token_says_so() -> None:
    stand_in = HubStandIn()
    stand_in.token = "another"
    app = StoreTuiApp.for_fleet(
        HubClient("https://hub.example.com", "wrong", transport=httpx.MockTransport(stand_in)),
        hub_url="https://hub.example.com", token="wrong", refresh_s=0,
    )  # fmt: skip
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(pilot)
        assert "refused the admin token" in text_of(app, "#status-line")


async def test_one_app_switches_between_the_store_and_the_fleet_screen(tmp_path: Path) -> None:
    """Given a data folder and a hub, the one app shows the store screen first; f and t switch screens."""
    from tui_states import build, frozen_now
    from tui_support import DEAD_PORT_URL

    from tui.fleet_screen import FleetScreen
    from tui.store_screen import StoreScreen

    data, drops = build("synced", tmp_path / "synced")
    stand_in = HubStandIn()
    client = HubClient("https://hub.example.com", stand_in.token, transport=httpx.MockTransport(stand_in))
    store = StoreScreen(data, drop_dir=drops, clock=frozen_now, refresh_s=0, agent=AgentClient(DEAD_PORT_URL))
    fleet = FleetScreen(client, hub_url="https://hub.example.com", token=stand_in.token, clock=frozen_now, refresh_s=0)
    app = StoreTuiApp(store=store, fleet=fleet)
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(pilot)
        assert app.screen is store and text_of(app, "#status-line") == "All synced"
        await pilot.press("f")
        await settle(pilot)
        assert app.screen is fleet and app.screen.query_one("#stores", DataTable).row_count == 3
        await pilot.press("t")
        await settle(pilot)
        assert app.screen is store and text_of(app, "#status-line") == "All synced"
    with pytest.raises(ValueError):
        StoreTuiApp()


async def test_fleet_store_table_fits_100_columns() -> None:
    """At 100 columns every store column is on screen whole (no header cut to "Fallb", no sideways scroll)."""
    async with HubStandIn().app().run_test(size=(100, 30)) as pilot:
        await settle(pilot)
        table = pilot.app.screen.query_one("#stores", DataTable)
        labels = [str(c.label) for c in table.columns.values()]
        assert table.virtual_size.width <= table.scrollable_content_region.width, (labels, table.virtual_size)
        assert table.max_scroll_x == 0


async def test_store_screen_says_catching_up_with_records_and_eta(tmp_path: Path) -> None:
    """A backlog draining (two partial receipts in the last minute): the headline gives what is left and the ETA."""
    from tui_states import NOW, Clock, Store, agent_clock, frozen_now
    from tui_support import DEAD_PORT_URL

    from sync_protocol.wire import Receipt

    store = Store(tmp_path / "agent", clock=Clock(NOW - timedelta(minutes=40)))
    store.sell(300)  # 7 s apart: the last at NOW - 5 min
    for ago, through in ((50, 60), (25, 120)):  # 120 records acknowledged over the last 50 s
        clock = Clock(NOW - timedelta(seconds=ago))
        with agent_clock(clock):
            chain = store.outbox.chain_at(1, through)
            assert chain is not None
            before = store.outbox.acked_through()
            store.outbox.apply_receipt(Receipt.issue(store.hub_key, store.store_id, 1, through, chain),
                                       store.hub_key.public_key())  # fmt: skip
            store.outbox.log_burst(first_seq=before + 1, last_seq=through, count=through - before, result="ok",
                                   http_status=200, ms=40.0)  # fmt: skip
            store.outbox.update_sync(last_sync_at=clock.utc(), last_success_at=clock.utc(), last_sync_result="ok")
    store.heartbeat(NOW - timedelta(seconds=2))
    store.close()
    app = StoreTuiApp.for_store(store.data_dir, clock=frozen_now, refresh_s=0, agent=AgentClient(DEAD_PORT_URL))
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(pilot)
        assert text_of(app, "#status-line") == "Catching up: 180 records, ~75 s (2/s)"
        assert text_of(app, "#status-detail") == "Sending 180 sales waiting to head office."
