"""A fast check of a transaction that is already in canonical form (every signed record body's ``txn``).

:func:`canonical_txn` gives the same dict as ``parse_transaction(raw).canonical()`` for any value
that validation accepts, several times faster for the common case: :func:`fast_canonical` accepts a
value only when it is exactly a canonical transaction (the form the agent signs: amounts at the
currency's minor units, quantities trimmed, no ``None``, v2 lines typed) and every schema and business
rule of :mod:`sync_protocol.transaction` holds, computing the sums in integer minor units. Anything
else, valid or not, answers None and goes to the full validation, which converts it or names every
bad field. So the fast path only ever accepts; tests/test_txn_fast.py checks on generated and mutated
transactions that it never accepts what the full path refuses, and gives the same dict when it accepts.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any

from .cards import find_pans
from .money import QTY_PLACES, minor_unit_exponent
from .transaction import LINE_TYPES, SCHEMA_V1, SCHEMA_V2, TransactionInvalid, parse_transaction

_TXN_ID = re.compile(r"[!-~]{1,64}")
_IDENT = re.compile(r"[A-Za-z0-9_-]{1,64}")
_CURRENCY = re.compile(r"[A-Z]{3}")
_TENDER_TYPE = re.compile(r"[a-z][a-z0-9_]{0,31}")
_LAST4 = re.compile(r"[0-9]{4}")
_CHANNEL = re.compile(r"[a-z0-9][a-z0-9_-]{0,31}")
# A canonical quantity: > 0, at most 15 integer digits and QTY_PLACES places, no trailing zero.
_QTY = re.compile(rf"([1-9][0-9]{{0,14}})|(0|[1-9][0-9]{{0,14}})\.([0-9]{{0,{QTY_PLACES - 1}}}[1-9])")
# A canonical non-negative amount with exactly the currency's minor-unit places (0 to 4).
_AMOUNT = {
    0: re.compile(r"0|[1-9][0-9]{0,14}"),
    **{e: re.compile(rf"(?:0|[1-9][0-9]{{0,14}})\.[0-9]{{{e}}}") for e in range(1, 5)},
}
_KINDS = frozenset({"sale", "return", "void"})
_LINE_TYPES = frozenset(LINE_TYPES)
_DISPOSITIONS = frozenset({"restock", "damaged"})


def _text(value: Any, low: int, high: int) -> bool:
    """A str of ``low``..``high`` code points that pydantic also takes (no lone surrogate)."""
    if type(value) is not str or not low <= len(value) <= high:
        return False
    if value.isascii():
        return True
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _matches(pattern: re.Pattern[str], value: Any) -> bool:
    return type(value) is str and pattern.fullmatch(value) is not None


def _one_of(value: Any, choices: frozenset[str]) -> bool:
    return type(value) is str and value in choices


def _minor(value: Any, pattern: re.Pattern[str]) -> int | None:
    """A canonical amount in integer minor units, or None."""
    if type(value) is not str or pattern.fullmatch(value) is None:
        return None
    return int(value.replace(".", ""))


def fast_canonical(raw: Any) -> dict[str, Any] | None:
    """``raw`` itself when it is a valid transaction in canonical form, else None (decide the full way).

    Does not scan for card numbers: :func:`canonical_txn` does that first.
    """
    if type(raw) is not dict:
        return None
    if len(raw) != 9 + ("original" in raw) + ("voided_txn_id" in raw):
        return None  # a key missing (KeyError below) or one not in the schema
    try:
        return _fast(raw)
    except KeyError:
        return None


def _fast(raw: dict[str, Any]) -> dict[str, Any] | None:
    schema, kind, cur = raw["schema"], raw["kind"], raw["currency"]
    if schema != SCHEMA_V1 and schema != SCHEMA_V2:
        return None
    if not _one_of(kind, _KINDS) or not _matches(_CURRENCY, cur):
        return None
    if not _matches(_TXN_ID, raw["txn_id"]) or not _matches(_IDENT, raw["register_id"]):
        return None
    occurred = raw["occurred_at"]
    if not _text(occurred, 16, 40):
        return None
    try:
        datetime.fromisoformat(occurred)
    except ValueError:
        return None
    exp = minor_unit_exponent(cur)
    amount = _AMOUNT.get(exp)
    if amount is None:  # pragma: no cover - every exponent is 0 to 4
        return None
    lines, tenders = raw["lines"], raw["tenders"]
    if type(lines) is not list or len(lines) > 2000 or type(tenders) is not list or len(tenders) > 50:
        return None
    v2 = schema == SCHEMA_V2
    gross = discounts = taxes = 0
    for line in lines:
        if type(line) is not dict:
            return None
        if len(line) != 5 + ("name" in line) + ("disposition" in line) + ("type" in line):
            return None
        if not _text(line["sku"], 1, 64):
            return None
        if "name" in line and not _text(line["name"], 0, 200):
            return None
        if "disposition" in line and (kind != "return" or not _one_of(line["disposition"], _DISPOSITIONS)):
            return None
        if v2:
            if not _one_of(line.get("type"), _LINE_TYPES):
                return None
        elif "type" in line:
            return None
        qty = line["qty"]
        m = _QTY.fullmatch(qty) if type(qty) is str else None
        if m is None:
            return None
        unit = _minor(line["unit_price"], amount)
        discount = _minor(line["discount"], amount)
        tax = _minor(line["tax"], amount)
        if unit is None or discount is None or tax is None:
            return None
        if m.group(1) is not None:
            gross += int(qty) * unit
        else:
            scale = 10 ** len(m.group(3))
            whole, rest = divmod(int(m.group(2) + m.group(3)) * unit, scale)
            if rest:
                return None  # qty × unit_price is not a whole number of minor units
            gross += whole
        discounts += discount
        taxes += tax
    tendered = 0
    for tender in tenders:
        if type(tender) is not dict:
            return None
        if len(tender) != 2 + ("card_last4" in tender):
            return None
        if not _matches(_TENDER_TYPE, tender["type"]):
            return None
        if "card_last4" in tender and (tender["type"] != "card" or not _matches(_LAST4, tender["card_last4"])):
            return None
        value = _minor(tender["amount"], amount)
        if value is None:
            return None
        tendered += value
    total = _minor(raw["total"], amount)
    if total is None:
        return None
    if "original" in raw:
        original = raw["original"]
        if kind != "return" or type(original) is not dict or len(original) != 2:
            return None
        if not _matches(_CHANNEL, original["channel"]) or not _text(original["order_id"], 1, 64):
            return None
    if "voided_txn_id" in raw:
        if kind != "void" or not _matches(_TXN_ID, raw["voided_txn_id"]):
            return None
    elif kind == "void":
        return None
    if kind != "void" and not lines:
        return None
    if gross - discounts + taxes != total or ((tenders or total != 0) and tendered != total):
        return None
    return raw


def canonical_txn(raw: Any, *, scan_cards: bool = True) -> dict[str, Any]:
    """``parse_transaction(raw, scan_cards=scan_cards).canonical()``, fast when ``raw`` is canonical already.

    Raises:
        TransactionInvalid: as :func:`~sync_protocol.transaction.parse_transaction` does.
    """
    if type(raw) is not dict:
        return parse_transaction(raw).canonical()  # raises: not an object
    if scan_cards and next(find_pans(raw), None) is not None:
        return parse_transaction(raw).canonical()  # raises, naming every such field (never the number)
    if "schema" not in raw and "schema_" not in raw:
        # A POS may leave the schema out (v1): canonical with it named, as the full path gives it.
        fast = fast_canonical({"schema": SCHEMA_V1, **raw})
    else:
        fast = fast_canonical(raw)
    if fast is not None:
        return fast
    return parse_transaction(raw, scan_cards=False).canonical()  # scanned above, or by the caller


__all__ = ["TransactionInvalid", "canonical_txn", "fast_canonical"]
