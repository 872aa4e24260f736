"""Franchise file drops: streaming readers for JSON Lines, the canonical CSV and Shopify order exports.

Entry point :func:`load`::

    fmt, items = load(path)
    for item in items:          # Parsed: txn (validated canonical dict) or errors with line + field
        ...
        checkpoint = item.resume   # store it with the item; load(path, resume=checkpoint) goes on

Readers validate every transaction (``sync_protocol.txn_fast.canonical_txn``: the rules of
``parse_transaction``, by a fast exact path when the row is canonical already): ``Parsed.txn`` is the
canonical dict, so the importer need not validate again. Whole-file problems
(not text, empty, unknown header) raise :class:`DropRejected` from :func:`load` itself.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from typing import IO

from .csv_canonical import read_csv_canonical
from .formats import (
    CSV_CANONICAL,
    JSONL,
    SHOPIFY_CSV,
    Checkpoint,
    Detected,
    DropRejected,
    LineError,
    Parsed,
    detect,
)
from .jsonl import read_jsonl
from .shopify_csv import read_shopify_csv

Reader = Callable[[IO[bytes], Checkpoint | None], Iterator[Parsed]]
READERS: dict[str, Reader] = {
    JSONL: read_jsonl,
    CSV_CANONICAL: read_csv_canonical,
    SHOPIFY_CSV: read_shopify_csv,
}


def load(src: str | os.PathLike[str] | IO[bytes], *, resume: Checkpoint | None = None) -> tuple[str, Iterator[Parsed]]:
    """Detect a drop file's format and return it with a lazy iterator over its transactions.

    Args:
        src: A path (opened here, closed when the iterator ends or is closed) or a seekable binary
            file object (left open).
        resume: A :attr:`Parsed.resume` from an earlier read: go on right after that item. CSV
            formats re-read their header from the top of the file first.

    Returns:
        The format name (``jsonl``, ``csv_canonical``, ``shopify_csv``) and the items.

    Raises:
        DropRejected: the file is not text, is empty, or has a header that matches no format, or a
            CSV header is missing columns; nothing is read past that point.
        OSError: the file cannot be opened.
    """
    if isinstance(src, str | os.PathLike):
        f: IO[bytes] = open(src, "rb")  # noqa: SIM115 - closed by _owned
        try:
            name, items = _start(f, resume)
        except BaseException:
            f.close()
            raise
        return name, _owned(f, items)
    return _start(src, resume)


def _start(f: IO[bytes], resume: Checkpoint | None) -> tuple[str, Iterator[Parsed]]:
    found = detect(f)
    items = READERS[found.name](f, resume)
    # Run the reader up to its first item now, so header problems raise here, not mid-import.
    first = next(items, None)
    return found.name, _chain(first, items)


def _chain(first: Parsed | None, rest: Iterator[Parsed]) -> Iterator[Parsed]:
    if first is not None:
        yield first
        yield from rest


def _owned(f: IO[bytes], items: Iterator[Parsed]) -> Iterator[Parsed]:
    with f:
        yield from items


__all__ = [
    "CSV_CANONICAL",
    "JSONL",
    "READERS",
    "SHOPIFY_CSV",
    "Checkpoint",
    "Detected",
    "DropRejected",
    "LineError",
    "Parsed",
    "detect",
    "load",
]
