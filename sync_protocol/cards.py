"""Card-number (PAN) detection and masking: a full card number must never be stored or shown.

DESIGN §9: a PAN is 13–19 digits passing the Luhn check, after Unicode NFKC and with any separators
between digit groups. Text is normalised before it is looked at:

1. Unicode NFKC (full-width ``４``, mathematical ``𝟒`` and similar compatibility digits become ``4``,
   no-break and ideographic spaces become spaces);
2. invisible format characters (zero-width space/joiners, word joiner, BOM, soft hyphen: Unicode
   category ``Cf``) are removed;
3. every other Unicode decimal digit (Arabic-Indic ``٤``, Devanagari ``४``, …) becomes its ASCII digit.

Then the digit groups (maximal runs of digits) are clustered: two groups belong together when at most
:data:`MAX_SEPARATOR` characters of anything else stand between them (``4111.1111/1111_1111``,
``4111 - 1111``, ``4111a1111``). Every contiguous run of groups in a cluster whose digits number 13–19
and pass Luhn is a card number, so neither leading nor trailing digits hide one.

Two things are not card numbers: a valid GS1 GTIN filling a product-code field (``lines[i].sku``,
``.gtin``, ``.barcode``), and a value that is an ISO 8601 date/time as a whole (its digits are bounded
by the calendar and cannot spell an arbitrary number; ``occurred_at`` would otherwise be refused one
time in ten). Both exceptions are in docs/security.md.

Masking (:func:`mask_pans`, :func:`mask_value`, :func:`redact_row`) replaces each number found with
``•••• 1111`` (its last four digits) wherever text is written to a report, a log or a screen.
"""

from __future__ import annotations

import csv
import io
import json
import re
import unicodedata
from collections.abc import Iterator
from datetime import datetime
from typing import Any

MAX_SEPARATOR = 3
"""Most characters (after normalisation) allowed between two digit groups of one card number."""
MIN_DIGITS, MAX_DIGITS = 13, 19
MASK = "••••"

# Fields that legitimately carry GS1 product codes (GTIN-8/12/13/14); see docs/protocol.md.
_PRODUCT_CODE_FIELDS = re.compile(r"^lines\[\d+\]\.(sku|gtin|barcode)$")
_GROUP = re.compile(r"[0-9]+")
_ISO_TIME = re.compile(
    r"^[0-9]{4}-[0-9]{2}-[0-9]{2}"
    r"(?:[T ][0-9]{2}:[0-9]{2}(?::[0-9]{2}(?:[.,][0-9]{1,6})?)?(?: ?Z| ?[+-][0-9]{2}(?::?[0-9]{2})?)?)?$"
)
_ZONE_SPACE = re.compile(r" (?=[Z+-])")
_NO_DIGITS = str.maketrans("", "", "0123456789")
_JOIN = "\x00" * (MAX_SEPARATOR + 1)
_LENGTH_PREFERENCE = {16: 0, 15: 1, 19: 2, 14: 3}


def luhn_ok(digits: str) -> bool:
    """True when the ASCII digit string passes the Luhn (mod 10) check."""
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
    if len(digits) not in (8, 12, 13, 14) or not digits.isascii() or not digits.isdigit():
        return False
    body, check = digits[:-1], int(digits[-1])
    total = sum(int(d) * (3 if i % 2 == 0 else 1) for i, d in enumerate(reversed(body)))
    return (10 - total % 10) % 10 == check


def normalise(text: str) -> str:
    """NFKC, invisible format characters removed, every decimal digit as its ASCII digit."""
    if text.isascii():
        return text
    out = []
    for ch in unicodedata.normalize("NFKC", text):
        if ch.isascii():
            out.append(ch)
            continue
        cat = unicodedata.category(ch)
        if cat == "Cf":
            continue
        if cat == "Nd":
            out.append(chr(48 + unicodedata.decimal(ch)))
        else:
            out.append(ch)
    return "".join(out)


def _enough_digits(text: str) -> bool:
    return len(text) - len(text.translate(_NO_DIGITS)) >= MIN_DIGITS


