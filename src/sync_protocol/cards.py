"""Card-number (PAN) detection: a full card number must never be stored."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

# 13–19 digits, optionally grouped by single spaces or dashes as printed on receipts.
_CANDIDATE = re.compile(r"(?<!\d)(?:\d[ -]?){12,18}\d(?!\d)")
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


def find_pans(value: Any, path: str = "") -> Iterator[str]:
    """Yield the path of every string, number or key in ``value`` that holds a card number."""
    if isinstance(value, dict):
        for key, item in value.items():
            sub = f"{path}.{key}" if path else str(key)
            if isinstance(key, str) and contains_pan(key):
                yield sub
            yield from find_pans(item, sub)
    elif isinstance(value, list):
        for i, item in enumerate(value):
            yield from find_pans(item, f"{path}[{i}]")
    elif isinstance(value, str | int) and not isinstance(value, bool) and contains_pan(str(value), path):
        yield path
