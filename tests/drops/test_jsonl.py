"""JSON Lines drops: valid transactions, bad lines with their numbers, resuming, bounded memory."""

from __future__ import annotations

import io
import json
import subprocess
import sys
import tracemalloc
from pathlib import Path

from edge_agent.drops import Checkpoint, load
from edge_agent.drops.jsonl import read_jsonl
from storesync_harness.dropfiles import sale, write_jsonl
from sync_protocol import parse_transaction
from sync_protocol.canonical import loads_if_compact


def read(data: str | bytes) -> list:
    raw = data.encode() if isinstance(data, str) else data
    return list(read_jsonl(io.BytesIO(raw)))


def test_each_line_is_a_validated_canonical_transaction() -> None:
    txns = [sale(i) for i in range(5)]
    items = read("".join(json.dumps(t) + "\n" for t in txns))
    assert [i.txn for i in items] == [parse_transaction(t).canonical() for t in txns]
    assert [(i.first_line, i.last_line, i.rows) for i in items] == [(n, n, 1) for n in range(1, 6)]
    assert all(i.txn is not None and i.txn["txn_id"] == t["txn_id"] for i, t in zip(items, txns, strict=True))
    assert items[2].raw == json.dumps(txns[2])


def test_blank_lines_and_crlf_are_skipped_but_counted() -> None:
    text = "\r\n" + json.dumps(sale(1)) + "\r\n\r\n   \n" + json.dumps(sale(2)) + "\r\n"
    items = read(text)
    assert [i.first_line for i in items] == [2, 5]
    assert all(i.ok for i in items)


def test_bad_json_line_is_an_error_naming_the_line_and_the_others_come_out() -> None:
    lines = [json.dumps(sale(i)) for i in range(4)]
    lines[2] = lines[2][:40]
    items = read("\n".join(lines) + "\n")
    assert [i.ok for i in items] == [True, True, False, True]
    err = items[2].errors[0]
    assert (err.line, err.field) == (3, "(line)")
    assert err.reason.startswith("not valid JSON: ") and "column" in err.reason
    assert items[2].raw == lines[2]


def test_bad_field_error_carries_line_and_field_path() -> None:
    txns = [sale(i) for i in range(3)]
    txns[1]["lines"][0]["qty"] = 2
    txns[1]["currency"] = "EURO"
    items = read("".join(json.dumps(t) + "\n" for t in txns))
    assert [i.ok for i in items] == [True, False, True]
    found = {(e.line, e.field) for e in items[1].errors}
    assert found == {(2, "lines[0].qty"), (2, "currency")}
    assert "not a JSON number" in next(e.reason for e in items[1].errors if e.field == "lines[0].qty")


def test_non_object_nan_and_card_numbers_are_refused() -> None:
    with_pan = sale(0)
    with_pan["lines"][0]["name"] = "paid with 4111 1111 1111 1111"
    items = read('[1, 2]\n{"txn_id": NaN}\n' + json.dumps(with_pan) + "\n")
    assert items[0].errors[0].reason == "must be a JSON object"
    assert "NaN is not allowed" in items[1].errors[0].reason
    assert items[2].errors[0].field == "lines[0].name"
    assert "4111" not in items[2].errors[0].reason


def test_totals_that_do_not_add_up_name_the_numbers() -> None:
    txn = sale(4)
    txn["total"] = "1.00"
    (item,) = read(json.dumps(txn) + "\n")
    reasons = {e.field: e.reason for e in item.errors}
    assert "but total is 1.00" in reasons["total"]


def test_generated_file_with_injected_bad_rows(tmp_path: Path) -> None:
    drop = write_jsonl(tmp_path / "d.jsonl", 500, bad_every=50)
    fmt, items = load(drop.path)
    got = list(items)
    assert fmt == "jsonl" and len(got) == drop.transactions
    assert sum(i.ok for i in got) == drop.valid == 490
    first_errors = [(i.errors[0].line, i.errors[0].field) for i in got if not i.ok]
    assert first_errors == drop.bad


