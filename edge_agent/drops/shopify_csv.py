"""The Shopify orders export (Admin → Orders → Export, "CSV for Excel, Numbers, or other spreadsheets").

One row per line item; consecutive rows with the same ``Name`` are one order, and only its first row
carries the order fields (Currency, Subtotal, Shipping, Taxes, Total, Discount Amount, Created at,
Payment Method, Refunded Amount, Location, Device ID, ...). Columns are found by name, so extra or
reordered columns do not matter.

Mapping to DESIGN §9 (details and the approximations in ``docs/file-drops.md``):

- ``txn_id`` = Name without spaces (``#1001``); ``register_id`` = Device ID, else Location, else
  ``shopify``, sanitised to ``[A-Za-z0-9_-]``; ``occurred_at`` = Created at with its offset kept.
- Lines from the Lineitem rows, plus a ``SHIPPING`` line (line type ``shipping``) when Shipping > 0.
  A transaction with a line that is not stock (shipping, a partial refund's ``REFUND`` adjustment
  line, type ``adjustment``) is schema ``storesync.pos.v2``, so the hub never moves stock for it;
  the others stay ``storesync.pos.v1``.
- Discount Amount is the order's total discount: Lineitem discount goes to its own line, and the rest
  is allocated over the item lines in proportion to their amount, the rounding remainder on the last.
- Taxes: when Subtotal + Shipping + Taxes = Total (prices without tax) the tax is allocated over all
  lines in proportion to their net amount, remainder on the last line. When Subtotal + Shipping =
  Total (prices including tax) the lines carry tax 0, the tax being inside the prices.
- One tender of the whole Total, typed from Payment Method.
- Refunded Amount > 0 adds a ``return`` (txn_id + ``-R``); Financial Status ``voided`` adds a
  ``void`` (txn_id + ``-V``).

Numbers that do not add up are errors naming the order and the numbers; nothing is adjusted.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import IO, Any

from sync_protocol.money import fits_minor_units, format_amount, minor_unit_exponent
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

FORMAT = "shopify_csv"
CHANNEL = "shopify"
REQUIRED = ("Name", "Created at", "Currency", "Total", "Lineitem quantity", "Lineitem price", "Lineitem name")
_AMOUNT = re.compile(r"^-?\d{1,15}(\.\d{1,6})?$")
_NOT_IDENT = re.compile(r"[^A-Za-z0-9_-]+")
_TENDER_TYPES = {
    "cash": "cash",
    "shopify payments": "card",
    "shopify_payments": "card",
    "card": "card",
    "credit card": "card",
    "debit card": "card",
    "external card": "card",
    "gift card": "gift_card",
    "gift_card": "gift_card",
}
_LINE_COLUMN = {
    "qty": "Lineitem quantity",
    "unit_price": "Lineitem price",
    "sku": "Lineitem sku",
    "name": "Lineitem name",
    "discount": "Lineitem discount",
    "tax": "Taxes",
}
NO_SKU = "NO-SKU"
SHIPPING_SKU = "SHIPPING"
REFUND_SKU = "REFUND"


class _OrderError(Exception):
    def __init__(self, errors: list[LineError]) -> None:
        self.errors = errors


def read_shopify_csv(f: IO[bytes], start: Checkpoint | None = None) -> Iterator[Parsed]:
    """Stream the transactions of a Shopify orders export.

    Args:
        f: The file, opened in binary mode; it must be seekable. The header is always read from the
            top of the file, also when resuming.
        start: Resume point (a :attr:`Parsed.resume`); right after the header by default.

    Yields:
        Per order a ``sale``, then a ``return`` when it was refunded and a ``void`` when voided. Only
        the last item of an order advances :attr:`Parsed.resume` past the order's rows.

    Raises:
        DropRejected: the header lacks a column the mapping needs.
    """
    found = detect(f)
    if found.name != FORMAT:
        raise DropRejected(f"not a Shopify orders export (detected {found.name})")
    check_columns(found.header, (), REQUIRED, "Shopify orders export")
    header = found.header
    name_at = header.index("Name")
    begin = start or found.data_start
    order: list[Record] = []
    for rec in iter_records(f, begin, found.delimiter):
        key = rec.fields[name_at] if rec.fields is not None and name_at < len(rec.fields) else None
        if order and key and key != _name(order[0], name_at):
            yield from _order_items(order, header, begin)
            begin = order[-1].end
            order = []
        order.append(rec)
    if order:
        yield from _order_items(order, header, begin)


def _name(rec: Record, name_at: int) -> str | None:
    return rec.fields[name_at] if rec.fields is not None and name_at < len(rec.fields) else None


def _order_items(recs: list[Record], header: list[str], begin: Checkpoint) -> Iterator[Parsed]:
    first_line, last_line = recs[0].first_line, recs[-1].last_line
    raw = [r.raw for r in recs]
    row_lines = [r.first_line for r in recs]
    try:
        rows = _rows(recs, header)
        txns = _map_order(rows)
    except _OrderError as exc:
        yield Parsed(None, exc.errors, first_line, last_line, raw, recs[-1].end, len(recs), row_lines=row_lines)
        return
    for k, (raw_txn, locate) in enumerate(txns):
        last = k == len(txns) - 1
        resume = recs[-1].end if last else begin
        txn, errors = validate(raw_txn, locate)
        rows_used = len(recs) if k == 0 else 0
        yield Parsed(txn, errors, first_line, last_line, raw, resume, rows_used, row_lines)


def _rows(recs: list[Record], header: list[str]) -> list[tuple[int, dict[str, str]]]:
    rows = []
    errors = []
    for rec in recs:
        if rec.fields is None:
            errors.append(LineError("(row)", rec.error or "unreadable row", rec.first_line))
        elif len(rec.fields) != len(header):
            reason = f"has {len(rec.fields)} fields, the header has {len(header)}"
            errors.append(LineError("(row)", reason, rec.first_line))
        else:
            rows.append((rec.first_line, dict(zip(header, map(str.strip, rec.fields), strict=True))))
    if errors:
        raise _OrderError(errors)
    return rows


def _amount(row: dict[str, str], column: str, line: int, errors: list[LineError], blank: str = "0") -> Decimal:
    text = row.get(column, "").replace(",", "") or blank
    if not _AMOUNT.match(text):
        what = "a value" if not text else repr(text)
        errors.append(LineError(column, f"needs a plain decimal amount, got {what}", line))
        return Decimal(0)
    return Decimal(text)


_SHOPIFY_TIME = re.compile(r"([0-9]{4}-[0-9]{2}-[0-9]{2}) ([0-9]{2}:[0-9]{2}:[0-9]{2}) ([+-][0-9]{2})([0-9]{2})")


def _created_at(text: str, line: int, errors: list[LineError]) -> str:
    m = _SHOPIFY_TIME.fullmatch(text)
    if m is not None:  # Shopify's own form: read as ISO 8601, ~10x cheaper than strptime, same result
        try:
            return datetime.fromisoformat(f"{m[1]}T{m[2]}{m[3]}:{m[4]}").isoformat()
        except ValueError:
            pass  # out of range: strptime below decides
    for fmt in ("%Y-%m-%d %H:%M:%S %z", "%Y-%m-%d %H:%M %z"):
        try:
            return datetime.strptime(text, fmt).isoformat()
        except ValueError:
            pass
    try:
        return datetime.fromisoformat(text).isoformat()
    except ValueError:
        errors.append(LineError("Created at", f"{text!r} is not a date like 2026-05-01 10:00:00 +0200", line))
        return text


def register_of(row: dict[str, str]) -> str:
    """Device ID, else Location, else ``shopify``, reduced to ``[A-Za-z0-9_-]{1,64}``."""
    for col in ("Device ID", "Location"):
        value = _NOT_IDENT.sub("-", row.get(col, "")).strip("-")[:64]
        if value:
            return value
    return CHANNEL


def tender_type(method: str) -> str:
    """Map a Payment Method to a tender type (``Cash`` → ``cash``, ``Shopify Payments`` → ``card``)."""
    gateways = [g.strip() for g in method.split("+") if g.strip()]
    if len(gateways) > 1:
        return "split"
    text = gateways[0].lower() if gateways else ""
    if text in _TENDER_TYPES:
        return _TENDER_TYPES[text]
    slug = re.sub(r"[^a-z0-9]+", "_", text).strip("_")
    if not slug:
        return "other"
    if not slug[0].isalpha():
        slug = "p_" + slug
    return slug[:32]


def allocate(total: int, weights: list[int]) -> list[int]:
    """Split ``total`` minor units in proportion to ``weights``, the rounding remainder on the last."""
    if not weights:
        return []
    whole = sum(weights)
    if whole <= 0:
        return [0] * (len(weights) - 1) + [total]
    shares = [total * w // whole for w in weights]
    shares[-1] += total - sum(shares)
    return shares


@dataclass
class _Order:
    """One order's head values and line items, read and checked for decimal places."""

    name: str
    currency: str
    unit: Decimal
    line0: int
    head: dict[str, str]
    subtotal: Decimal | None
    shipping: Decimal
    taxes: Decimal
    total: Decimal
    discount: Decimal
    refunded: Decimal
    occurred_at: str
    items: list[tuple[int, dict[str, str], Decimal, Decimal, Decimal]]  # (line, row, qty, price, line discount)

    def minor(self, amount: Decimal) -> int:
        return int((amount / self.unit).to_integral_value())

    def fmt(self, amount: Decimal) -> str:
        return format_amount(amount, self.currency)


