"""Drop-file generators for tests and benchmarks: JSON Lines, canonical CSV, Shopify orders exports.

Data is deterministic (a function of the row index, no RNG), written streamed and with integer
minor-unit arithmetic, so a 1,000,000-row JSONL file takes seconds. Bad rows can be injected at
chosen indexes; the returned :class:`DropFile` lists the lines and fields the reader must report.
"""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from edge_agent.drops.csv_canonical import COLUMNS, rows_for

SKUS = (("TEE-BLK-M", 1990, "Tee black M"), ("JEANS-32", 5900, "Jeans 32"), ("SOCKS-3P", 995, "Socks, 3 pack"),
        ("CAP-RED", 1450, "Cap \"red\""), ("BAG-TOTE", 499, "Tote bag"))  # fmt: skip
TAX_PERMILLE = 190

# The Shopify orders export header (Admin → Orders → Export), in Shopify's column order.
SHOPIFY_HEADER = (
    "Name", "Email", "Financial Status", "Paid at", "Fulfillment Status", "Fulfilled at", "Accepts Marketing",
    "Currency", "Subtotal", "Shipping", "Taxes", "Total", "Discount Code", "Discount Amount", "Shipping Method",
    "Created at", "Lineitem quantity", "Lineitem name", "Lineitem price", "Lineitem compare at price",
    "Lineitem sku", "Lineitem requires shipping", "Lineitem taxable", "Lineitem fulfillment status",
    "Billing Name", "Billing Street", "Billing Address1", "Billing Address2", "Billing Company", "Billing City",
    "Billing Zip", "Billing Province", "Billing Country", "Billing Phone", "Shipping Name", "Shipping Street",
    "Shipping Address1", "Shipping Address2", "Shipping Company", "Shipping City", "Shipping Zip",
    "Shipping Province", "Shipping Country", "Shipping Phone", "Notes", "Note Attributes", "Cancelled at",
    "Payment Method", "Payment Reference", "Refunded Amount", "Vendor", "Outstanding Balance", "Employee",
    "Location", "Device ID", "Id", "Tags", "Risk Level", "Source", "Lineitem discount", "Tax 1 Name",
    "Tax 1 Value", "Tax 2 Name", "Tax 2 Value", "Tax 3 Name", "Tax 3 Value", "Tax 4 Name", "Tax 4 Value",
    "Tax 5 Name", "Tax 5 Value", "Phone", "Receipt Number", "Duties", "Billing Province Name",
    "Shipping Province Name", "Payment ID", "Payment Terms Name", "Next Payment Due At", "Payment References",
)  # fmt: skip
_COL = {name: i for i, name in enumerate(SHOPIFY_HEADER)}


@dataclass
class DropFile:
    """A generated file and what importing it must give.

    Attributes:
        path: Where it was written.
        rows: Data rows (JSONL lines or CSV records, header excluded).
        transactions: Items a reader yields (a refunded Shopify order counts twice).
        valid: Items that must be accepted.
        bad: ``(line, field)`` of every injected error, in file order.
    """

    path: str
    rows: int = 0
    transactions: int = 0
    valid: int = 0
    bad: list[tuple[int, str]] = field(default_factory=list)


def money(cents: int) -> str:
    """Minor units to a two-place decimal string (``4616`` → ``"46.16"``)."""
    return f"{cents // 100}.{cents % 100:02d}"


def _tax(cents: int) -> int:
    return (cents * TAX_PERMILLE + 500) // 1000


def sale(i: int, register_id: str = "R1") -> dict[str, Any]:
    """The i-th valid sale: 1–3 lines, 19 % tax per line, card or cash, times a few seconds apart."""
    lines = []
    total = 0
    for k in range(1 + i % 3):
        sku, price, name = SKUS[(i + k) % len(SKUS)]
        qty = 1 + (i + k) % 3
        discount = 100 if (i + k) % 7 == 0 else 0
        tax = _tax(price * qty - discount)
        total += price * qty - discount + tax
        lines.append({"sku": sku, "name": name, "qty": str(qty), "unit_price": money(price),
                      "discount": money(discount), "tax": money(tax)})  # fmt: skip
    tender: dict[str, str] = {"type": "card" if i % 2 else "cash", "amount": money(total)}
    if i % 2:
        tender["card_last4"] = f"{i % 10000:04d}"
    secs = i * 7
    occurred = f"2026-05-{1 + secs // 86400 % 28:02d}T{secs // 3600 % 24:02d}:{secs // 60 % 60:02d}:{secs % 60:02d}"
    return {"txn_id": f"{register_id}-{i:07d}", "register_id": register_id, "kind": "sale",
            "occurred_at": occurred, "currency": "EUR", "lines": lines, "tenders": [tender],
            "total": money(total)}  # fmt: skip


def _bad_at(i: int, bad_every: int, bad_rows: Iterable[int]) -> bool:
    return (bad_every > 0 and i % bad_every == bad_every - 1) or i in bad_rows


def write_jsonl(
    path: str | os.PathLike[str], n: int, *, bad_every: int = 0, bad_rows: Iterable[int] = (), register_id: str = "R1"
) -> DropFile:
    """Write ``n`` JSONL transactions; bad rows cycle through bad JSON, a bad qty and a wrong total."""
    bad_set = set(bad_rows)
    out = DropFile(str(path), rows=n, transactions=n)
    with open(path, "w", encoding="utf-8", newline="\n", buffering=1 << 20) as f:
        for i in range(n):
            txn = sale(i, register_id)
            if _bad_at(i, bad_every, bad_set):
                kind = len(out.bad) % 3
                if kind == 0:
                    f.write(json.dumps(txn)[:-9] + "\n")
                    out.bad.append((i + 1, "(line)"))
                    continue
                if kind == 1:
                    txn["lines"][0]["qty"] = "two"
                    out.bad.append((i + 1, "lines[0].qty"))
                else:
                    txn["total"] = money(int(txn["total"].replace(".", "")) + 1)
                    out.bad.append((i + 1, "total"))
            else:
                out.valid += 1
            f.write(json.dumps(txn, separators=(",", ":")) + "\n")
    return out


