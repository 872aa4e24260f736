"""Canonical CSV drops: grouping by txn_id, tenders per row, errors with line + column, round trip."""

from __future__ import annotations

import csv
import io
from decimal import Decimal
from pathlib import Path
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from edge_agent.drops import load
from edge_agent.drops.csv_canonical import COLUMNS, read_csv_canonical, write_csv
from storesync_harness.dropfiles import sale, write_canonical_csv
from sync_protocol import parse_transaction

HEADER = ",".join(COLUMNS)


def read(text: str) -> list:
    return list(read_csv_canonical(io.BytesIO(text.encode())))


def csv_of(txns: list[dict[str, Any]]) -> str:
    out = io.StringIO()
    write_csv(out, txns)
    return out.getvalue()


def row(**values: str) -> str:
    return ",".join(values.get(c, "") for c in COLUMNS)


def test_rows_group_into_transactions_with_lines_on_their_own_rows() -> None:
    txns = [sale(i) for i in range(6)]
    items = read(csv_of(txns))
    assert [i.txn for i in items] == [parse_transaction(t).canonical() for t in txns]
    assert [len(i.raw) for i in items] == [len(t["lines"]) for t in txns]
    assert items[0].first_line == 2 and items[1].first_line == 3 and items[2].last_line == 7


def test_more_tenders_than_lines_use_tender_only_rows() -> None:
    txn = sale(0)  # one line
    total = Decimal(txn["total"])
    txn["tenders"] = [
        {"type": "card", "amount": "10.00", "card_last4": "4242"},
        {"type": "gift_card", "amount": "5.00"},
        {"type": "cash", "amount": str(total - 15)},
    ]
    text = csv_of([txn])
    assert len(text.splitlines()) == 4
    (item,) = read(text)
    assert item.ok and item.txn == parse_transaction(txn).canonical()


def test_later_rows_may_repeat_transaction_fields_but_not_change_them() -> None:
    txn = sale(2)  # three lines
    rows = list(csv.reader(io.StringIO(csv_of([txn]))))
    rows[2][COLUMNS.index("currency")] = "EUR"  # repeated exactly: fine
    rows[3][COLUMNS.index("register_id")] = "R9"
    out = io.StringIO()
    csv.writer(out, lineterminator="\n").writerows(rows)
    (item,) = read(out.getvalue())
    assert [(e.line, e.field) for e in item.errors] == [(4, "register_id")]
    assert "'R9' differs from 'R1'" in item.errors[0].reason


def test_a_bad_field_names_line_and_column_and_other_transactions_come_out(tmp_path: Path) -> None:
    drop = write_canonical_csv(tmp_path / "d.csv", 40, bad_rows=[5, 21])
    fmt, items = load(drop.path)
    got = list(items)
    assert fmt == "csv_canonical" and len(got) == 40
    assert sum(i.ok for i in got) == drop.valid == 38
    assert [(e.line, e.field) for i in got for e in i.errors] == drop.bad
    bad = next(i for i in got if not i.ok)
    assert next(csv.reader([bad.row_at(bad.errors[0].line)]))[COLUMNS.index("qty")] == "1.5x"


def test_void_is_one_row_and_return_carries_original_and_disposition() -> None:
    text = "\n".join(
        [
            HEADER,
            row(txn_id="V1", register_id="R1", kind="void", occurred_at="2026-05-01T10:00:00", currency="EUR",
                total="0.00", voided_txn_id="R1-1"),
            row(txn_id="T2", register_id="R1", kind="return", occurred_at="2026-05-01T10:01:00", currency="EUR",
                sku="A", qty="1", unit_price="5.00", disposition="damaged", tender_type="cash", tender_amount="5.00",
                total="5.00", original_channel="web", original_order_id="W-1"),
        ]
    )  # fmt: skip
    void, ret = read(text + "\n")
    assert void.ok and void.txn is not None and void.txn["voided_txn_id"] == "R1-1"
    assert ret.ok and ret.txn is not None
    assert ret.txn["original"] == {"channel": "web", "order_id": "W-1"}
    assert ret.txn["lines"][0]["disposition"] == "damaged"


def test_wrong_field_count_and_missing_values_reject_the_transaction() -> None:
    good = row(txn_id="T1", register_id="R1", kind="sale", occurred_at="2026-05-01T10:00:00", currency="EUR",
               sku="A", qty="1", unit_price="5.00", tender_type="cash", tender_amount="5.00", total="5.00")  # fmt: skip
    text = "\n".join(
        [HEADER, good, "T1,R1,sale", good.replace("T1", "T2"), good.replace("T1", "T3").replace(",A,", ",,")]
    )
    t1, t2, t3 = read(text + "\n")
    assert [(e.line, e.field) for e in t1.errors] == [(3, "(row)")]
    assert f"has 3 fields, the header has {len(COLUMNS)}" in t1.errors[0].reason
    assert t1.rows == 2 and t1.raw == [good, "T1,R1,sale"]
    assert t2.ok
    assert [(e.line, e.field) for e in t3.errors] == [(5, "sku")]


