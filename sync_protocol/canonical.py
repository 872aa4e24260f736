"""Canonical JSON: the one byte form that is hashed, signed and sent.

Rules: UTF-8, object keys sorted, no insignificant whitespace, no floats (decimals travel as strings),
integers only within the IEEE-754 safe range so every JSON reader agrees on them.

The bytes are those of ``json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)``
over the checked value. The encoder is orjson when the value holds only plain ``dict``, ``list``,
``tuple``, ``str``, ``int``, ``bool`` and ``None`` (what records and events hold): it writes the same
bytes (compact, keys in code-point order, only ``"``, ``\\`` and control characters escaped) about
25× faster (docs/performance.md); tests/test_canonical.py checks the two agree on generated values.
Anything else (a ``Decimal``, a subclass, a value to refuse) takes the reference path, which
converts or names the bad field.
"""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import orjson

from ._exceptions import CanonicalEncodingError, ProtocolError

_SAFE_INT = 2**53 - 1
_PLAIN = frozenset({str, bool, type(None)})
_ORJSON_OPTS = orjson.OPT_SORT_KEYS
_NOT = object()


def _check(value: Any, path: str) -> Any:
    if value is None or isinstance(value, bool | str):
        return value
    if isinstance(value, int):
        if abs(value) > _SAFE_INT:
            raise CanonicalEncodingError(f"{path or 'value'}: integer outside the safe range")
        return value
    if isinstance(value, float):
        raise CanonicalEncodingError(f"{path or 'value'}: floats are not allowed, use a decimal string")
    if isinstance(value, Decimal):
        if not value.is_finite():
            raise CanonicalEncodingError(f"{path or 'value'}: decimal must be finite")
        return format(value, "f")
    if isinstance(value, dict):
        out = {}
        for key, item in value.items():
            if not isinstance(key, str):
                raise CanonicalEncodingError(f"{path or 'value'}: object keys must be strings")
            out[key] = _check(item, f"{path}.{key}" if path else key)
        return out
    if isinstance(value, list | tuple):
        return [_check(item, f"{path}[{i}]") for i, item in enumerate(value)]
    raise CanonicalEncodingError(f"{path or 'value'}: {type(value).__name__} has no canonical JSON form")


def _plain(value: Any) -> bool:
    """True when ``value`` holds only plain JSON types with string keys and safe integers (no copy)."""
    stack = [value]
    pop, push = stack.pop, stack.extend
    while stack:
        item = pop()
        kind = type(item)
        if kind in _PLAIN:
            continue
        if kind is int:
            if -_SAFE_INT <= item <= _SAFE_INT:
                continue
            return False
        if kind is dict:
            for key in item:
                if type(key) is not str:
                    return False
            push(item.values())
        elif kind is list or kind is tuple:
            push(item)
        else:
            return False
    return True


