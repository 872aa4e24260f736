"""Format detection and whole-file rejection: not text, empty, unknown or broken headers."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest

from edge_agent.drops import DropRejected, detect, load
from edge_agent.drops.csv_canonical import COLUMNS
from edge_agent.drops.formats import SNIFF_BYTES
from storesync_harness.dropfiles import SHOPIFY_HEADER, sale, shopify_order

JSON_LINE = json.dumps(sale(1)) + "\n"
CANONICAL_HEADER = ",".join(COLUMNS) + "\n"
SHOPIFY = ",".join(SHOPIFY_HEADER) + "\n"


def rejected(data: bytes) -> str:
    with pytest.raises(DropRejected) as info:
        load(io.BytesIO(data))
    return info.value.reason


@pytest.mark.parametrize(
    ("text", "fmt"),
    [
        (JSON_LINE, "jsonl"),
        ("\n\n  \n" + JSON_LINE, "jsonl"),
        (CANONICAL_HEADER, "csv_canonical"),
        (CANONICAL_HEADER.replace(",", ";"), "csv_canonical"),
        (SHOPIFY, "shopify_csv"),
        ("Name,Created at,Currency,Total,Lineitem quantity,Lineitem price,Lineitem name\n", "shopify_csv"),
    ],
)
def test_detects_format_by_first_line(text: str, fmt: str) -> None:
    assert detect(io.BytesIO(text.encode())).name == fmt
    assert detect(io.BytesIO(b"\xef\xbb\xbf" + text.encode())).name == fmt


def test_load_accepts_a_path_and_closes_the_file(tmp_path: Path) -> None:
    path = tmp_path / "day.jsonl"
    path.write_text(JSON_LINE * 3)
    fmt, items = load(path)
    assert fmt == "jsonl"
    assert [i.ok for i in items] == [True, True, True]
    fmt, items = load(str(path))
    assert sum(1 for _ in items) == 3


@pytest.mark.parametrize(
    ("data", "needle"),
    [
        (b"", "empty (0 bytes)"),
        (b"\n\n   \r\n", "empty (only blank lines)"),
        (b"\xef\xbb\xbf", "empty (only blank lines)"),
        (b"PK\x03\x04\x14\x00\x00\x00", "NUL byte at byte offset 5"),
        (b"txn_id,kind\nR1-1,\xffsale\n", "invalid byte 0xff at byte offset 17"),
        ("txn_id".encode("utf-16"), "UTF-16 (little-endian)"),
        (b"\x89PNG\r\n\x1a\n\x00\x00", "NUL byte at byte offset 8"),
    ],
)
def test_not_text_or_empty_is_rejected_whole_with_the_offset(data: bytes, needle: str) -> None:
    assert needle in rejected(data)


def test_utf8_character_cut_by_the_sniff_window_is_not_an_error() -> None:
    pad = SNIFF_BYTES - len(JSON_LINE.encode()) - 1
    text = JSON_LINE + "x" * pad + "é\n"
    assert len(text.encode()[:SNIFF_BYTES]) == SNIFF_BYTES
    fmt, items = load(io.BytesIO(text.encode()))
    assert fmt == "jsonl"
    found = list(items)
    assert found[0].ok and found[1].errors[0].line == 2


def test_unknown_header_names_what_was_seen_and_what_was_expected() -> None:
    reason = rejected(b"date;amount;who\n2026-05-01;12.00;ada\n")
    # The refused line is described, never quoted (docs/security.md: a refused file's content is not repeated).
    assert "line 1 (15 characters)" in reason and "date;amount" not in reason
    assert "txn_id" in reason and "Lineitem quantity" in reason and "JSON Lines" in reason


def test_json_array_is_refused_with_a_hint() -> None:
    assert "JSON array" in rejected(b'[{"txn_id": "x"}]\n')


def test_canonical_header_with_unknown_column_is_refused() -> None:
    reason = rejected(CANONICAL_HEADER.replace("discount", "discont").encode())
    assert "unknown column(s) 'discont'" in reason


def test_canonical_header_missing_a_required_column_is_refused() -> None:
    header = ",".join(c for c in COLUMNS if c != "tender_amount") + "\n"
    assert "missing column(s) tender_amount" in rejected(header.encode())


def test_repeated_column_is_refused() -> None:
    assert "'qty' appears twice" in rejected((CANONICAL_HEADER.rstrip() + ",qty\n").encode())


def test_shopify_header_missing_currency_is_refused() -> None:
    header = ",".join(c for c in SHOPIFY_HEADER if c != "Currency") + "\n"
    assert "missing column(s) Currency" in rejected(header.encode())


def test_bad_bytes_after_the_sniff_window_cost_only_their_line() -> None:
    good = JSON_LINE.encode()
    n = SNIFF_BYTES // len(good) + 5
    data = good * n + b'{"txn_id": "\xc3\x28"}\n' + good
    fmt, items = load(io.BytesIO(data))
    found = list(items)
    assert len(found) == n + 2
    bad = found[n]
    assert not bad.ok and bad.first_line == n + 1
    offset = len(good) * n + len(b'{"txn_id": "')
    assert bad.errors[0].field == "(line)"
    assert f"invalid UTF-8 byte 0xc3 at byte offset {offset}" in bad.errors[0].reason
    assert found[-1].ok


def test_nul_byte_in_a_later_csv_row_rejects_that_order_only() -> None:
    out = io.StringIO()
    csv.writer(out, lineterminator="\n").writerows(r for i in range(1, 4) for r in shopify_order(i))
    body = SHOPIFY + out.getvalue()
    pad = "\n" * (SNIFF_BYTES + 10)  # push the bad byte past the sniff window; blank lines are skipped
    data = (body + pad).encode() + b"\x00" + b"\n" + body.split("\n", 1)[1].encode()
    fmt, items = load(io.BytesIO(data))
    found = list(items)
    bad = [i for i in found if not i.ok]
    assert len(bad) == 1 and "NUL byte at byte offset" in bad[0].errors[0].reason
    assert sum(i.ok for i in found) == len(found) - 1