def _spans(norm: str) -> Iterator[tuple[int, int, str]]:
    """Yield ``(start, end, digits)`` of every card number in normalised text (may overlap)."""
    groups = [(m.start(), m.end()) for m in _GROUP.finditer(norm)]
    n = len(groups)
    for i in range(n):
        start = groups[i][0]
        digits = ""
        prev_end = start
        for j in range(i, n):
            g_start, g_end = groups[j]
            if j > i and g_start - prev_end > MAX_SEPARATOR:
                break
            digits += norm[g_start:g_end]
            if len(digits) > MAX_DIGITS:
                break
            prev_end = g_end
            if len(digits) >= MIN_DIGITS and luhn_ok(digits):
                yield start, g_end, digits


def _is_timestamp(norm: str) -> bool:
    """True for an extended-format ISO 8601 date or date-time (``2026-11-22T10:15:03.120+01:00``)."""
    text = norm.strip()
    if not _ISO_TIME.match(text):
        return False
    try:
        datetime.fromisoformat(_ZONE_SPACE.sub("", text) if " " in text else text)
    except ValueError:
        return False
    return True


def contains_pan(text: str, field: str = "") -> bool:
    """True when ``text`` holds a card number (see the module docstring for the rules).

    A valid GS1 GTIN that fills a product-code field (``lines[i].sku``) is a product, not a card.
    """
    if len(text) < MIN_DIGITS:
        return False
    norm = normalise(text)
    if not _enough_digits(norm) or _is_timestamp(norm):
        return False
    product_field = _PRODUCT_CODE_FIELDS.match(field) is not None
    for _, _, digits in _spans(norm):
        if product_field and digits == norm.strip() and gs1_check_ok(digits):
            continue
        return True
    return False


def _scalar_text(value: Any) -> str | None:
    kind = type(value)
    if kind is str:
        return value if len(value) >= MIN_DIGITS else None
    if kind is int:
        return str(value) if abs(value) >= 10 ** (MIN_DIGITS - 1) else None
    if kind is float and value == value and abs(value) >= 10 ** (MIN_DIGITS - 1) and abs(value) < 1e20:
        return str(int(value))
    return None


def _long_scalars(value: Any) -> list[str]:
    """Every string, key or number in ``value`` long enough to hold a card number (not time stamps)."""
    out: list[str] = []
    stack = [value]
    while stack:
        item = stack.pop()
        kind = type(item)
        if kind is str:
            if len(item) >= MIN_DIGITS and not _is_timestamp(item):
                out.append(item)
        elif kind is dict:
            for key, sub in item.items():
                if type(key) is str and len(key) >= MIN_DIGITS:
                    out.append(key)
                stack.append(sub)
        elif kind is list:
            stack.extend(item)
        elif kind is int or kind is float:
            text = _scalar_text(item)
            if text is not None:
                out.append(text)
    return out


def may_contain_pan(value: Any) -> bool:
    """Cheap pre-check: False means no card number anywhere in ``value``.

    True means a Luhn-valid candidate exists somewhere (possibly a GTIN in a product field);
    :func:`find_pans` then decides, field by field.
    """
    texts = _long_scalars(value)
    if not texts:
        return False
    joined = _JOIN.join(texts)
    if joined.isascii():
        if len(joined) - len(joined.translate(_NO_DIGITS)) < MIN_DIGITS:
            return False
    else:
        joined = normalise(joined)
    return next(_spans(joined), None) is not None


def find_pans(value: Any, path: str = "") -> Iterator[str]:
    """Yield the path of every string, number or key in ``value`` that holds a card number.

    Paths use ``a.b[0].c``; a key that is itself a card number appears masked (``•••• 1111``), so a
    path can be put into an error message as it is. Iterative: any nesting depth is fine.
    """
    if not may_contain_pan(value):
        return
    stack: list[tuple[Any, str]] = [(value, path)]
    while stack:
        item, where = stack.pop()
        if isinstance(item, dict):
            pending = []
            for key, sub in item.items():
                if isinstance(key, str):
                    shown = mask_pans(key)
                    sub_path = f"{where}.{shown}" if where else shown
                    if shown is not key:
                        yield sub_path
                else:
                    sub_path = f"{where}.{key}" if where else str(key)
                pending.append((sub, sub_path))
            stack.extend(reversed(pending))
        elif isinstance(item, list):
            stack.extend((sub, f"{where}[{i}]") for i, sub in reversed(list(enumerate(item))))
        else:
            text = _scalar_text(item)
            if text is not None and contains_pan(text, where):
                yield where


