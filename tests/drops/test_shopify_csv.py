"""Shopify orders export: multi-row orders, offsets, discounts, taxes, refunds, voids, bad numbers."""

from __future__ import annotations

import csv
import io
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from edge_agent.drops import load
from edge_agent.drops.shopify_csv import allocate, read_shopify_csv, register_of, tender_type
from storesync_harness.dropfiles import SHOPIFY_HEADER, shopify_order, write_shopify_export

COLS = ["Name", "Financial Status", "Currency", "Subtotal", "Shipping", "Taxes", "Total", "Discount Amount",
        "Shipping Method", "Created at", "Lineitem quantity", "Lineitem name", "Lineitem price", "Lineitem sku",
        "Lineitem discount", "Payment Method", "Refunded Amount", "Location", "Device ID"]  # fmt: skip


def export(*orders: list[dict[str, str]], header: list[str] = COLS) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(header)
    for rows in orders:
        for r in rows:
            writer.writerow([r.get(c, "") for c in header])
    return out.getvalue()


def order(name: str, lines: list[tuple[str, str, str]], **head: str) -> list[dict[str, str]]:
    """Rows of an order: ``lines`` are (qty, price, sku); order fields go on the first row only."""
    rows = []
    for k, (qty, price, sku) in enumerate(lines):
        r = {"Name": name, "Lineitem quantity": qty, "Lineitem price": price, "Lineitem sku": sku,
             "Lineitem name": f"Item {sku}"}  # fmt: skip
        if k == 0:
            r.update({"Currency": "EUR", "Created at": "2026-05-01 10:00:00 +0200", "Payment Method": "Cash"})
            r.update(head)
        rows.append(r)
    return rows


def read(text: str) -> list:
    return list(read_shopify_csv(io.BytesIO(text.encode())))


def amounts(txn: dict[str, Any], key: str) -> list[str]:
    return [x[key] for x in txn["lines"]]


def test_multi_row_order_is_one_sale_with_offset_kept_and_register_from_location() -> None:
    o = order("#1001", [("2", "16.00", "FERN-1"), ("1", "20.00", "TOTE-1"), ("3", "1.50", "PIN")],
              Subtotal="56.50", Total="56.50", Location="Köln / Dom")  # fmt: skip
    (item,) = read(export(o))
    assert item.errors == []
    txn = item.txn
    assert txn["txn_id"] == "#1001" and txn["kind"] == "sale" and txn["register_id"] == "K-ln-Dom"
    assert txn["occurred_at"] == "2026-05-01T10:00:00+02:00"
    assert [x["sku"] for x in txn["lines"]] == ["FERN-1", "TOTE-1", "PIN"]
    assert txn["tenders"] == [{"type": "cash", "amount": "56.50"}]
    assert (item.first_line, item.last_line, item.rows) == (2, 4, 3)


def test_negative_offset_and_device_id_win() -> None:
    o = order("#7", [("1", "10.00", "A")], Total="10.00", Location="Main", **{"Device ID": "4711",
              "Created at": "2026-03-29 01:59:59 -0530"})  # fmt: skip
    (item,) = read(export(o))
    assert item.txn["register_id"] == "4711"
    assert item.txn["occurred_at"] == "2026-03-29T01:59:59-05:30"


def test_taxes_on_top_are_allocated_proportionally_remainder_on_last_line() -> None:
    o = order("#2", [("1", "10.00", "A"), ("1", "10.00", "B"), ("1", "10.00", "C")],
              Subtotal="30.00", Taxes="1.00", Total="31.00")  # fmt: skip
    (item,) = read(export(o))
    assert amounts(item.txn, "tax") == ["0.33", "0.33", "0.34"]
    assert item.txn["total"] == "31.00"