def test_totals_mismatch_is_reported_on_the_first_row() -> None:
    txn = sale(1)
    txn["total"] = "0.01"
    txn["tenders"][0]["amount"] = "0.01"
    (item,) = read(csv_of([txn]))
    assert {(e.line, e.field) for e in item.errors} == {(2, "total")}


def test_quoted_newlines_keep_line_numbers_right() -> None:
    txns = [sale(i) for i in range(3)]
    txns[0]["lines"][0]["name"] = "two\nlines"
    items = read(csv_of(txns))
    assert all(i.ok for i in items)
    assert items[0].txn is not None and items[0].txn["lines"][0]["name"] == "two\nlines"
    assert (items[0].first_line, items[0].last_line) == (2, 3)
    assert items[1].first_line == 4


def test_resume_rereads_the_header(tmp_path: Path) -> None:
    drop = write_canonical_csv(tmp_path / "d.csv", 30, bad_rows=[3])
    _, items = load(drop.path)
    full = list(items)
    for k in (0, 3, 17, 29):
        _, rest = load(drop.path, resume=full[k].resume)
        assert [(i.first_line, i.txn, i.errors) for i in rest] == [
            (i.first_line, i.txn, i.errors) for i in full[k + 1 :]
        ]


# --- round trip -------------------------------------------------------------------------------------

money = st.integers(min_value=0, max_value=99_999).map(lambda c: f"{c // 100}.{c % 100:02d}")
text = st.text(st.characters(codec="utf-8", exclude_categories=("Cs", "Cc")) | st.sampled_from([",", '"', "\n", ";"]),
               min_size=1, max_size=30)  # fmt: skip


@st.composite
def transactions(draw: st.DrawFn) -> dict[str, Any]:
    kind = draw(st.sampled_from(["sale", "return", "void"]))
    txn: dict[str, Any] = {
        "txn_id": draw(st.from_regex(r"[A-Za-z0-9#_/-]{1,20}", fullmatch=True)),
        "register_id": draw(st.from_regex(r"[A-Za-z0-9_-]{1,10}", fullmatch=True)),
        "kind": kind,
        "occurred_at": draw(st.sampled_from(["2026-05-01T10:00:00", "2026-05-01T10:00:00+02:00"])),
        "currency": "EUR",
    }
    if kind == "void":
        txn.update(
            lines=[], tenders=[], total="0.00", voided_txn_id=draw(st.from_regex(r"[A-Z0-9-]{1,10}", fullmatch=True))
        )
        return txn
    lines = []
    for _ in range(draw(st.integers(1, 4))):
        line = {"sku": draw(st.from_regex(r"[A-Z0-9-]{1,12}", fullmatch=True)), "qty": str(draw(st.integers(1, 5))),
                "unit_price": draw(money), "discount": "0.00", "tax": draw(money)}  # fmt: skip
        if draw(st.booleans()):
            line["name"] = draw(text)
        if kind == "return" and draw(st.booleans()):
            line["disposition"] = draw(st.sampled_from(["restock", "damaged"]))
        lines.append(line)
    total = sum(Decimal(x["unit_price"]) * int(x["qty"]) + Decimal(x["tax"]) for x in lines)
    split = draw(st.integers(0, 3))
    parts = [Decimal(draw(st.integers(0, int(total * 100)))) / 100 for _ in range(split)]
    if sum(parts) > total:
        parts = []
    amounts = [*parts, total - sum(parts)]
    txn["lines"] = lines
    txn["tenders"] = [{"type": draw(st.sampled_from(["cash", "gift_card"])), "amount": str(a)} for a in amounts]
    txn["tenders"][0] = {"type": "card", "amount": str(amounts[0]), "card_last4": "4242"}
    txn["total"] = str(total)
    if kind == "return" and draw(st.booleans()):
        txn["original"] = {"channel": "web", "order_id": draw(st.from_regex(r"[A-Z0-9-]{1,10}", fullmatch=True))}
    return txn


@settings(max_examples=150, deadline=None)
@given(st.lists(transactions(), min_size=1, max_size=5))
def test_round_trip_canonical_csv(txns: list[dict[str, Any]]) -> None:
    canon = [parse_transaction(t).canonical() for t in txns]
    # Consecutive transactions with one txn_id would merge into one: make them distinct.
    for i, c in enumerate(canon):
        c["txn_id"] = f"{i}-{c['txn_id']}"
    items = read(csv_of(canon))
    assert [i.errors for i in items] == [[] for _ in canon]
    assert [i.txn for i in items] == canon