def test_resume_from_any_checkpoint_gives_exactly_the_rest(tmp_path: Path) -> None:
    drop = write_jsonl(tmp_path / "d.jsonl", 60, bad_rows=[7, 30])
    with open(tmp_path / "d.jsonl", "ab") as f:
        f.write(b"\n\n")
    _, items = load(drop.path)
    full = list(items)
    for k in (0, 6, 7, 29, 58, 59):
        _, rest = load(drop.path, resume=full[k].resume)
        tail = list(rest)
        assert [(i.first_line, i.txn, i.errors) for i in tail] == [
            (i.first_line, i.txn, i.errors) for i in full[k + 1 :]
        ]
    _, none = load(drop.path, resume=Checkpoint(full[-1].resume.offset + 2, full[-1].resume.line + 2))
    assert list(none) == []


def write_mixed(path: Path, n: int) -> int:
    """``n`` rows: every 50th a full sale, the others long JSON values refused at once.

    The cheap rows keep the test fast while every row takes the whole path: line read, decode, JSON,
    ``parse_transaction``, error mapping, a yielded item.
    """
    filler = json.dumps("x" * 290)
    with open(path, "w", buffering=1 << 20) as f:
        for i in range(n):
            f.write((json.dumps(sale(i)) if i % 50 == 0 else filler) + "\n")
    return path.stat().st_size


def traced_peak(path: Path) -> tuple[int, int]:
    tracemalloc.start()
    try:
        _, items = load(path)
        rows = sum(item.rows for item in items)
        return rows, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_tracemalloc_peak_does_not_grow_with_file_size(tmp_path: Path) -> None:
    write_mixed(tmp_path / "small.jsonl", 2_000)
    write_mixed(tmp_path / "large.jsonl", 20_000)
    rows_small, peak_small = traced_peak(tmp_path / "small.jsonl")
    rows_large, peak_large = traced_peak(tmp_path / "large.jsonl")
    assert (rows_small, rows_large) == (2_000, 20_000)
    assert peak_large < 1_500_000
    assert peak_large < peak_small + 200_000, (peak_small, peak_large)


CHILD = """
import resource, sys
from edge_agent.drops import load
def run(path):
    _, items = load(path)
    ok = rows = 0
    for i in items:
        ok += i.ok
        rows += i.rows
    return ok, rows
warm = run(sys.argv[1])
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
ok, rows = run(sys.argv[2])
after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(ok, rows, before, after)
"""


def test_streaming_200k_rows_keeps_peak_rss_flat(tmp_path: Path) -> None:
    """A 200,000-row (~60 MB) file is read in a fresh process whose peak RSS hardly moves."""
    small, big = tmp_path / "small.jsonl", tmp_path / "big.jsonl"
    write_mixed(small, 500)
    size = write_mixed(big, 200_000)
    assert size > 55_000_000
    out = subprocess.run(
        [sys.executable, "-c", CHILD, str(small), str(big)], capture_output=True, text=True, check=True, timeout=120
    ).stdout.split()
    ok, rows, before_kb, after_kb = map(int, out)
    assert (ok, rows) == (4_000, 200_000)
    assert (after_kb - before_kb) * 1024 < 8_000_000, f"peak RSS grew by {after_kb - before_kb} KiB"


def test_compact_lines_take_the_fast_decoder_and_keep_every_refusal() -> None:
    good = json.dumps(sale(1), separators=(",", ":"))
    dup = '{"txn_id":"A",' + good[1:]  # compact, but txn_id twice
    nan = good[:-1] + ',"x":NaN}'
    assert loads_if_compact(good) == (True, sale(1))
    assert loads_if_compact(dup) == (False, None)
    assert loads_if_compact(nan) == (False, None)
    assert loads_if_compact(json.dumps(sale(1))) == (False, None)  # spaces: the reference decoder reads it
    items = read("\n".join([good, dup, nan]) + "\n")
    assert items[0].ok and items[0].txn == parse_transaction(sale(1)).canonical()
    assert items[1].errors[0].field == "txn_id" and "appears twice" in items[1].errors[0].reason
    assert "NaN is not allowed" in items[2].errors[0].reason