def test_order_discount_and_line_discounts_and_shipping() -> None:
    o = order("#3", [("2", "16.00", "FERN-1"), ("1", "20.00", "TOTE-1")], Subtotal="47.00", Shipping="6.00",
              Taxes="3.29", Total="56.29", **{"Discount Amount": "5.00", "Shipping Method": "DHL"})  # fmt: skip
    o[1]["Lineitem discount"] = "2.00"
    (item,) = read(export(o))
    assert item.errors == []
    # 2.00 on TOTE-1 itself; the remaining 3.00 split 3200:1800 -> 1.92 / 1.08.
    assert amounts(item.txn, "discount") == ["1.92", "3.08", "0.00"]
    assert item.txn["lines"][2] | {"tax": "x"} == {"sku": "SHIPPING", "name": "DHL", "qty": "1",
                                                     "unit_price": "6.00", "discount": "0.00", "tax": "x",
                                                     "type": "shipping"}  # fmt: skip
    assert item.txn["schema"] == "storesync.pos.v2" and {x["type"] for x in item.txn["lines"][:2]} == {"item"}
    assert sum(Decimal(t) for t in amounts(item.txn, "tax")) == Decimal("3.29")


def test_tax_included_prices_keep_line_tax_zero() -> None:
    o = order("#4", [("1", "11.90", "A")], Subtotal="11.90", Taxes="1.90", Total="11.90")
    (item,) = read(export(o))
    assert item.ok and amounts(item.txn, "tax") == ["0.00"] and item.txn["total"] == "11.90"


def test_partial_refund_adds_a_return_with_one_refund_line() -> None:
    o = order("#5", [("1", "30.00", "A"), ("1", "10.00", "B")], Total="40.00",
              **{"Refunded Amount": "12.50", "Payment Method": "Shopify Payments"})  # fmt: skip
    sale, ret = read(export(o))
    assert sale.ok and ret.ok
    assert ret.txn["txn_id"] == "#5-R" and ret.txn["kind"] == "return"
    assert ret.txn["original"] == {"channel": "shopify", "order_id": "#5"}
    assert [(x["sku"], x["unit_price"]) for x in ret.txn["lines"]] == [("REFUND", "12.50")]
    assert ret.txn["tenders"] == [{"type": "card", "amount": "12.50"}]
    assert ret.rows == 0 and sale.rows == 2
    # Only the last item of the order moves the resume point past it.
    assert sale.resume.line == 1 and ret.resume.line == 3


def test_full_refund_mirrors_the_sale_lines_and_voided_adds_a_void() -> None:
    o = order("#6", [("2", "5.00", "A")], Taxes="1.90", Total="11.90", **{"Refunded Amount": "11.90"})
    v = order("#8", [("1", "5.00", "A")], Total="5.00", **{"Financial Status": "voided"})
    sale, ret, sale8, void = read(export(o, v))
    assert ret.txn["lines"] == sale.txn["lines"] and ret.txn["total"] == "11.90"
    assert void.txn["kind"] == "void" and void.txn["voided_txn_id"] == "#8" and void.txn["txn_id"] == "#8-V"


def test_numbers_that_do_not_add_up_name_the_order_and_the_numbers() -> None:
    bad = order("#9", [("2", "16.00", "A")], Shipping="6.00", Taxes="3.29", Total="41.30")
    good = order("#10", [("1", "1.00", "B")], Total="1.00")
    item, ok = read(export(bad, good))
    assert ok.ok and not item.ok
    (err,) = item.errors
    assert (err.line, err.field) == (2, "Total")
    assert err.reason == ("order #9: lines 32.00 − Discount Amount 0.00 + Shipping 6.00 + Taxes 3.29 = 41.29, "
                          "but Total is 41.30")  # fmt: skip


@pytest.mark.parametrize(
    ("change", "line", "field"),
    [
        ({"Subtotal": "99.00"}, 2, "Subtotal"),
        ({"Refunded Amount": "50.00"}, 2, "Refunded Amount"),
        ({"Created at": "01/05/2026 10:00"}, 2, "Created at"),
        ({"Total": "abc"}, 2, "Total"),
        ({"Total": "10.001"}, 2, "Total"),
        ({"Currency": "EURO"}, 2, "Currency"),
    ],
)
def test_bad_order_fields_are_errors_with_line_and_column(change: dict[str, str], line: int, field: str) -> None:
    o = order("#11", [("1", "4.00", "A"), ("1", "6.00", "B")], Total="10.00")
    o[0].update(change)
    (item,) = read(export(o))
    assert (item.errors[0].line, item.errors[0].field) == (line, field)