def _reference(value: Any) -> str:
    return json.dumps(_check(value, ""), sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def canonical_dumps(value: Any) -> str:
    """Encode ``value`` as canonical JSON text.

    Raises:
        CanonicalEncodingError: when the value holds a float, a non-finite decimal, a non-string key,
            an unsafe integer, or an unsupported type.
    """
    if _plain(value):
        try:
            return orjson.dumps(value, option=_ORJSON_OPTS).decode("utf-8")
        except orjson.JSONEncodeError:
            pass  # a lone surrogate or nesting beyond orjson's depth: the reference path decides
    return _reference(value)


def plain_dumps(value: Any) -> str:
    """Canonical JSON of a value already known to hold only plain JSON types (events, checked txns).

    No float, key or integer check: the caller vouches for the value (see :func:`canonical_dumps`).
    """
    try:
        return orjson.dumps(value, option=_ORJSON_OPTS).decode("utf-8")
    except (orjson.JSONEncodeError, TypeError):
        return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def canonical_bytes(value: Any) -> bytes:
    """Canonical JSON as UTF-8 bytes."""
    return canonical_dumps(value).encode("utf-8")


def is_canonical(text: str) -> bool:
    """True when ``text`` is exactly the canonical encoding of what it decodes to."""
    try:
        return canonical_dumps(json.loads(text, parse_float=_refuse_float)) == text
    except (ValueError, CanonicalEncodingError):
        return False


def _refuse_float(_: str) -> Any:
    raise CanonicalEncodingError("floats are not allowed")


class DuplicateKey(ProtocolError, ValueError):
    """A JSON object names the same key twice (readers disagree on which wins). ``key`` is the key,
    masked to its last four characters when it looks like a card number. Also a ``ValueError``, as
    :mod:`json` readers expect of a hook."""

    code = "duplicate_key"

    def __init__(self, key: str) -> None:
        from .cards import contains_pan

        if contains_pan(key):
            key = "…" + key[-4:]
        self.key = key
        super().__init__(f"the key {key!r} appears twice in one object; send each field once")


def unique_pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """``object_pairs_hook`` for :mod:`json` that raises :class:`DuplicateKey`."""
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise DuplicateKey(key)
        out[key] = value
    return out


def _canonical_loads(text: str | bytes, refuse_floats: bool) -> Any:
    """The value of ``text`` when it is canonical JSON (as every signed record body is), else ``_NOT``.

    orjson decodes it and encodes it again; the same bytes prove the text held no duplicate key (the
    decoded object would have lost a member). With ``refuse_floats``, a float is looked for in the
    text outside its strings (a float is written with ``.`` or an exponent). Several times cheaper
    than the reference path's ``object_pairs_hook``; anything else (not canonical, not JSON, NaN, a
    lone surrogate, an integer beyond 64 bits) goes to the reference path, which decides.
    """
    try:
        doc = orjson.loads(text)
        again = orjson.dumps(doc, option=_ORJSON_OPTS)
    except (orjson.JSONDecodeError, orjson.JSONEncodeError, TypeError):
        return _NOT
    if again != (text.encode("utf-8") if isinstance(text, str) else text):
        return _NOT
    if refuse_floats:
        if b"\\" in again:  # an escaped quote would misalign the split below
            return doc if _plain(doc) else _NOT
        outside = b"".join(again.split(b'"')[0::2]).replace(b"true", b"").replace(b"false", b"")
        if b"." in outside or b"e" in outside or b"E" in outside:
            return _NOT
    return doc


def loads_if_compact(text: str | bytes) -> tuple[bool, Any]:
    """``(True, value)`` when ``text`` is compact JSON that orjson writes back byte for byte, else ``(False, None)``.

    A POS or a script writing JSON Lines compactly (``separators=(",", ":")``, keys in any order)
    produces such text. Identical bytes prove that the text held no duplicate key (the decoded object
    would have lost a member) and no ``NaN``/``Infinity`` (orjson refuses them); anything else is for
    the caller's strict reference decoder to decide.
    """
    try:
        doc = orjson.loads(text)
        again = orjson.dumps(doc)
    except (orjson.JSONDecodeError, orjson.JSONEncodeError, TypeError):
        return False, None
    if again != (text.encode("utf-8") if isinstance(text, str) else text):
        return False, None
    return True, doc


def _reference_loads(text: str | bytes, *, refuse_floats: bool = False) -> Any:
    if refuse_floats:
        return json.loads(text, object_pairs_hook=unique_pairs, parse_float=_refuse_float)
    return json.loads(text, object_pairs_hook=unique_pairs)


def loads_strict(text: str | bytes, *, refuse_floats: bool = False) -> Any:
    """Decode JSON refusing an object with a duplicate key (and, when asked, any float).

    Canonical text (a record body) takes a fast path that decodes to the same value.

    Raises:
        DuplicateKey: naming the repeated key.
        ValueError: not JSON (``json.JSONDecodeError``), or a float with ``refuse_floats``
            (:class:`CanonicalEncodingError`).
    """
    doc = _canonical_loads(text, refuse_floats)
    if doc is not _NOT:
        return doc
    return _reference_loads(text, refuse_floats=refuse_floats)