def _read_order(rows: list[tuple[int, dict[str, str]]]) -> _Order:
    """The order's amounts, each checked; every bad value is reported at once.

    Raises:
        _OrderError: naming every bad field of the order.
    """
    line0, head = rows[0]
    errors: list[LineError] = []
    name = head["Name"]
    currency = head.get("Currency", "")
    unit = Decimal(1).scaleb(-minor_unit_exponent(currency))
    if not name:
        errors.append(LineError("Name", "the order has no Name", line0))
    subtotal = _amount(head, "Subtotal", line0, errors, blank="") if head.get("Subtotal") else None
    shipping = _amount(head, "Shipping", line0, errors)
    taxes = _amount(head, "Taxes", line0, errors)
    total = _amount(head, "Total", line0, errors, blank="")
    discount = _amount(head, "Discount Amount", line0, errors)
    refunded = _amount(head, "Refunded Amount", line0, errors)
    occurred_at = _created_at(head.get("Created at", ""), line0, errors)
    items = []
    for at, row in rows:
        qty = _amount(row, "Lineitem quantity", at, errors, blank="")
        price = _amount(row, "Lineitem price", at, errors, blank="")
        line_disc = _amount(row, "Lineitem discount", at, errors)
        items.append((at, row, qty, price, line_disc))
        for col, amount in (("Lineitem price", price), ("Lineitem discount", line_disc)):
            if not fits_minor_units(amount, currency):
                errors.append(LineError(col, f"{amount} has more decimal places than {currency} allows", at))
    for col, value in (("Subtotal", subtotal), ("Shipping", shipping), ("Taxes", taxes), ("Total", total),
                       ("Discount Amount", discount), ("Refunded Amount", refunded)):  # fmt: skip
        if value is not None and not fits_minor_units(value, currency):
            errors.append(LineError(col, f"{value} has more decimal places than {currency} allows", line0))
    if errors:
        raise _OrderError(errors)
    return _Order(name, currency, unit, line0, head, subtotal, shipping, taxes, total, discount, refunded,
                  occurred_at, items)  # fmt: skip