def test_bad_lineitem_on_a_later_row_names_that_row() -> None:
    o = order("#12", [("1", "4.00", "A"), ("0", "6.00", "B")], Total="4.00")
    (item,) = read(export(o))
    assert [(e.line, e.field) for e in item.errors] == [(3, "Lineitem quantity")]


def test_full_export_header_and_generated_file(tmp_path: Path) -> None:
    drop = write_shopify_export(tmp_path / "orders_export.csv", 120, refund_every=7, bad_rows=[10, 55])
    fmt, items = load(drop.path)
    got = list(items)
    assert fmt == "shopify_csv"
    assert len(got) == drop.transactions and sum(i.ok for i in got) == drop.valid
    assert [(e.line, e.field) for i in got for e in i.errors] == drop.bad
    assert sum(i.rows for i in got) == drop.rows
    assert {(i.txn or {})["kind"] for i in got if i.ok} == {"sale", "return"}


def test_resume_at_each_checkpoint_neither_loses_nor_doubles(tmp_path: Path) -> None:
    drop = write_shopify_export(tmp_path / "o.csv", 40, refund_every=3)
    _, items = load(drop.path)
    full = list(items)
    keys = [(i.txn or {})["txn_id"] for i in full]
    for k, item in enumerate(full):
        _, rest = load(drop.path, resume=item.resume)
        again = [(i.txn or {})["txn_id"] for i in rest]
        # Everything after item k comes again; at most the sale of item k's order repeats.
        assert again[-len(keys[k + 1 :]) or len(again) :] == keys[k + 1 :]
        assert set(again) - set(keys[k + 1 :]) <= {keys[k]}


def test_semicolon_delimited_export_from_a_spreadsheet() -> None:
    text = export(order("#13", [("1", "2.50", "A")], Total="2.50")).replace(",", ";")
    (item,) = read(text)
    assert item.ok and item.txn["total"] == "2.50"


def test_helpers() -> None:
    assert allocate(100, [1, 1, 1]) == [33, 33, 34]
    assert allocate(5, [0, 0]) == [0, 5]
    assert tender_type("Cash + Shopify Payments") == "split"
    assert tender_type("PayPal Express Checkout") == "paypal_express_checkout"
    assert tender_type("") == "other" and tender_type("Gift card") == "gift_card"
    assert register_of({"Location": "  "}) == "shopify"
    assert len(shopify_order(2)) == 3 and len(shopify_order(2)[0]) == len(SHOPIFY_HEADER)


def _created_at_reference(text: str) -> str | None:
    """What the reader did before its fast path: strptime in two forms, then ISO 8601."""
    from datetime import datetime

    for fmt in ("%Y-%m-%d %H:%M:%S %z", "%Y-%m-%d %H:%M %z"):
        try:
            return datetime.strptime(text, fmt).isoformat()
        except ValueError:
            pass
    try:
        return datetime.fromisoformat(text).isoformat()
    except ValueError:
        return None


def test_created_at_fast_path_reads_what_strptime_reads() -> None:
    import random

    from edge_agent.drops.shopify_csv import _created_at

    rng = random.Random(2)
    for _ in range(3000):
        text = (
            f"{rng.randint(1990, 2030):04d}-{rng.randint(0, 13):02d}-{rng.randint(0, 32):02d} "
            f"{rng.randint(0, 25):02d}:{rng.randint(0, 61):02d}:{rng.randint(0, 61):02d} "
            f"{rng.choice('+-')}{rng.randint(0, 25):02d}{rng.randint(0, 61):02d}"
        )
        errors: list = []
        got = _created_at(text, 1, errors)
        want = _created_at_reference(text)
        assert (got, bool(errors)) == ((want, False) if want is not None else (text, True)), text
