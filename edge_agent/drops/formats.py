"""Drop-file basics: format detection, the streamed line source and the items readers yield.

A drop file is read as bytes, one line at a time, and decoded line by line, so memory stays bounded
whatever the file size. Every item a reader yields carries a :class:`Checkpoint`: the byte offset and
line number to resume from once that item is stored.

Whole-file rejections (not text, empty, unknown header) raise :class:`DropRejected` before any item
is yielded. A bad byte further into the file only costs the line it is on.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import IO, Any

from sync_protocol import FieldError, TransactionInvalid
from sync_protocol.txn_fast import canonical_txn

from .._exceptions import DropRejected

SNIFF_BYTES = 64 * 1024
MAX_LINE_BYTES = 1024 * 1024
UTF8_BOM = b"\xef\xbb\xbf"
_OTHER_BOMS = {
    b"\xff\xfe\x00\x00": "UTF-32 (little-endian)",
    b"\x00\x00\xfe\xff": "UTF-32 (big-endian)",
    b"\xff\xfe": "UTF-16 (little-endian)",
    b"\xfe\xff": "UTF-16 (big-endian)",
}

JSONL = "jsonl"
CSV_CANONICAL = "csv_canonical"
SHOPIFY_CSV = "shopify_csv"

# Columns that identify a format by its header.
CANONICAL_MARKERS = ("txn_id", "register_id", "kind")
SHOPIFY_MARKERS = ("Name", "Created at", "Lineitem quantity", "Lineitem price")


@dataclass(frozen=True)
class LineError(FieldError):
    """A :class:`FieldError` that also names the 1-based line of the file it was found on."""

    line: int = 0

    def as_dict(self) -> dict[str, Any]:
        return {"line": self.line, "field": self.field, "reason": self.reason}


@dataclass(frozen=True)
class Checkpoint:
    """Where to resume reading: byte ``offset`` into the file and the last ``line`` number read."""

    offset: int = 0
    line: int = 0


@dataclass
class Parsed:
    """One transaction read from a drop file, or the reasons it could not be.

    Attributes:
        txn: The validated canonical transaction dict (``Transaction.canonical()``), or None.
        errors: Every problem found, each naming its line and field; empty when ``txn`` is set.
        first_line: First line of the file the item was read from.
        last_line: Last line of the file the item was read from.
        raw: The original text: a str for JSONL, one str per CSV record otherwise.
        resume: Resume here once this item is stored. Items that share rows (a Shopify order
            and its refund) carry the start of those rows on all but the last one.
        rows: Data rows (non-blank lines or CSV records) this item consumed; 0 for derived items.
        row_lines: First line of each record in ``raw`` (CSV formats).
    """

    txn: dict[str, Any] | None
    errors: list[LineError]
    first_line: int
    last_line: int
    raw: str | list[str]
    resume: Checkpoint
    rows: int = 1
    row_lines: list[int] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.txn is not None and not self.errors

    def row_at(self, line: int) -> str:
        """The raw record holding ``line`` (the whole raw text for JSONL)."""
        if isinstance(self.raw, str):
            return self.raw
        for start, text in zip(reversed(self.row_lines), reversed(self.raw), strict=False):
            if start <= line:
                return text
        return self.raw[0] if self.raw else ""


@dataclass(frozen=True)
class Detected:
    """What :func:`detect` found: the format, and for CSV formats the header and delimiter."""

    name: str
    header: list[str]
    delimiter: str
    data_start: Checkpoint


@dataclass
class RawLine:
    """One physical line: decoded ``text`` (None when it is not UTF-8 text) and its position."""

    text: str | None
    number: int
    start: int
    end: int
    error: str | None = None


def iter_lines(f: IO[bytes], start: Checkpoint) -> Iterator[RawLine]:
    """Yield the lines of a binary file from ``start``, decoded one by one.

    A line that holds a NUL byte or invalid UTF-8, or is longer than ``MAX_LINE_BYTES``, comes out
    with ``text=None`` and an ``error`` naming the byte offset; reading goes on with the next line.
    """
    f.seek(start.offset)
    offset, number = start.offset, start.line
    while True:
        chunk = f.readline(MAX_LINE_BYTES)
        if not chunk:
            return
        number += 1
        line_start = offset
        offset += len(chunk)
        if len(chunk) == MAX_LINE_BYTES and not chunk.endswith(b"\n"):
            while chunk and not chunk.endswith(b"\n"):
                chunk = f.readline(MAX_LINE_BYTES)
                offset += len(chunk)
            yield RawLine(None, number, line_start, offset, f"line is longer than {MAX_LINE_BYTES} bytes")
            continue
        if line_start == 0 and chunk.startswith(UTF8_BOM):
            chunk = chunk[len(UTF8_BOM) :]
            line_start += len(UTF8_BOM)
        yield decode_line(chunk, number, line_start, offset)


def decode_line(chunk: bytes, number: int, start: int, end: int) -> RawLine:
    """Decode one line, or describe the first byte that is not text."""
    nul = chunk.find(b"\x00")
    if nul >= 0:
        return RawLine(None, number, start, end, f"NUL byte at byte offset {start + nul}: not text")
    try:
        return RawLine(chunk.decode("utf-8"), number, start, end)
    except UnicodeDecodeError as exc:
        bad = chunk[exc.start]
        return RawLine(None, number, start, end, f"invalid UTF-8 byte 0x{bad:02x} at byte offset {start + exc.start}")


def sniff_text(head: bytes) -> None:
    """Refuse a file whose first bytes are not UTF-8 text, or that is empty.

    Raises:
        DropRejected: naming the byte offset of the first byte that is not text.
    """
    if not head:
        raise DropRejected("the file is empty (0 bytes)")
    for bom, name in _OTHER_BOMS.items():
        if head.startswith(bom):
            raise DropRejected(f"the file is {name} text (byte-order mark at offset 0); save it as UTF-8")
    nul = head.find(b"\x00")
    if nul >= 0:
        raise DropRejected(f"not a text file: NUL byte at byte offset {nul}")
    try:
        head.decode("utf-8")
    except UnicodeDecodeError as exc:
        # A multi-byte character cut by the end of the sniffed block is not an error.
        if not (len(head) == SNIFF_BYTES and exc.start >= len(head) - 3 and exc.reason == "unexpected end of data"):
            raise DropRejected(
                f"not UTF-8 text: invalid byte 0x{head[exc.start]:02x} at byte offset {exc.start}"
            ) from None
    body = head[len(UTF8_BOM) :] if head.startswith(UTF8_BOM) else head
    if not body.strip():
        raise DropRejected("the file is empty (only blank lines)")


def _csv_header(text: str) -> tuple[list[str], str]:
    delimiter = ";" if text.count(";") > text.count(",") else ","
    try:
        row = next(csv.reader([text], delimiter=delimiter), [])
    except csv.Error:  # e.g. a bare carriage return inside the line (found by Hypothesis)
        return [], delimiter  # no format's header: refused as an unknown format
    return [c.strip() for c in row], delimiter


def detect(f: IO[bytes]) -> Detected:
    """Find the format of a drop file from its first non-blank line.

    Raises:
        DropRejected: not text, empty, or a first line that matches no format (never quoted).
    """
    f.seek(0)
    sniff_text(f.read(SNIFF_BYTES))
    for line in iter_lines(f, Checkpoint()):
        if line.text is None:
            raise DropRejected(f"not UTF-8 text on line {line.number}: {line.error}")
        stripped = line.text.strip()
        if not stripped:
            continue
        after = Checkpoint(line.end, line.number)
        if stripped.startswith("{"):
            return Detected(JSONL, [], "", Checkpoint(line.start, line.number - 1))
        if stripped.startswith("["):
            raise DropRejected(
                f"line {line.number} starts a JSON array; drop JSON Lines instead (one transaction per line)"
            )
        header, delimiter = _csv_header(line.text)
        if all(m in header for m in CANONICAL_MARKERS):
            return Detected(CSV_CANONICAL, header, delimiter, after)
        if all(m in header for m in SHOPIFY_MARKERS):
            return Detected(SHOPIFY_CSV, header, delimiter, after)
        raise DropRejected(  # the line is not quoted: a refused file's content is never repeated
            f"unknown format: line {line.number} ({len(stripped)} characters) is neither a JSON object nor a "
            f"known CSV header; expected JSON Lines (a line starting "
            f"with '{{'), the canonical CSV (header with {', '.join(CANONICAL_MARKERS)}, ...) or a Shopify "
            f"orders export (header with {', '.join(SHOPIFY_MARKERS)}, ...)"
        )
    raise DropRejected("the file is empty (only blank lines)")  # pragma: no cover - sniff_text catches it


def check_columns(header: list[str], known: tuple[str, ...], required: tuple[str, ...], fmt: str) -> None:
    """Refuse a CSV header with missing, duplicate or (when ``known`` is given) unknown columns."""
    seen: set[str] = set()
    for col in header:
        if col in seen:
            raise DropRejected(f"{fmt} header: column {col!r} appears twice")
        seen.add(col)
    missing = [c for c in required if c not in seen]
    if missing:
        raise DropRejected(f"{fmt} header: missing column(s) {', '.join(missing)}")
    if known:
        unknown = [c for c in header if c not in known]
        if unknown:
            raise DropRejected(
                f"{fmt} header: unknown column(s) {', '.join(map(repr, unknown))} (check the spelling; "
                f"known: {', '.join(known)})"
            )


@dataclass
class Record:
    """One CSV record (possibly several physical lines), or the reason it could not be read."""

    fields: list[str] | None
    raw: str
    first_line: int
    last_line: int
    end: Checkpoint
    error: str | None = None


def iter_records(f: IO[bytes], start: Checkpoint, delimiter: str) -> Iterator[Record]:
    """Yield the CSV records of a binary file from ``start``; blank lines are skipped.

    A record whose bytes are not text, or that the CSV parser refuses, comes out with ``fields=None``.
    """
    pending: list[RawLine] = []
    bad: list[str] = []

    def source() -> Iterator[str]:
        for line in iter_lines(f, start):
            pending.append(line)
            if line.text is None:
                bad.append(f"line {line.number}: {line.error}")
                yield "\n"
            else:
                yield line.text

    reader = csv.reader(source(), delimiter=delimiter)
    while True:
        try:
            fields: list[str] | None = next(reader)
            error = None
        except StopIteration:
            return
        except csv.Error as exc:
            fields, error = None, f"not valid CSV: {exc}"
        if not pending:  # pragma: no cover - the reader always consumes a line
            return
        raw = "".join(x.text or "" for x in pending).rstrip("\r\n")
        first, last = pending[0], pending[-1]
        if bad:
            fields, error = None, "; ".join(bad)
        pending.clear()
        bad.clear()
        if fields is not None and not any(fields):
            continue
        yield Record(fields, raw, first.number, last.number, Checkpoint(last.end, last.number), error)


def validate(
    raw: dict[str, Any], locate: Callable[[str], tuple[str, int]]
) -> tuple[dict[str, Any] | None, list[LineError]]:
    """The canonical transaction (``parse_transaction(raw).canonical()``, by the fast path of
    :func:`~sync_protocol.txn_fast.canonical_txn` when ``raw`` is canonical already); on errors, each
    error's field mapped to a (column, line) with ``locate``."""
    try:
        txn = canonical_txn(raw)
    except TransactionInvalid as exc:
        out = []
        for err in exc.errors:
            column, line = locate(err.field)
            out.append(LineError(column, err.reason, line))
        return None, out
    return txn, []


INDEXED = re.compile(r"^(lines|tenders)\[(\d+)\](?:\.(.+))?$")
