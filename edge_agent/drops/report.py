"""What an import leaves for staff: ``<file>.errors.jsonl`` and ``<file>.result.json``.

Pure helpers with no knowledge of the outbox or the watcher. Every file is written atomically:
a temporary file in the same folder, fsync, rename, fsync of the folder. The errors file is built
incrementally in ``<name>.part`` and can be reopened after a crash at a recorded size (see
:class:`ErrorsWriter`), so a resumed import neither loses nor repeats an error line.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import IO, Any

from sync_protocol.cards import mask_pans, redact_csv_row, redact_row
from sync_protocol.clock import now_iso

from .formats import Parsed

ERRORS_SUFFIX = ".errors.jsonl"
RESULT_SUFFIX = ".result.json"
STATUS_OK = "ok"  # every transaction accepted (or already there)
STATUS_PARTIAL = "partial"  # some transactions rejected, see the errors file
STATUS_REJECTED = "rejected"  # nothing accepted: whole file refused, or every transaction bad
STATUS_DUPLICATE = "duplicate_file"  # same SHA-256 as a file already imported


def errors_path(folder: str | os.PathLike[str], file_name: str) -> Path:
    """``<folder>/<file>.errors.jsonl``."""
    return Path(folder) / f"{file_name}{ERRORS_SUFFIX}"


def result_path(folder: str | os.PathLike[str], file_name: str) -> Path:
    """``<folder>/<file>.result.json``."""
    return Path(folder) / f"{file_name}{RESULT_SUFFIX}"


def error_records(item: Parsed) -> list[dict[str, Any]]:
    """The errors-file lines of one rejected item: ``{line, field, reason, row}``.

    ``row`` is the original text of the row the error is on. When the transaction spans several rows,
    ``rows`` holds all of them, so staff can fix the transaction and drop just those rows again. A card
    number in a row is masked to its last four digits (``•••• 1111``): it never reaches the disk.
    """
    out = []
    for err in item.errors:
        row = item.row_at(err.line)
        rec: dict[str, Any] = {
            "line": err.line,
            "field": err.field,
            "reason": mask_pans(err.reason),
            "row": redact_row(row) if isinstance(item.raw, str) else redact_csv_row(row),
        }
        if isinstance(item.raw, list) and len(item.raw) > 1:
            rec["rows"] = [redact_csv_row(r) for r in item.raw]
        out.append(rec)
    return out


def sha256_file(path: str | os.PathLike[str], chunk: int = 1 << 20) -> str:
    """Hex SHA-256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def fsync_dir(folder: Path) -> None:
    """Make a rename or create in ``folder`` durable."""
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> None:
    """Write ``data`` to ``path`` so readers see the old file or the whole new one, never a part."""
    target = Path(path)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(target.parent)


class ErrorsWriter:
    """Appends error lines to ``<path>.part``; :meth:`commit` renames it to ``path``.

    For crash-safe resumption record :meth:`tell` with the import checkpoint (after :meth:`flush`),
    and reopen with ``resume_at=`` that size: anything written after it is cut off.
    """

    def __init__(self, path: str | os.PathLike[str], resume_at: int | None = None) -> None:
        self.path = Path(path)
        self.part = self.path.with_name(self.path.name + ".part")
        self.count = 0
        if resume_at is None:
            self._f: IO[bytes] = open(self.part, "wb")  # noqa: SIM115 - closed by commit/discard
        else:
            self._f = open(self.part, "r+b" if self.part.exists() else "w+b")  # noqa: SIM115
            self._f.truncate(resume_at)
            self._f.seek(resume_at)

    def write(self, item: Parsed) -> int:
        """Append the error lines of a rejected item; returns how many were written."""
        records = error_records(item)
        for rec in records:
            self._f.write(json.dumps(rec, ensure_ascii=False).encode("utf-8") + b"\n")
        self.count += len(records)
        return len(records)

    def write_lines(self, data: bytes, count: int) -> None:
        """Append error lines already encoded (JSON, newline-terminated), e.g. from a reader process."""
        self._f.write(data)
        self.count += count

    def flush(self, sync: bool = True) -> None:
        self._f.flush()
        if sync:
            os.fsync(self._f.fileno())

    def tell(self) -> int:
        """Bytes written so far (the ``resume_at`` of a later reopen)."""
        return self._f.tell()

    def commit(self) -> Path | None:
        """Make the errors file visible under its final name; removes it instead when it is empty."""
        size = self.tell()
        self.flush()
        self._f.close()
        if size == 0:
            self.part.unlink(missing_ok=True)
            return None
        os.replace(self.part, self.path)
        fsync_dir(self.path.parent)
        return self.path

    def close(self) -> None:
        """Close without committing, keeping the ``.part`` for a resumed import."""
        if not self._f.closed:
            self._f.close()

    def discard(self) -> None:
        self._f.close()
        self.part.unlink(missing_ok=True)

    def __enter__(self) -> ErrorsWriter:
        return self

    def __exit__(self, exc_type: object, *_: object) -> None:
        if self._f.closed:
            return
        if exc_type is None:
            self.commit()
        else:
            self._f.close()  # keep the .part: a resumed import goes on from it


@dataclass
class ImportSummary:
    """The ``<file>.result.json`` content.

    ``rows`` counts data rows read (non-blank lines for JSONL, CSV records otherwise);
    ``transactions`` the items the rows made (a refunded Shopify order makes two);
    ``accepted + duplicates + rejected == transactions``.
    """

    file: str
    sha256: str
    format: str | None
    rows: int = 0
    transactions: int = 0
    accepted: int = 0
    duplicates: int = 0
    rejected: int = 0
    started_at: str = ""
    finished_at: str = ""
    status: str = ""
    reason: str | None = None

    def add(self, item: Parsed, duplicate: bool = False) -> None:
        """Count one item (``duplicate`` when the outbox already held its key)."""
        self.rows += item.rows
        self.transactions += 1
        if not item.ok:
            self.rejected += 1
        elif duplicate:
            self.duplicates += 1
        else:
            self.accepted += 1

    def finish(self, status: str | None = None) -> ImportSummary:
        """Stamp ``finished_at`` and set ``status`` (derived from the counts unless given)."""
        self.finished_at = now_iso(local=True)
        if status is not None:
            self.status = status
        elif self.rejected == 0:
            self.status = STATUS_OK
        elif self.accepted + self.duplicates > 0:
            self.status = STATUS_PARTIAL
        else:
            self.status = STATUS_REJECTED
        return self

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        if out["reason"] is None:
            del out["reason"]
        return out


def rejected_whole(file: str, sha256: str, reason: str, started_at: str) -> ImportSummary:
    """The summary of a file refused whole (not text, empty, unknown header)."""
    summary = ImportSummary(file=file, sha256=sha256, format=None, started_at=started_at, reason=reason)
    return summary.finish(STATUS_REJECTED)


def write_result(path: str | os.PathLike[str], summary: ImportSummary) -> None:
    """Write ``<file>.result.json`` atomically."""
    text = json.dumps(summary.to_dict(), ensure_ascii=False, indent=2) + "\n"
    atomic_write_bytes(path, text.encode("utf-8"))


def read_result(path: str | os.PathLike[str]) -> ImportSummary:
    """Read a ``<file>.result.json`` back."""
    with open(path, encoding="utf-8") as f:
        data = json.load(f)
    return ImportSummary(**data)
