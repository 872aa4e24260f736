"""Card-number (PAN) detection: a full card number must never be stored."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

# 13–19 digits, optionally grouped by single spaces or dashes as printed on receipts.
_CANDIDATE = re.compile(r"(?<![0-9])(?:[0-9][ -]?){12,18}[0-9](?![0-9])")
# Fields that legitimately carry GS1 product codes (GTIN-8/12/13/14); see docs/protocol.md.
_PRODUCT_CODE_FIELDS = re.compile(r"^lines\[\d+\]\.(sku|gtin|barcode)$")


def luhn_ok(digits: str) -> bool:
    """True when the digit string passes the Luhn (mod 10) check."""
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = ord(ch) - 48
        if i % 2 == 1:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return total % 10 == 0


def gs1_check_ok(digits: str) -> bool:
    """True when the digit string is a GTIN-8/12/13/14 with a correct GS1 check digit."""
    if len(digits) not in (8, 12, 13, 14):
        return False
    body, check = digits[:-1], int(digits[-1])
    total = sum(int(d) * (3 if i % 2 == 0 else 1) for i, d in enumerate(reversed(body)))
    return (10 - total % 10) % 10 == check


def contains_pan(text: str, field: str = "") -> bool:
    """True when ``text`` holds a 13–19 digit Luhn-valid number.

    A valid GS1 GTIN in a product-code field (``lines[i].sku``) is a product, not a card.
    """
    for match in _CANDIDATE.finditer(text):
        digits = re.sub(r"[ -]", "", match.group(0))
        if not 13 <= len(digits) <= 19 or not luhn_ok(digits):
            continue
        if _PRODUCT_CODE_FIELDS.match(field) and digits == text.strip() and gs1_check_ok(digits):
            continue
        return True
    return False


def _long_scalars(value: Any) -> list[str]:
    """Every string, key or integer in ``value`` long enough to hold a 13-digit card number."""
    out: list[str] = []
    stack = [value]
    while stack:
        item = stack.pop()
        kind = type(item)
        if kind is str:
            if len(item) >= 13:
                out.append(item)
        elif kind is dict:
            for key, sub in item.items():
                if type(key) is str and len(key) >= 13:
                    out.append(key)
                stack.append(sub)
        elif kind is list:
            stack.extend(item)
        elif kind is int and abs(item) >= 10**12:
            out.append(str(item))
    return out


def _has_candidate(text: str) -> bool:
    for match in _CANDIDATE.finditer(text):
        digits = re.sub(r"[ -]", "", match.group(0))
        if 13 <= len(digits) <= 19 and luhn_ok(digits):
            return True
    return False


def may_contain_pan(value: Any) -> bool:
    """Cheap pre-check: False means no card number anywhere in ``value``.

    True means a Luhn-valid candidate exists somewhere (possibly a GTIN in a product field);
    :func:`find_pans` then decides, field by field.
    """
    return _has_candidate("\n".join(_long_scalars(value)))


def find_pans(value: Any, path: str = "") -> Iterator[str]:
    """Yield the path of every string, number or key in ``value`` that holds a card number."""
    if not path and not may_contain_pan(value):
        return
    yield from _walk(value, path)


def _walk(value: Any, path: str) -> Iterator[str]:
    if isinstance(value, dict):
        for key, item in value.items():
            sub = f"{path}.{key}" if path else str(key)
            if isinstance(key, str) and contains_pan(key):
                yield sub
            yield from _walk(item, sub)
    elif isinstance(value, list):
        for i, item in enumerate(value):
            yield from _walk(item, f"{path}[{i}]")
    elif isinstance(value, str | int) and not isinstance(value, bool) and contains_pan(str(value), path):
        yield path
