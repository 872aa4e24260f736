"""The store screen of ``store-tui``: the store's sync status at a glance.

The outbox is read through the agent store's read-only view (``tui.agent_data`` over
``edge_agent.store.StoreView``), actions go to the agent's loopback API (``tui.agent_client``), and
every read or call runs in a thread worker; the screen is refreshed on a timer
(:mod:`tui.clock`) by updating widgets in place.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import Screen
from textual.widgets import (
    DataTable,
    Footer,
    Header,
    Input,
    Label,
    ProgressBar,
    Sparkline,
    Static,
    TabbedContent,
    TabPane,
)

from edge_agent.store.view import VerifyReport

from . import agent_data, drops_data
from . import format as fmt
from .agent_client import AgentClient, resolve_agent_url
from .clock import REFRESH_S, Clock, every, system_clock
from .screens import ErrorReportScreen, TxnScreen, sync_rows

LEVELS = ("ok", "busy", "warn", "error")


class Fact(Vertical):
    """One labelled figure in the facts row."""

    def __init__(self, label: str, fact_id: str) -> None:
        super().__init__(id=fact_id, classes="fact")
        self._label = label

    def compose(self) -> ComposeResult:
        yield Label(self._label, classes="fact-label", markup=False)
        yield Static("-", classes="fact-value", markup=False)
        yield Static("", classes="fact-sub", markup=False)

    def set(self, value: str, sub: str = "") -> None:
        self.query_one(".fact-value", Static).update(value)
        self.query_one(".fact-sub", Static).update(sub)


class StoreScreen(Screen[None]):
    """The store's main screen: status line, facts, backlog sparkline and panels."""

    BINDINGS = [
        Binding("s", "sync_now", "Sync now"),
        Binding("v", "verify_chain", "Verify"),
        Binding("e", "error_report", "Errors"),
        Binding("r", "retry_file", "Retry file"),
        Binding("slash", "search", "Find"),
        Binding("p", "show_tab('tab-problems')", "Problems", show=False),
        Binding("d", "show_tab('tab-drops')", "Drops", show=False),
        Binding("b", "show_tab('tab-bursts')", "Bursts", show=False),
    ]

    def __init__(
        self,
        data_dir: Path,
        *,
        agent_url: str | None = None,
        drop_dir: Path | None = None,
        clock: Clock = system_clock,
        refresh_s: float = REFRESH_S,
        agent: AgentClient | None = None,
    ) -> None:
        super().__init__()
        self.data_dir = data_dir
        self.db_path = data_dir / "outbox.db"
        self.clock = clock
        self.refresh_s = refresh_s
        self.agent = agent or AgentClient(resolve_agent_url(agent_url))
        self.drops = drops_data.DropTracker(drop_dir, self.db_path)
        self.view: agent_data.AgentView | None = None
        self.imports: list[drops_data.DropImport] | None = None
        self.verify_report: VerifyReport | None = None
        self._txns: dict[str, agent_data.TxnRow] = {}

    # -- layout ---------------------------------------------------------------------------------

    def compose(self) -> ComposeResult:
        yield Header()
        with Vertical(id="banner", classes="busy"):
            yield Static("Reading the store's outbox…", id="status-line", markup=False)
            yield Static("", id="status-detail", markup=False)
        with Horizontal(id="facts"):
            yield Fact("Waiting", "fact-pending")
            yield Fact("Oldest", "fact-oldest")
            yield Fact("Last sync", "fact-last-sync")
            yield Fact("Head office", "fact-hub")
            yield Fact("Sales today", "fact-today")
        with Horizontal(id="spark-row"):
            yield Label(f"Waiting, last {agent_data.SPARK_HOURS} h", id="spark-label", markup=False)
            yield Sparkline([], id="backlog")
            yield Static("nothing waited", id="spark-none", markup=False)
        with TabbedContent(id="tabs", initial="tab-problems"):
            with TabPane("Needs a person", id="tab-problems"), VerticalScroll(id="problems-scroll"):
                yield Static("Nothing needs attention.", id="problems", markup=False)
            with TabPane("Recent syncs", id="tab-bursts"):
                yield DataTable(id="bursts", cursor_type="row", zebra_stripes=True)
            with TabPane("Drop files", id="tab-drops"):
                yield Static("", id="drop-note", markup=False)
                with Horizontal(id="import-progress"):
                    yield Label("", id="import-label", markup=False)
                    yield ProgressBar(total=None, show_eta=False, id="import-bar")
                yield DataTable(id="drops", cursor_type="row", zebra_stripes=True)
            with TabPane("Sales", id="tab-txns"):
                yield Input(placeholder="Find a sale: receipt id, register or #seq", id="search")
                yield DataTable(id="txns", cursor_type="row", zebra_stripes=True)
                yield Static("", id="txn-summary", markup=False)
        yield Footer()

    def on_mount(self) -> None:
        self.query_one("#bursts", DataTable).add_columns("Time", "Sales", "Result", "Took")
        self.query_one("#drops", DataTable).add_columns("File", "State", "Rows", "Accepted", "Rejected", "Progress")
        txns = self.query_one("#txns", DataTable)
        for label, key in (("#", "seq"), ("Receipt", "txn"), ("Register", "reg"), ("Kind", "kind"),
                           ("Total", "total"), ("Head office", "hub")):  # fmt: skip
            txns.add_column(label, key=key)
        self.query_one("#import-progress").display = False
        self.refresh_data()
        self.search_txns("")
        every(self, self.refresh_s, self.refresh_data)

    # -- reading (thread workers) ---------------------------------------------------------------

    @work(thread=True, exclusive=True, group="refresh")
    def refresh_data(self) -> None:
        """Read the outbox and the drop folder, then update the screen."""
        now = self.clock()
        view = agent_data.read_view(self.db_path, now)
        imports = self.drops.scan()
        self.app.call_from_thread(self.show, view, imports, now)

    @work(thread=True, exclusive=True, group="search")
    def search_txns(self, text: str) -> None:
        """Look up sales in the outbox."""
        try:
            rows = agent_data.search(self.db_path, text)
        except Exception as exc:
            self.app.call_from_thread(self.query_one("#txn-summary", Static).update, f"Cannot search: {exc}")
            return
        self.app.call_from_thread(self.show_txns, rows)

    @work(thread=True, exclusive=True, group="detail")
    def load_detail(self, epoch: int, seq: int, modal: bool) -> None:
        """Check one record's chain link and signature."""
        found = agent_data.detail(self.db_path, epoch, seq)
        if found is None:
            return
        if modal:
            self.app.call_from_thread(self.app.push_screen, TxnScreen(found))
        else:
            self.app.call_from_thread(self.query_one("#txn-summary", Static).update, txn_summary(found))

    # -- showing --------------------------------------------------------------------------------

    def show(self, view: agent_data.AgentView, imports: list[drops_data.DropImport] | None, now: datetime) -> None:
        """Put a fresh read on screen, widget by widget (no rebuild, no flicker)."""
        self.view, self.imports = view, imports
        status = view.status
        tz = fmt.zone(view.tz)
        line = fmt.status_line(status, now, tz)
        if view.error and status is None:
            line = fmt.StatusLine("No agent data found", "error", f"{view.error}. Start the agent or check --data-dir.")
        banner = self.query_one("#banner")
        for level in LEVELS:
            banner.set_class(level == line.level, level)
        self.query_one("#status-line", Static).update(line.text)
        self.query_one("#status-detail", Static).update(line.detail)
        if status is not None:
            self.sub_title = f"Store {status.get('store_id') or '?'}"
            self.query_one("#fact-pending", Fact).set(fmt.count(status.get("pending")))
            oldest = fmt.parse_time(status.get("oldest_pending_captured_at"))
            self.query_one("#fact-oldest", Fact).set(fmt.age(oldest, now) if status.get("pending") else "-")
            self.query_one("#fact-last-sync", Fact).set(
                fmt.clock(fmt.parse_time(status.get("last_success_at")), now, tz)
            )
            running = not line.text.startswith("Agent not running")
            self.query_one("#fact-hub", Fact).set(
                fmt.hub_text(status, now, tz) if running else "unknown (agent stopped)"
            )
            self.query_one("#fact-today", Fact).set(*fmt.sales_today(view.today))
        spark = self.query_one("#backlog", Sparkline)
        spark.data = view.backlog or [0.0]
        spark.display = max(view.backlog or [0.0]) > 0
        self.query_one("#spark-none", Static).display = not spark.display
        self.show_bursts(view, now, tz)
        self.show_problems(status, imports, now)
        self.show_drops(imports)

    def show_bursts(self, view: agent_data.AgentView, now: datetime, tz: Any) -> None:
        rows = []
        for b in view.bursts:
            cells = [
                fmt.clock(b["at"], now, tz),
                fmt.burst_records(b["count"], b["first_seq"], b["last_seq"]),
                fmt.burst_result(b["result"], b["http_status"]),
                f"{(b['ms'] or 0):.0f} ms",
            ]
            rows.append((str(b["id"]), cells))
        sync_rows(self.query_one("#bursts", DataTable), rows)

    def problems(
        self, status: dict[str, Any] | None, imports: list[drops_data.DropImport] | None, now: datetime
    ) -> list[fmt.Problem]:
        """Everything that needs a person, most urgent first."""
        out: list[fmt.Problem] = []
        line = fmt.status_line(status, now, fmt.zone(status.get("tz")) if status else None)
        if status is not None and line.text.startswith("Agent not running"):
            step = "Start it (edge-agent run) or restart the store computer; call support if it stays down."
            out.append(fmt.Problem("agent", "The sync service is not running", line.detail, step))
        block = fmt.explain_block(status.get("blocked") if status else None)
        if block:
            out.append(block)
        if self.verify_report is not None and not self.verify_report.ok:
            out.append(fmt.chain_problem(self.verify_report.bad_seq, self.verify_report.reason))
        for d in imports or []:
            if d.needs_fixing:
                out.append(fmt.drop_problem(d.file, d.state, d.rejected, d.reason))
        return out

    def show_problems(
        self, status: dict[str, Any] | None, imports: list[drops_data.DropImport] | None, now: datetime
    ) -> None:
        found = self.problems(status, imports, now)
        text = Text()
        for i, p in enumerate(found):
            if i:
                text.append("\n\n")
            text.append(f"● {p.title}\n", style="bold")
            text.append(f"{p.explanation}\n")
            text.append("Next step: ", style="bold")
            text.append(p.next_step)
        self.query_one("#problems", Static).update(text if found else "Nothing needs attention.")
        self.query_one("#tabs", TabbedContent).get_tab("tab-problems").label = (
            f"Needs a person ({len(found)})" if found else "Needs a person"
        )

    def show_drops(self, imports: list[drops_data.DropImport] | None) -> None:
        note = self.query_one("#drop-note", Static)
        table = self.query_one("#drops", DataTable)
        bar_row = self.query_one("#import-progress")
        if imports is None:
            note.update("No drop folder configured (use --drop-dir or EDGE_AGENT_DROP_DIR).")
            note.display, table.display, bar_row.display = True, False, False
            return
        note.display, table.display = not imports, True
        note.update("No files dropped yet.")
        rows = []
        for d in imports:
            rows.append((d.file, [d.file, d.state.replace("_", " "), fmt.count(d.rows), fmt.count(d.accepted),
                                  fmt.count(d.rejected), fmt.progress_text(d.done, d.total, d.state)]))  # fmt: skip
        sync_rows(table, rows)
        running = next((d for d in imports if d.state == "running"), None)
        bar_row.display = running is not None
        if running is not None:
            self.query_one("#import-label", Label).update(f"Importing {running.file}")
            self.query_one("#import-bar", ProgressBar).update(total=running.total, progress=running.done)

    def show_txns(self, rows: list[agent_data.TxnRow]) -> None:
        self._txns = {f"{r.epoch}/{r.seq}": r for r in rows}
        table = self.query_one("#txns", DataTable)
        reached = {True: "reached", False: "waiting", None: "earlier key"}
        sync_rows(table, [(k, [str(r.seq), r.txn_id, r.register_id, r.kind, r.total, reached[r.reached_hub]])
                          for k, r in self._txns.items()])  # fmt: skip
        if not rows:
            self.query_one("#txn-summary", Static).update("No sale matches.")

    # -- events ---------------------------------------------------------------------------------

    @on(Input.Submitted, "#search")
    @on(Input.Changed, "#search")
    def _search(self, event: Input.Changed | Input.Submitted) -> None:
        self.search_txns(event.value)

    @on(DataTable.RowHighlighted, "#txns")
    def _txn_highlighted(self, event: DataTable.RowHighlighted) -> None:
        row = self._txns.get(str(event.row_key.value))
        if row is not None:
            self.load_detail(row.epoch, row.seq, False)

    @on(DataTable.RowSelected, "#txns")
    def _txn_selected(self, event: DataTable.RowSelected) -> None:
        row = self._txns.get(str(event.row_key.value))
        if row is not None:
            self.load_detail(row.epoch, row.seq, True)

    # -- actions --------------------------------------------------------------------------------

    def action_show_tab(self, tab: str) -> None:
        self.query_one("#tabs", TabbedContent).active = tab

    def action_search(self) -> None:
        self.action_show_tab("tab-txns")
        self.query_one("#search", Input).focus()

    @work(thread=True, exclusive=True, group="sync")
    def action_sync_now(self) -> None:
        """Sync now: ``POST /v1/sync`` on the agent."""
        result = self.agent.sync_now()
        severity = "information" if result.ok else "error"
        self.app.call_from_thread(self.app.notify, result.message, title="Sync now", severity=severity, markup=False)
        self.app.call_from_thread(self.refresh_data)

    @work(thread=True, exclusive=True, group="verify")
    def action_verify_chain(self) -> None:
        """Walk the whole outbox chain read-only, as ``edge-agent verify`` does."""
        self.app.call_from_thread(self.app.notify, "Checking every stored sale…", title="Verify chain", markup=False)
        try:
            report = agent_data.verify(self.db_path)
        except Exception as exc:
            self.app.call_from_thread(
                self.app.notify, f"Cannot verify: {exc}", title="Verify chain", severity="error", markup=False
            )
            return
        self.verify_report = report
        if report.ok:
            msg, severity = f"All {fmt.count(report.count)} stored sales check out.", "information"
        else:
            msg, severity = f"Sale #{report.bad_seq} fails: {report.reason}", "error"
        self.app.call_from_thread(self.app.notify, msg, title="Verify chain", severity=severity, markup=False)
        self.app.call_from_thread(self.refresh_data)

    def chosen_file(self) -> drops_data.DropImport | None:
        """The drop file the actions apply to: the highlighted one if it needs fixing, else the first such."""
        imports = self.imports or []
        table = self.query_one("#drops", DataTable)
        if table.row_count and self.query_one("#tabs", TabbedContent).active == "tab-drops":
            key = table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value
            chosen = next((d for d in imports if d.file == key and d.needs_fixing), None)
            if chosen is not None:
                return chosen
        return next((d for d in imports if d.needs_fixing), None)

    def action_error_report(self) -> None:
        """Open the error report of a rejected drop file."""
        chosen = self.chosen_file()
        if chosen is None or chosen.errors_report is None:
            what = "No rejected drop file has an error report." if chosen is None else chosen.reason or "no report"
            self.app.notify(what, title="Error report", severity="warning", markup=False)
            return
        self.open_report(chosen)

    @work(thread=True, exclusive=True, group="report")
    def open_report(self, chosen: drops_data.DropImport) -> None:
        assert chosen.errors_report is not None
        try:
            lines = drops_data.read_error_report(chosen.errors_report)
        except OSError as exc:
            self.app.call_from_thread(self.app.notify, f"Cannot read the report: {exc}", severity="error", markup=False)
            return
        self.app.call_from_thread(self.app.push_screen, ErrorReportScreen(chosen.file, lines))

    @work(thread=True, exclusive=True, group="retry")
    def action_retry_file(self) -> None:
        """Retry a rejected drop file: through the agent when it offers that, else move it back."""
        chosen = self.app.call_from_thread(self.chosen_file)
        if chosen is None:
            self.app.call_from_thread(
                self.app.notify, "No rejected drop file to retry.", title="Retry", severity="warning", markup=False
            )
            return
        via_agent = self.agent.retry_drop(chosen.file, chosen.sha256)
        if via_agent is not None:
            severity = "information" if via_agent.ok else "error"
            self.app.call_from_thread(
                self.app.notify, via_agent.message, title="Retry", severity=severity, markup=False
            )
        else:
            self._retry_by_move(chosen.file)
        self.app.call_from_thread(self.refresh_data)

    def _retry_by_move(self, file: str) -> None:
        folder = self.drops.folder
        if folder is None:
            self.app.call_from_thread(
                self.app.notify, "No drop folder configured.", title="Retry", severity="error", markup=False
            )
            return
        try:
            drops_data.retry(folder, file, self.clock())
        except (OSError, FileExistsError) as exc:
            self.app.call_from_thread(
                self.app.notify, f"Cannot retry {file}: {exc}", title="Retry", severity="error", markup=False
            )
            return
        running = (
            self.view is not None
            and self.view.status is not None
            and not fmt.status_line(self.view.status, self.clock()).text.startswith("Agent not running")
        )
        msg = f"{file} is back in the drop folder and will be imported again."
        if not running:
            msg += " The agent is not running: the import starts when it does."
        self.app.call_from_thread(
            self.app.notify, msg, title="Retry", severity="information" if running else "warning", markup=False
        )


def txn_summary(d: agent_data.TxnDetail) -> str:
    """One line under the sales table: seq, whether head office has it, the chain check."""
    hub = {True: "reached head office", False: "not yet at head office", None: "earlier key"}[d.row.reached_hub]
    check = "chain ok" if d.chain_ok else f"CHAIN FAILS: {d.chain_text}"
    return f"#{d.row.seq} {d.row.txn_id} · {hub} · {check} · Enter for details"
