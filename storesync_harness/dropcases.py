"""The files of the drop-import trials, and what importing each must give (the reference).

A case is one drop file of ``n`` transactions in one of the three formats, mixed sales, returns
and voids (:class:`~storesync_harness.pos.Pos`, or Shopify orders with full and partial refunds and
voided orders), with a few bad rows at seeded places. Its reference:

- ``expected``: every good transaction's key -> its canonical JSON. For JSON Lines and the
  canonical CSV it is the generator's own transaction through ``sync_protocol``'s
  ``parse_transaction`` (independent of the drop readers); for a Shopify export (whose mapping to
  transactions *is* the reader) it is the reader's output read serially in this process: one pass,
  no worker processes, no chunks, no resume, none of the import pipeline. The first two formats are
  also read that way and must agree with the generator, or the case is refused (a harness bug);
- ``bad``: ``(line, field)`` of every injected error, the lines the errors file must report once each;
- ``bad_keys``: keys of bad JSON Lines / canonical CSV transactions; none may reach the ledger (nor
  may any key the reference does not hold: the content checker counts those as unexpected).
"""

from __future__ import annotations

import csv
import hashlib
import json
import random
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edge_agent.drops import load
from edge_agent.drops.csv_canonical import COLUMNS, rows_for
from sync_protocol.canonical import canonical_dumps
from sync_protocol.transaction import parse_transaction

from .dropfiles import SHOPIFY_HEADER, money, shopify_order
from .invariants import Key, txn_key
from .pos import Pos

FORMATS = ("jsonl", "csv_canonical", "shopify_csv")
SUFFIX = {"jsonl": ".jsonl", "csv_canonical": ".csv", "shopify_csv": ".csv"}
_TOTAL = SHOPIFY_HEADER.index("Total")
_QTY = COLUMNS.index("qty")


@dataclass
class DropCase:
    """One generated drop file and its reference."""

    path: Path
    fmt: str
    rows: int = 0
    expected: dict[Key, str] = field(default_factory=dict)
    bad: list[tuple[int, str]] = field(default_factory=list)
    bad_keys: set[Key] = field(default_factory=set)
    kinds: Counter[str] = field(default_factory=Counter)
    sha256: str = ""

    @property
    def good(self) -> int:
        return len(self.expected)


def canonical_text(txn: dict[str, Any]) -> str:
    """The canonical JSON a valid transaction must be stored as (``sync_protocol``, not the readers)."""
    return parse_transaction(txn).canonical_json()


def _bad_places(rng: random.Random, candidates: list[int], count: int) -> set[int]:
    return set(rng.sample(candidates, min(count, len(candidates))))


def _jsonl(case: DropCase, txns: list[dict[str, Any]], bad: set[int]) -> None:
    with open(case.path, "w", encoding="utf-8", newline="\n") as f:
        for i, txn in enumerate(txns):
            line = i + 1
            text = json.dumps(txn, separators=(",", ":"), ensure_ascii=False)
            if i in bad:
                kind = len(case.bad) % 3
                if kind == 0:  # cut short: not JSON, no key
                    text = text[:-9]
                    case.bad.append((line, "(line)"))
                elif kind == 1:
                    txn = {**txn, "lines": [{**txn["lines"][0], "qty": "two"}, *txn["lines"][1:]]}
                    text = json.dumps(txn, separators=(",", ":"))
                    case.bad.append((line, "lines[0].qty"))
                    case.bad_keys.add(txn_key(txn))
                else:
                    txn = {**txn, "occurred_at": "yesterday at noon"}
                    text = json.dumps(txn, separators=(",", ":"))
                    case.bad.append((line, "occurred_at"))
                    case.bad_keys.add(txn_key(txn))
            else:
                case.expected[txn_key(txn)] = canonical_text(txn)
                case.kinds[txn["kind"]] += 1
            f.write(text + "\n")
            case.rows += 1


