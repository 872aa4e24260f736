"""Modal screens of the store TUI (error report, one sale) and the in-place table update helper."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from rich.markup import escape
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import DataTable, Footer, Label, Static

from sync_protocol.cards import mask_value

from .agent_data import TxnDetail


def plain_cells(cells: Sequence[Any]) -> list[Any]:
    """Cells as a DataTable shows them literally: a str cell is otherwise read as Rich markup.

    Text from a POS, a drop file or the hub (a ``txn_id`` of ``[/]X``) is shown as it is and can never
    style, hide or crash the screen (docs/security.md).
    """
    return [escape(c) if isinstance(c, str) else c for c in cells]


def sync_rows(table: DataTable[Any], rows: Sequence[tuple[str, list[Any]]]) -> None:
    """Make ``table`` show ``rows`` (key, cells) with as little change as possible.

    Same keys in the same order: only changed cells are updated. Otherwise the table is rebuilt in
    one go (one repaint) and the cursor stays on the same key when it is still there.
    """
    rows = [(k, plain_cells(cells)) for k, cells in rows]
    keys = [k for k, _ in rows]
    current = [str(r.key.value) for r in table.ordered_rows]
    columns = [c.key for c in table.ordered_columns]
    if keys == current:
        for key, cells in rows:
            old = table.get_row(key)
            for col, new, was in zip(columns, cells, old, strict=False):
                if new != was:
                    table.update_cell(key, col, new)
        return
    cursor_key = current[table.cursor_row] if current and 0 <= table.cursor_row < len(current) else None
    table.clear()
    for key, cells in rows:
        table.add_row(*cells, key=key)
    if cursor_key in keys:
        table.move_cursor(row=keys.index(cursor_key), animate=False)


class ErrorReportScreen(ModalScreen[None]):
    """The ``.errors.jsonl`` report of a drop file: line, field, reason, the original row."""

    BINDINGS = [Binding("escape,q", "dismiss", "Close")]

    def __init__(self, file: str, lines: list[dict[str, Any]]) -> None:
        super().__init__()
        self.file = file
        self.lines = lines

    def compose(self) -> ComposeResult:
        with Vertical(id="report", classes="dialog"):
            yield Label(f"Errors in {self.file} ({len(self.lines)} shown)", classes="dialog-title", markup=False)
            yield Static("Fix these rows in the file, then retry it with r.", classes="dialog-hint", markup=False)
            yield DataTable(id="report-table", cursor_type="row", zebra_stripes=True)
            yield Footer()

    def on_mount(self) -> None:
        table = self.query_one(DataTable)
        table.add_columns("Line", "Field", "Reason", "Row")
        for i, rec in enumerate(self.lines):
            row = rec.get("row")
            table.add_row(
                *plain_cells(
                    [
                        str(rec.get("line", "")),
                        str(rec.get("field", "")),
                        str(rec.get("reason", "")),
                        (row if isinstance(row, str) else json.dumps(row))[:200] if row is not None else "",
                    ]
                ),
                key=str(i),
            )


class TxnScreen(ModalScreen[None]):
    """One stored sale: its seq, whether head office has it, its chain check and the signed record."""

    BINDINGS = [Binding("escape,q", "dismiss", "Close")]

    def __init__(self, found: TxnDetail) -> None:
        super().__init__()
        self.found = found

    def compose(self) -> ComposeResult:
        d = self.found
        r = d.row
        hub = {True: "yes, head office has it", False: "not yet: waiting to be sent", None: "earlier key (epoch)"}
        head = Text()
        for label, value in (
            ("Sale", f"{r.txn_id} on register {r.register_id} ({r.kind}, {r.total})"),
            ("Number", f"#{r.seq} (epoch {r.epoch})"),
            ("Recorded", f"{r.captured_at} from {r.origin}"),
            ("Head office", hub[r.reached_hub]),
            ("Chain check", ("ok: " if d.chain_ok else "FAILS: ") + d.chain_text),
            ("Chain", d.chain_hex[:32] + "…"),
        ):
            head.append(f"{label:<12}", style="bold")
            head.append(f"{value}\n", style="red" if label == "Chain check" and not d.chain_ok else "")
        with Vertical(id="txn", classes="dialog"):
            yield Label(f"Sale {r.txn_id}", classes="dialog-title", markup=False)
            yield Static(head, id="txn-head", markup=False)
            with VerticalScroll(id="txn-body"):
                yield Static(
                    json.dumps(mask_value(d.body.get("txn", d.body)), indent=2, ensure_ascii=False), markup=False
                )
            yield Footer()
