"""The fleet screen of ``store-tui`` for head office: every store's progress, and forwarding health when the hub has it.

Everything comes from the hub's HTTP admin API (:mod:`tui.hub_client`), read in a thread worker on the
refresh timer of :mod:`tui.clock`.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Header, Label, Static

from . import format as fmt
from .clock import FLEET_REFRESH_S, Clock, every, system_clock
from .hub_client import FleetData, HubClient
from .screens import sync_rows

STALE_S = 15 * 60


class FleetScreen(Screen[None]):
    """Stores (last seen, lag, acked, backlog and sync lag, conflicts, failed mappings, time fallbacks),
    sinks (pending, delivery lag, dead letters) and dead letters; replay."""

    TITLE = "StoreSync fleet"
    BINDINGS = [
        Binding("x", "replay", "Replay dead letter"),
        Binding("g", "refresh", "Refresh"),
    ]

    def __init__(
        self,
        hub: HubClient,
        *,
        hub_url: str,
        token: str | None,
        clock: Clock = system_clock,
        refresh_s: float = FLEET_REFRESH_S,
    ) -> None:
        super().__init__()
        self.hub = hub
        self.hub_url = hub_url
        self.token = token
        self.clock = clock
        self.refresh_s = refresh_s
        self.data: FleetData | None = None

    def compose(self) -> ComposeResult:
        yield Header()
        with Vertical(id="banner", classes="busy"):
            yield Static("Reading the hub…", id="status-line", markup=False)
            yield Static(f"{self.hub_url} · admin token {fmt.mask_token(self.token)}", id="status-detail", markup=False)
        yield Label("Stores", classes="section", markup=False)
        yield DataTable(id="stores", cursor_type="row", zebra_stripes=True)
        yield Label("Sinks", classes="section", markup=False)
        yield Static("", id="sinks-note", markup=False)
        yield DataTable(id="sinks", cursor_type="row", zebra_stripes=True)
        yield Label("Dead letters", classes="section", markup=False)
        yield Static("", id="dead-note", markup=False)
        yield DataTable(id="dead", cursor_type="row", zebra_stripes=True)
        yield Footer()

    def on_mount(self) -> None:
        self.query_one("#stores", DataTable).add_columns(
            "Store", "Seen", "Lag", "Acked", "Backlog", "Sync lag", "Conflicts", "Unmapped", "Fallbacks"
        )
        self.query_one("#sinks", DataTable).add_columns("Sink", "Kind", "Pending", "Delivery lag", "Dead letters")
        self.query_one("#dead", DataTable).add_columns("Delivery", "Sink", "Event", "Tries", "Last error")
        self.action_refresh()
        every(self, self.refresh_s, self.action_refresh)

    @work(thread=True, exclusive=True, group="refresh")
    def action_refresh(self) -> None:
        """Read stores, sinks and dead letters from the hub."""
        data = self.hub.fleet()
        self.app.call_from_thread(self.show, data, self.clock())

    def show(self, data: FleetData, now: datetime) -> None:
        """Update the tables in place."""
        self.data = data
        banner = self.query_one("#banner")
        line = self.query_one("#status-line", Static)
        if data.error:
            level, text = "error", f"Hub not readable: {data.error}"
        else:
            stale = [s for s in data.stores if _lag(s, now) is None or (_lag(s, now) or 0) > STALE_S]
            conflicts = sum(int(s.get("conflicts") or 0) for s in data.stores)
            dead = sum(_dead(k) for k in data.sinks or [])
            parts = [fmt.plural(len(data.stores), "store")]
            if stale:
                parts.append(f"{len(stale)} not seen for {fmt.duration(STALE_S)}")
            if conflicts:
                parts.append(fmt.plural(conflicts, "conflict"))
            if dead:
                parts.append(fmt.plural(dead, "dead letter"))
            failed = sum(int(s.get("derive_errors") or 0) for s in data.stores)
            fell_back = sum(int(s.get("time_fallbacks") or 0) for s in data.stores)
            if failed:
                parts.append(fmt.plural(failed, "failed mapping"))
            if fell_back:
                parts.append(fmt.plural(fell_back, "time fallback"))
            blocked = [s for s in data.stores if s.get("blocked")]
            if blocked:
                first = blocked[0]
                why = f"{first.get('store_id')}: {first.get('blocked_reason') or first.get('blocked')}"
                parts.append(f"{fmt.plural(len(blocked), 'agent')} blocked ({why})")
            level = "error" if conflicts or dead or failed or blocked else "warn" if stale or fell_back else "ok"
            text = " · ".join(parts)
        for lv in ("ok", "busy", "warn", "error"):
            banner.set_class(lv == level, lv)
        line.update(text)
        rows = []
        for s in sorted(data.stores, key=lambda s: str(s.get("store_id"))):
            seen = fmt.parse_time(s.get("last_seen_at"))
            rows.append((str(s.get("store_id")), [
                f"{s.get('store_id')} ⚠ blocked" if s.get("blocked") else str(s.get("store_id")),
                fmt.clock(seen, now, fmt.zone(s.get("tz"))), fmt.lag_text(_lag(s, now)),
                f"#{fmt.count(s.get('acked_through'))} (epoch {s.get('epoch')})",
                fmt.count(s["backlog"]) if s.get("backlog") is not None else "-", fmt.lag_text(s.get("sync_lag_s")),
                fmt.count(s.get("conflicts") or 0), fmt.count(s.get("derive_errors") or 0),
                fmt.count(s.get("time_fallbacks") or 0),
            ]))  # fmt: skip
        sync_rows(self.query_one("#stores", DataTable), rows)
        self._optional("sinks", data.sinks, [
            (str(k.get("name")), [str(k.get("name")), str(k.get("kind", "")), fmt.count(k.get("pending")),
                                  fmt.lag_text(k.get("oldest_pending_age_s")), fmt.count(_dead(k))])
            for k in data.sinks or []
        ], "no sinks configured")  # fmt: skip
        self._optional("dead", data.dead, [
            (str(d.get("id")), [str(d.get("id")), str(d.get("sink", "")), str(d.get("event_id", "")),
                                str(d.get("attempts", "")), str(d.get("last_error", ""))[:60]]) for d in data.dead or []
        ], "no dead letters")  # fmt: skip

    def _optional(self, name: str, items: list[Any] | None, rows: list[tuple[str, list[Any]]], empty: str) -> None:
        note = self.query_one(f"#{name}-note", Static)
        table = self.query_one(f"#{name}", DataTable)
        if self.data is not None and self.data.error:
            note.update("-")
        elif items is None:
            note.update("not available on this hub")
        else:
            note.update(empty)
        note.display = not items
        table.display = bool(items)
        sync_rows(table, rows)

    def action_replay(self) -> None:
        """Replay the highlighted dead letter."""
        if self.data is None or self.data.dead is None:
            self.app.notify("Replay is not available on this hub.", title="Replay", severity="warning", markup=False)
            return
        table = self.query_one("#dead", DataTable)
        if not table.row_count:
            self.app.notify("No dead letter to replay.", title="Replay", severity="warning", markup=False)
            return
        key = str(table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value)
        chosen = next((d for d in self.data.dead if str(d.get("id")) == key), None)
        if chosen is not None:
            self.replay(str(chosen.get("event_id")), str(chosen.get("sink")))

    @work(thread=True, exclusive=True, group="replay")
    def replay(self, event_id: str, sink: str) -> None:
        ok, message = self.hub.replay(event_id, sink)
        self.app.call_from_thread(
            self.app.notify, message, title="Replay", severity="information" if ok else "error", markup=False
        )
        self.app.call_from_thread(self.action_refresh)


def _dead(sink: dict[str, Any]) -> int:
    value = sink.get("dead", sink.get("dead_letters"))
    return int(value or 0)


def _lag(store: dict[str, Any], now: datetime) -> float | None:
    seen = fmt.parse_time(store.get("last_seen_at"))
    return None if seen is None else max(0.0, (now - seen).total_seconds())