def mask_pans(text: str) -> str:
    """``text`` with every card number replaced by ``•••• `` and its last four digits.

    Text without a card number is returned unchanged; text with one comes back normalised (NFKC).
    """
    if len(text) < MIN_DIGITS:
        return text
    norm = normalise(text)
    if not _enough_digits(norm) or _is_timestamp(norm):
        return text

    # Where several numbers start at one place, prefer the one that ends where the digits end, then the
    # usual card lengths (a CSV cell after the number must not pass for its last four).
    def ends_cluster(end: int) -> bool:
        return _GROUP.search(norm, end, end + MAX_SEPARATOR + 1) is None

    hits = sorted(
        _spans(norm),
        key=lambda h: (h[0], not ends_cluster(h[1]), _LENGTH_PREFERENCE.get(len(h[2]), 9), -(h[1] - h[0])),
    )
    if not hits:
        return text
    out: list[str] = []
    pos = 0
    for start, end, digits in hits:
        if start < pos:
            continue
        out.append(norm[pos:start])
        out.append(f"{MASK} {digits[-4:]}")
        pos = end
    out.append(norm[pos:])
    return "".join(out)


def mask_file_name(name: str) -> str:
    """A file name with every card number replaced by ``card-`` and its last four digits (ASCII, no space).

    ``4111111111111111.jsonl`` becomes ``card-1111.jsonl``; a name without one is returned unchanged.
    """
    masked = mask_pans(name)
    if masked == name:
        return name
    return masked.replace(f"{MASK} ", "card-")


def mask_value(value: Any) -> Any:
    """A copy of a decoded JSON value with card numbers masked in every string, number and key."""
    if isinstance(value, dict):
        return {(mask_pans(k) if isinstance(k, str) else k): mask_value(v) for k, v in value.items()}
    if isinstance(value, list):
        return [mask_value(v) for v in value]
    if isinstance(value, str):
        return mask_pans(value)
    text = _scalar_text(value)
    if text is not None and contains_pan(text):
        return mask_pans(text)
    return value


def redact_row(text: str) -> str:
    """A row of a drop file (JSON or CSV text) as it may be written to a report or shown.

    A JSON row is decoded first, so a number hidden behind ``\\u`` escapes is found too; when it holds
    a card number the masked value is re-encoded. Any other text is masked as it stands.
    """
    masked = mask_pans(text)
    stripped = text.strip()
    if stripped[:1] in ("{", "["):
        try:
            doc = json.loads(stripped)
        except (ValueError, RecursionError):
            return masked
        try:
            if next(find_pans(doc), None) is not None:
                return json.dumps(mask_value(doc), ensure_ascii=False)
        except RecursionError:  # deeper than a real row: the text-level mask stands
            return masked
    return masked


def redact_csv_row(text: str) -> str:
    """A CSV record as it may be written to a report: each cell masked on its own.

    Cells are separate values, so digits in neighbouring cells (qty, price, tax) never merge into a
    number; the record is re-encoded only when a cell held a card number.
    """
    if len(text) < MIN_DIGITS:
        return text
    best: tuple[str, list[list[str]]] | None = None
    for delimiter in (",", ";", "\t", "|"):
        try:
            rows = list(csv.reader(io.StringIO(text, newline=""), delimiter=delimiter))
        except csv.Error:
            continue
        if best is None or sum(map(len, rows)) > sum(map(len, best[1])):
            best = (delimiter, rows)
    if best is None:
        return mask_pans(text)
    delimiter, rows = best
    masked = [[mask_pans(cell) for cell in row] for row in rows]
    if masked == rows:
        return text
    out = io.StringIO(newline="")
    csv.writer(out, delimiter=delimiter, lineterminator="\n").writerows(masked)
    return out.getvalue().rstrip("\n")