def _check_sums(o: _Order) -> bool:
    """Check that the order's amounts add up; returns whether its taxes are included in the prices.

    Raises:
        _OrderError: naming the first sum that does not hold.
    """
    fmt, line0, where = o.fmt, o.line0, f"order {o.name}"
    lines_total = sum((qty * price for _, _, qty, price, _ in o.items), Decimal(0))
    line_discounts = sum((d for *_, d in o.items), Decimal(0))
    if line_discounts > o.discount:
        reason = (
            f"{where}: Lineitem discounts add up to {fmt(line_discounts)}, more than Discount Amount {fmt(o.discount)}"
        )
        raise _OrderError([LineError("Discount Amount", reason, line0)])
    net_items = lines_total - o.discount
    if o.subtotal is not None and net_items != o.subtotal:
        reason = (f"{where}: lines {fmt(lines_total)} − Discount Amount {fmt(o.discount)} = {fmt(net_items)}, "
                  f"but Subtotal is {fmt(o.subtotal)}")  # fmt: skip
        raise _OrderError([LineError("Subtotal", reason, line0)])
    inclusive = False
    if net_items + o.shipping + o.taxes != o.total:
        if o.taxes and net_items + o.shipping == o.total:
            inclusive = True
        else:
            reason = (f"{where}: lines {fmt(lines_total)} − Discount Amount {fmt(o.discount)} + Shipping "
                      f"{fmt(o.shipping)} + Taxes {fmt(o.taxes)} = {fmt(net_items + o.shipping + o.taxes)}, "
                      f"but Total is {fmt(o.total)}")  # fmt: skip
            raise _OrderError([LineError("Total", reason, line0)])
    if o.refunded > o.total:
        reason = f"{where}: Refunded Amount {fmt(o.refunded)} is more than Total {fmt(o.total)}"
        raise _OrderError([LineError("Refunded Amount", reason, line0)])
    return inclusive