def _canonical_csv(case: DropCase, txns: list[dict[str, Any]], bad: set[int]) -> None:
    line = 1
    with open(case.path, "w", encoding="utf-8", newline="") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(COLUMNS)
        for i, txn in enumerate(txns):
            rows = rows_for(txn)
            if i in bad:  # a sale: its last line's qty is not a number
                k = len(txn["lines"]) - 1
                rows[k][_QTY] = "1.5x"
                case.bad.append((line + 1 + k, "qty"))
                case.bad_keys.add(txn_key(txn))
            else:
                case.expected[txn_key(txn)] = canonical_text(txn)
                case.kinds[txn["kind"]] += 1
            writer.writerows(rows)
            line += len(rows)
            case.rows += len(rows)


def _shopify(case: DropCase, n: int, base: int, rng: random.Random, bad: set[int]) -> None:
    """Write the orders; the bad ones have a Total a cent off."""
    line = 1
    with open(case.path, "w", encoding="utf-8", newline="") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(SHOPIFY_HEADER)
        for j in range(n):
            roll = rng.random()
            refund = "full" if roll < 0.06 else "partial" if roll < 0.12 else ""
            rows = shopify_order(base + j, refund=refund, voided=0.12 <= roll < 0.15)
            if j in bad:
                rows[0][_TOTAL] = money(int(rows[0][_TOTAL].replace(".", "")) + 1)
                case.bad.append((line + 1, "Total"))
            writer.writerows(rows)
            line += len(rows)
            case.rows += len(rows)


def write_case(path: Path, fmt: str, n: int, rng: random.Random, tag: int) -> DropCase:
    """Write a case of ``n`` transactions (orders, for Shopify) with 3-6 bad ones; keys unique per ``tag``."""
    case = DropCase(path, fmt)
    count = rng.randint(3, 6)
    if fmt == "shopify_csv":
        base = 100_000 * (tag + 1)  # order names (#...) and ids unique per trial
        _shopify(case, n, base, rng, _bad_places(rng, list(range(n)), count))
        _reference_from_reader(case)
    else:
        pos = Pos(f"D{tag}", seed=rng.randrange(1 << 30))
        txns = [pos.mixed() for _ in range(n)]
        sales = [i for i, t in enumerate(txns) if t["kind"] == "sale"]
        bad = _bad_places(rng, sales, count)
        (_jsonl if fmt == "jsonl" else _canonical_csv)(case, txns, bad)
        _check_against_reader(case)
    case.sha256 = hashlib.sha256(path.read_bytes()).hexdigest()
    return case


def _serial(case: DropCase) -> tuple[dict[Key, str], list[tuple[int, str]]]:
    """The file read once, serially, in this process: good items and error places."""
    good: dict[Key, str] = {}
    errors: list[tuple[int, str]] = []
    fmt, items = load(case.path)
    if fmt != case.fmt:
        raise AssertionError(f"{case.path.name}: detected as {fmt}, written as {case.fmt}")
    for item in items:
        if item.ok and item.txn is not None:
            good[txn_key(item.txn)] = canonical_dumps(item.txn)
        else:
            errors.extend((e.line, e.field) for e in item.errors)
    return good, errors


def _reference_from_reader(case: DropCase) -> None:
    good, errors = _serial(case)
    if sorted(errors) != sorted(case.bad):
        raise AssertionError(f"{case.path.name}: the reader reports {sorted(errors)}, written {sorted(case.bad)}")
    case.expected = good
    for text in good.values():
        case.kinds[json.loads(text)["kind"]] += 1


def _check_against_reader(case: DropCase) -> None:
    good, errors = _serial(case)
    if good != case.expected:
        differ = next((k for k in case.expected if good.get(k) != case.expected[k]), None)
        raise AssertionError(f"{case.path.name}: the reader and sync_protocol disagree (first at {differ})")
    if sorted(errors) != sorted(case.bad):
        raise AssertionError(f"{case.path.name}: the reader reports {sorted(errors)}, written {sorted(case.bad)}")
