"""The canonical CSV drop: one row per line item, rows of one transaction consecutive by ``txn_id``.

Spec (with an example) in ``docs/file-drops.md``. In short: the first row of a transaction carries
the transaction fields (``register_id``, ``kind``, ``occurred_at``, ``currency``, ``total``,
``original_*``, ``voided_txn_id``); later rows may leave them blank or repeat them exactly. Each row
holds at most one line item (``sku`` … ``disposition``) and at most one tender (``tender_type``,
``tender_amount``, ``card_last4``): the k-th tender sits on the k-th row, so a transaction with more
tenders than lines adds rows with a blank line part, and a void is a single row with neither. The
optional ``line_type`` column is the line's v2 ``type`` (``shipping``, ``gift_card`` …); a transaction
with a line type is schema ``storesync.pos.v2``, one without stays v1.
"""

from __future__ import annotations

import csv
from collections.abc import Iterable, Iterator
from typing import IO, Any

from sync_protocol.transaction import SCHEMA_V2

from .formats import (
    INDEXED,
    Checkpoint,
    DropRejected,
    LineError,
    Parsed,
    Record,
    check_columns,
    detect,
    iter_records,
    validate,
)

FORMAT = "csv_canonical"
COLUMNS = (
    "txn_id", "register_id", "kind", "occurred_at", "currency",
    "sku", "name", "qty", "unit_price", "discount", "tax", "disposition",
    "tender_type", "tender_amount", "card_last4",
    "total", "original_channel", "original_order_id", "voided_txn_id", "line_type",
)  # fmt: skip
REQUIRED = (
    "txn_id", "register_id", "kind", "occurred_at", "currency",
    "sku", "qty", "unit_price", "tender_type", "tender_amount", "total",
)  # fmt: skip
TXN_COLUMNS = ("register_id", "kind", "occurred_at", "currency", "total",
               "original_channel", "original_order_id", "voided_txn_id")  # fmt: skip
LINE_COLUMNS = ("sku", "name", "qty", "unit_price", "discount", "tax", "disposition", "line_type")
_LINE_FIELD = {c: c for c in LINE_COLUMNS} | {"line_type": "type"}
_LINE_COLUMN = {field: col for col, field in _LINE_FIELD.items()}
TENDER_COLUMNS = ("tender_type", "tender_amount", "card_last4")
_TENDER_FIELD = {"type": "tender_type", "amount": "tender_amount", "card_last4": "card_last4"}
_OPTIONAL_TXN = ("original_channel", "original_order_id", "voided_txn_id")


class _Group:
    """The records of one transaction while they are being read."""

    def __init__(self, txn_id: str) -> None:
        self.txn_id = txn_id
        self.records: list[Record] = []
        self.rows: list[dict[str, str]] = []
        self.row_lines: list[int] = []
        self.errors: list[LineError] = []


def read_csv_canonical(f: IO[bytes], start: Checkpoint | None = None) -> Iterator[Parsed]:
    """Stream the transactions of a canonical CSV drop file.

    Args:
        f: The file, opened in binary mode; it must be seekable. The header is always read from the
            top of the file, also when resuming.
        start: Resume point (a :attr:`Parsed.resume`); right after the header by default.

    Yields:
        One :class:`Parsed` per transaction; ``txn`` is the validated canonical dict.

    Raises:
        DropRejected: the header is not a canonical CSV header (missing, unknown or repeated columns).
    """
    found = detect(f)
    if found.name != FORMAT:
        raise DropRejected(f"not a canonical CSV file (detected {found.name})")
    check_columns(found.header, COLUMNS, REQUIRED, "canonical CSV")
    header = found.header
    tid = header.index("txn_id")
    group: _Group | None = None
    for rec in iter_records(f, start or found.data_start, found.delimiter):
        values = rec.fields
        key = values[tid] if values is not None and tid < len(values) else None
        if group is not None and key is not None and key != group.txn_id:
            yield _finish(group)
            group = None
        if group is None:
            group = _Group(key or "")
        group.records.append(rec)
        if values is None:
            group.errors.append(LineError("(row)", rec.error or "unreadable row", rec.first_line))
        elif len(values) != len(header):
            reason = f"has {len(values)} fields, the header has {len(header)}"
            group.errors.append(LineError("(row)", reason, rec.first_line))
        else:
            group.rows.append(dict(zip(header, values, strict=True)))
            group.row_lines.append(rec.first_line)
    if group is not None:
        yield _finish(group)


