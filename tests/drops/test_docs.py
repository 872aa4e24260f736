"""The examples in docs/file-drops.md are real: parsed out of the page and imported."""

from __future__ import annotations

import io
import json
import re
from pathlib import Path

import pytest

from edge_agent.drops import load
from sync_protocol import parse_transaction

DOC = Path(__file__).resolve().parents[2] / "docs" / "file-drops.md"


def example(name: str) -> str:
    """The fenced code block that follows ``<!-- example: name -->`` in the doc."""
    match = re.search(rf"<!-- example: {re.escape(name)} -->\n```\w*\n(.*?)\n```", DOC.read_text(), re.S)
    assert match, f"docs/file-drops.md has no example {name!r}"
    return match.group(1) + "\n"


def read_all(text: str) -> tuple[str, list]:
    fmt, items = load(io.BytesIO(text.encode("utf-8")))
    return fmt, list(items)


def test_canonical_csv_example_imports_as_the_documented_transactions() -> None:
    fmt, items = read_all(example("canonical-csv"))
    assert fmt == "csv_canonical"
    assert [i.errors for i in items] == [[], [], []]
    expected = [parse_transaction(json.loads(x)).canonical() for x in example("canonical-jsonl").splitlines()]
    assert [i.txn for i in items] == expected
    assert items[0].txn is not None and len(items[0].txn["tenders"]) == 2
    assert [(i.first_line, i.last_line, i.rows) for i in items] == [(2, 3, 2), (4, 4, 1), (5, 5, 1)]


def test_canonical_csv_line_type_column_gives_the_documented_v2_lines() -> None:
    fmt, items = read_all(example("canonical-csv-line-types"))
    assert fmt == "csv_canonical"
    assert [i.errors for i in items] == [[]]
    expected = [
        parse_transaction(json.loads(x)).canonical() for x in example("canonical-jsonl-line-types").splitlines()
    ]
    assert [i.txn for i in items] == expected
    txn = items[0].txn
    assert txn is not None and txn["schema"] == "storesync.pos.v2"
    assert [line["type"] for line in txn["lines"]] == ["item", "shipping", "gift_card"]


def test_canonical_csv_unknown_line_type_is_named() -> None:
    text = example("canonical-csv-line-types").replace("gift_card,,,", "voucher,,,")
    _, items = read_all(text)
    (item,) = items
    assert item.txn is None
    assert [(e.field, e.line) for e in item.errors] == [("line_type", 4)], item.errors


def test_canonical_jsonl_example_is_jsonl() -> None:
    fmt, items = read_all(example("canonical-jsonl"))
    assert fmt == "jsonl"
    assert all(i.ok for i in items) and len(items) == 3


def test_shopify_example_gives_the_documented_sale_and_return() -> None:
    fmt, items = read_all(example("shopify-csv"))
    assert fmt == "shopify_csv"
    assert [i.errors for i in items] == [[], []]
    expected = [parse_transaction(json.loads(x)).canonical() for x in example("shopify-jsonl").splitlines()]
    assert [i.txn for i in items] == expected


@pytest.mark.parametrize("name", ["canonical-csv", "shopify-csv"])
def test_doc_examples_have_one_field_count(name: str) -> None:
    import csv

    rows = list(csv.reader(io.StringIO(example(name))))
    assert len({len(r) for r in rows}) == 1