def _order_lines(o: _Order, inclusive: bool) -> tuple[list[dict[str, str]], list[int]]:
    """The transaction's lines (order discount spread over them, taxes allocated) and the line each came from."""
    fmt, minor, unit = o.fmt, o.minor, o.unit
    gross = [qty * price for _, _, qty, price, _ in o.items]
    line_discounts = sum((d for *_, d in o.items), Decimal(0))
    rest = allocate(
        minor(o.discount - line_discounts), [minor(g - d) for g, (*_, d) in zip(gross, o.items, strict=True)]
    )
    line_disc_all = [d + r * unit for (*_, d), r in zip(o.items, rest, strict=True)]
    lines: list[dict[str, str]] = []
    line_at: list[int] = []
    for (at, row, qty, price, _), disc in zip(o.items, line_disc_all, strict=True):
        item = {"sku": row.get("Lineitem sku") or NO_SKU, "qty": str(qty), "unit_price": str(price),
                "discount": fmt(disc)}  # fmt: skip
        if row.get("Lineitem name"):
            item["name"] = row["Lineitem name"][:200]
        lines.append(item)
        line_at.append(at)
    if o.shipping:
        method = o.head.get("Shipping Method", "")
        lines.append({"sku": SHIPPING_SKU, "name": method[:200] or "Shipping", "qty": "1",
                      "unit_price": str(o.shipping), "discount": fmt(Decimal(0)), "type": "shipping"})  # fmt: skip
        line_at.append(o.line0)
    nets = [minor(Decimal(x["unit_price"]) * Decimal(x["qty"]) - Decimal(x["discount"])) for x in lines]
    tax_shares = [0] * len(lines) if inclusive else allocate(minor(o.taxes), nets)
    for item, share in zip(lines, tax_shares, strict=True):
        item["tax"] = fmt(share * unit)
    return lines, line_at


def _locator(o: _Order, line_at: list[int]) -> Callable[[str], tuple[str, int]]:
    """Maps a transaction field path to the CSV column and line it came from (for error reports)."""
    head, first_at, n_items = o.head, o.line0, len(o.items)

    def locate(path: str) -> tuple[str, int]:
        m = INDEXED.match(path)
        if m and m.group(1) == "lines":
            i, sub = int(m.group(2)), m.group(3) or "unit_price"
            at = line_at[i] if i < len(line_at) else first_at
            if i >= n_items:
                return ("Shipping" if sub in ("qty", "unit_price") else _LINE_COLUMN.get(sub, sub)), at
            return _LINE_COLUMN.get(sub, sub), at
        column = {"txn_id": "Name", "occurred_at": "Created at", "currency": "Currency", "total": "Total",
                  "register_id": "Device ID" if head.get("Device ID") else "Location"}.get(path)  # fmt: skip
        if column is None:
            column = "Payment Method" if path.startswith("tenders") else "Refunded Amount"
        return column, first_at

    return locate


def _map_order(rows: list[tuple[int, dict[str, str]]]) -> list[tuple[dict[str, Any], Any]]:
    """Map one order's rows to its transactions, each with a function locating its errors."""
    o = _read_order(rows)
    inclusive = _check_sums(o)
    lines, line_at = _order_lines(o, inclusive)
    locate = _locator(o, line_at)
    fmt, head, txn_id = o.fmt, o.head, o.name.replace(" ", "")
    base = {"register_id": register_of(head), "occurred_at": o.occurred_at, "currency": o.currency}
    tenders = [{"type": tender_type(head.get("Payment Method", "")), "amount": fmt(o.total)}] if o.total else []
    sale: dict[str, Any] = {"txn_id": txn_id, "kind": "sale", **base, "lines": lines, "total": fmt(o.total),
                            "tenders": tenders}  # fmt: skip
    out: list[tuple[dict[str, Any], Any]] = [(sale, locate)]
    if o.refunded:
        out.append((_refund(sale, o.name, o.refunded, o.total, fmt), locate))
    if head.get("Financial Status", "").lower() == "voided":
        void = {"txn_id": txn_id + "-V", "kind": "void", **base, "lines": [], "tenders": [],
                "total": fmt(Decimal(0)), "voided_txn_id": txn_id}  # fmt: skip
        out.append((void, locate))
    for txn, _ in out:  # lines that are not stock say so: schema v2 (DESIGN §9); others stay v1
        if any("type" in x for x in txn["lines"]):
            txn["schema"] = SCHEMA_V2
    return out


def _refund(sale: dict[str, Any], name: str, refunded: Decimal, total: Decimal, fmt: Any) -> dict[str, Any]:
    """The ``return`` for a refund: the sale's lines when fully refunded, else one REFUND line."""
    if refunded == total:
        lines = [dict(x) for x in sale["lines"]]
    else:
        lines = [{"sku": REFUND_SKU, "name": f"Refund of {name}"[:200], "qty": "1", "unit_price": fmt(refunded),
                  "discount": fmt(Decimal(0)), "tax": fmt(Decimal(0)), "type": "adjustment"}]  # fmt: skip
    tenders = [{"type": sale["tenders"][0]["type"] if sale["tenders"] else "other", "amount": fmt(refunded)}]
    return {
        "txn_id": sale["txn_id"] + "-R", "kind": "return", "register_id": sale["register_id"],
        "occurred_at": sale["occurred_at"], "currency": sale["currency"], "lines": lines,
        "tenders": tenders, "total": fmt(refunded), "original": {"channel": CHANNEL, "order_id": name[:64]},
    }  # fmt: skip