def _finish(group: _Group) -> Parsed:
    recs = group.records
    first_line, last_line = recs[0].first_line, recs[-1].last_line
    raw = [r.raw for r in recs]
    lines_at = [r.first_line for r in recs]
    resume = recs[-1].end
    n = len(recs)
    if not group.txn_id:
        group.errors.append(LineError("txn_id", "required on every row", first_line))
    if group.errors or not group.rows:
        return Parsed(None, group.errors, first_line, last_line, raw, resume, n, row_lines=lines_at)
    raw_txn, line_rows, tender_rows, errors = _assemble(group)
    first = group.row_lines[0]

    def locate(path: str) -> tuple[str, int]:
        m = INDEXED.match(path)
        if m:
            kind, i, sub = m.group(1), int(m.group(2)), m.group(3)
            if kind == "lines":
                column = _LINE_COLUMN.get(sub or "", "unit_price")
                return column, line_rows[i] if i < len(line_rows) else first
            column = _TENDER_FIELD.get(sub or "", "tender_amount")
            return column, tender_rows[i] if i < len(tender_rows) else first
        if path.startswith("original"):
            return ("original_order_id" if path.endswith("order_id") else "original_channel"), first
        return {"lines": "sku", "tenders": "tender_amount"}.get(path, path), first

    txn, more = validate(raw_txn, locate)
    errors.extend(more)
    if txn is None or errors:
        return Parsed(None, errors, first_line, last_line, raw, resume, n, row_lines=lines_at)
    return Parsed(txn, [], first_line, last_line, raw, resume, n, lines_at)


def _assemble(group: _Group) -> tuple[dict[str, Any], list[int], list[int], list[LineError]]:
    """Build the transaction dict; also the file line of each line item and tender."""
    head = group.rows[0]
    first = group.row_lines[0]
    errors: list[LineError] = []
    txn: dict[str, Any] = {"txn_id": group.txn_id}
    for col in TXN_COLUMNS:
        value = head.get(col, "")
        if col in _OPTIONAL_TXN and value == "":
            continue
        if not col.startswith("original_"):
            txn[col] = value
    channel, order_id = head.get("original_channel", ""), head.get("original_order_id", "")
    if channel or order_id:
        txn["original"] = {"channel": channel, "order_id": order_id}
    lines: list[dict[str, str]] = []
    tenders: list[dict[str, str]] = []
    line_rows: list[int] = []
    tender_rows: list[int] = []
    for row, at in zip(group.rows, group.row_lines, strict=True):
        if at != first:
            for col in TXN_COLUMNS:
                value = row.get(col, "")
                if value != "" and value != head.get(col, ""):
                    reason = f"{value!r} differs from {head.get(col, '')!r} on the transaction's first row"
                    errors.append(LineError(col, f"{reason} (line {first})", at))
        if any(row.get(c, "") != "" for c in LINE_COLUMNS):
            item = {_LINE_FIELD[c]: row.get(c, "") for c in LINE_COLUMNS if row.get(c, "") != ""}
            for c in ("sku", "qty", "unit_price"):
                item.setdefault(c, "")
            lines.append(item)
            line_rows.append(at)
        if any(row.get(c, "") != "" for c in TENDER_COLUMNS):
            tender = {"type": row.get("tender_type", ""), "amount": row.get("tender_amount", "")}
            if row.get("card_last4", ""):
                tender["card_last4"] = row["card_last4"]
            tenders.append(tender)
            tender_rows.append(at)
    if any("type" in item for item in lines):  # line types are schema v2 (DESIGN §9)
        txn = {"schema": SCHEMA_V2, **txn}
    txn["lines"] = lines
    txn["tenders"] = tenders
    return txn, line_rows, tender_rows, errors


def rows_for(txn: dict[str, Any]) -> list[list[str]]:
    """The canonical CSV rows (in :data:`COLUMNS` order) of one transaction dict."""
    lines = txn.get("lines") or []
    tenders = txn.get("tenders") or []
    original = txn.get("original") or {}
    rows = []
    for i in range(max(len(lines), len(tenders), 1)):
        row = dict.fromkeys(COLUMNS, "")
        row["txn_id"] = txn["txn_id"]
        if i == 0:
            for col in ("register_id", "kind", "occurred_at", "currency", "total", "voided_txn_id"):
                row[col] = str(txn.get(col) or "")
            row["original_channel"] = original.get("channel", "")
            row["original_order_id"] = original.get("order_id", "")
        if i < len(lines):
            for col in LINE_COLUMNS:
                row[col] = str(lines[i].get(_LINE_FIELD[col]) or "")
        if i < len(tenders):
            for key, col in _TENDER_FIELD.items():
                row[col] = str(tenders[i].get(key) or "")
        rows.append([row[c] for c in COLUMNS])
    return rows


def write_csv(f: IO[str], txns: Iterable[dict[str, Any]], header: bool = True) -> int:
    """Write transactions as canonical CSV to a text file (open it with ``newline=""``).

    Returns:
        The number of data rows written.
    """
    writer = csv.writer(f, lineterminator="\n")
    if header:
        writer.writerow(COLUMNS)
    n = 0
    for txn in txns:
        rows = rows_for(txn)
        writer.writerows(rows)
        n += len(rows)
    return n