def write_canonical_csv(
    path: str | os.PathLike[str], n: int, *, bad_every: int = 0, bad_rows: Iterable[int] = (), register_id: str = "R1"
) -> DropFile:
    """Write ``n`` transactions as canonical CSV; a bad transaction gets a bad qty on its last line row."""
    bad_set = set(bad_rows)
    out = DropFile(str(path), transactions=n)
    line = 1
    with open(path, "w", encoding="utf-8", newline="", buffering=1 << 20) as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(COLUMNS)
        for i in range(n):
            txn = sale(i, register_id)
            rows = rows_for(txn)
            if _bad_at(i, bad_every, bad_set):
                k = len(txn["lines"]) - 1
                rows[k][COLUMNS.index("qty")] = "1.5x"
                out.bad.append((line + 1 + k, "qty"))
            else:
                out.valid += 1
            writer.writerows(rows)
            line += len(rows)
            out.rows += len(rows)
    return out


def shopify_order(i: int, *, refund: str = "", voided: bool = False) -> list[list[str]]:
    """The rows of the i-th Shopify order (tax added on top, 19 %), as full export rows.

    Every 3rd order has a discount code, every 5th ships; ``refund`` is ``"full"`` or ``"partial"``.
    """
    items = [SKUS[(i + k) % len(SKUS)] + (1 + (i + k) % 2,) for k in range(1 + i % 3)]
    gross = sum(price * qty for _, price, _, qty in items)
    discount = gross // 10 if i % 3 == 0 else 0
    shipping = 490 if i % 5 == 0 else 0
    subtotal = gross - discount
    taxes = _tax(subtotal + shipping)
    total = subtotal + shipping + taxes
    refunded = total if refund == "full" else total // 2 if refund == "partial" else 0
    name = f"#{1001 + i}"
    hour, minute = 9 + i // 60 % 10, i % 60
    created = f"2026-05-{1 + i // 600 % 28:02d} {hour:02d}:{minute:02d}:00 +0200"
    rows = []
    for k, (sku, price, title, qty) in enumerate(items):
        row = [""] * len(SHOPIFY_HEADER)
        row[_COL["Name"]] = name
        row[_COL["Lineitem quantity"]] = str(qty)
        row[_COL["Lineitem name"]] = title
        row[_COL["Lineitem price"]] = money(price)
        row[_COL["Lineitem compare at price"]] = ""
        row[_COL["Lineitem sku"]] = sku
        row[_COL["Lineitem requires shipping"]] = "false"
        row[_COL["Lineitem taxable"]] = "true"
        row[_COL["Lineitem fulfillment status"]] = "fulfilled"
        row[_COL["Lineitem discount"]] = "0.00"
        if k == 0:
            status = "voided" if voided else {"full": "refunded", "partial": "partially_refunded"}.get(refund, "paid")
            for col, value in (
                ("Email", f"c{i}@example.com"), ("Financial Status", status), ("Paid at", created),
                ("Fulfillment Status", "fulfilled"), ("Accepts Marketing", "no"), ("Currency", "EUR"),
                ("Subtotal", money(subtotal)), ("Shipping", money(shipping)), ("Taxes", money(taxes)),
                ("Total", money(total)), ("Discount Code", "SPRING10" if discount else ""),
                ("Discount Amount", money(discount)), ("Shipping Method", "Standard" if shipping else ""),
                ("Created at", created), ("Payment Method", "Shopify Payments" if i % 2 else "Cash"),
                ("Refunded Amount", money(refunded)), ("Outstanding Balance", "0.00"),
                ("Employee", "Ada Example"), ("Location", "Berlin Mitte"), ("Device ID", f"{900 + i % 3}"),
                ("Id", str(5550000000 + i)), ("Source", "pos"), ("Tax 1 Name", "MwSt 19%"),
                ("Tax 1 Value", money(taxes)), ("Receipt Number", f"{1001 + i}"),
            ):  # fmt: skip
                row[_COL[col]] = value
        rows.append(row)
    return rows


def write_shopify_export(
    path: str | os.PathLike[str],
    n: int,
    *,
    refund_every: int = 0,
    bad_every: int = 0,
    bad_rows: Iterable[int] = (),
) -> DropFile:
    """Write ``n`` Shopify orders; a bad order has a Total one cent off. Refunds alternate full/partial."""
    bad_set = set(bad_rows)
    out = DropFile(str(path))
    line = 1
    with open(path, "w", encoding="utf-8", newline="", buffering=1 << 20) as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(SHOPIFY_HEADER)
        for i in range(n):
            refunded = refund_every > 0 and i % refund_every == refund_every - 1
            refund = ("full" if (i // refund_every) % 2 else "partial") if refunded else ""
            rows = shopify_order(i, refund=refund)
            if _bad_at(i, bad_every, bad_set):
                total_col = _COL["Total"]
                rows[0][total_col] = money(int(rows[0][total_col].replace(".", "")) + 1)
                out.bad.append((line + 1, "Total"))
                out.transactions += 1
            else:
                out.valid += 1 + bool(refund)
                out.transactions += 1 + bool(refund)
            writer.writerows(rows)
            line += len(rows)
            out.rows += len(rows)
    return out
