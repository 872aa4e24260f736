"""Canonical JSON Lines drops: one DESIGN §9 transaction object per line.

Blank lines are skipped (they count as lines, not rows). Each non-blank line is one item: a line
that is not JSON, not an object, or not a valid transaction is an error naming its line number and,
for validation errors, the transaction field (``lines[0].qty``). The other lines still come out.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import IO

from sync_protocol.canonical import DuplicateKey, loads_if_compact, unique_pairs

from .formats import Checkpoint, LineError, Parsed, iter_lines, validate

FORMAT = "jsonl"


def _reject_constant(name: str) -> float:
    raise ValueError(f"{name} is not allowed")


_DECODER = json.JSONDecoder(parse_constant=_reject_constant, object_pairs_hook=unique_pairs)


def read_jsonl(f: IO[bytes], start: Checkpoint | None = None) -> Iterator[Parsed]:
    """Stream the transactions of a JSON Lines drop file.

    Args:
        f: The file, opened in binary mode; it must be seekable.
        start: Resume point (a :attr:`Parsed.resume` of an earlier read); the beginning by default.

    Yields:
        One :class:`Parsed` per non-blank line; ``txn`` is the validated canonical dict.
    """
    for line in iter_lines(f, start or Checkpoint()):
        here = Checkpoint(line.end, line.number)
        if line.text is None:
            error = LineError("(line)", line.error or "not text", line.number)
            yield Parsed(None, [error], line.number, line.number, "", here)
            continue
        text = line.text.rstrip("\r\n")
        if not text.strip():
            continue
        yield parse_line(text, line.number, here)


def parse_line(text: str, number: int, resume: Checkpoint) -> Parsed:
    """Decode and validate one JSON line."""
    compact, obj = loads_if_compact(text)  # most files: several times cheaper, same value
    try:
        if not compact:
            obj = _DECODER.decode(text)
    except DuplicateKey as exc:
        return Parsed(None, [LineError(exc.key, str(exc), number)], number, number, text, resume)
    except ValueError as exc:
        reason = f"not valid JSON: {exc.msg}" if isinstance(exc, json.JSONDecodeError) else str(exc)
        if isinstance(exc, json.JSONDecodeError):
            reason += f" at column {exc.colno}"
        return Parsed(None, [LineError("(line)", reason, number)], number, number, text, resume)
    txn, errors = validate(obj, lambda field: (field, number))
    if txn is None:
        return Parsed(None, errors, number, number, text, resume)
    return Parsed(txn, [], number, number, text, resume)
