"""The audit export: signed ledger records in SQLite, CSV or JSON Lines, verifiable offline.

``cloud-hub ledger export`` and ``edge-agent export`` write the same rows; ``storesync verify-export``
checks them with nothing but the file and the store's public key(s). One row per record::

    store_id, epoch, seq      the writer and position
    occurred_at               the sale's local time (the date range filters on its date)
    received_at               when the hub stored it (hub export) / captured_at (agent export)
    body                      the exact canonical JSON the store signed
    body_hash                 SHA-256 of body (hex)
    prev_chain                the chain value before this record (hex): genesis for seq 1
    chain                     SHA-256(prev_chain || body_hash) (hex)
    sig                       the store's Ed25519 signature of chain (hex)
    public_key, key_id        the store key of this epoch, as the exporter knows it

Every row is checkable on its own (a date range leaves gaps in seq): its body hash, its chain link
from ``prev_chain``, the signature by a key the auditor supplied, the body naming its store, epoch and
seq; seq 1 must start at the writer's genesis; consecutive rows must link (``prev_chain`` = the
previous row's ``chain``). SQLite files are written and read with sqlite-utils.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import chain as _chain
from . import keys
from ._exceptions import RecordInvalid, StoreSyncError
from .record import check_body

FIELDS = (
    "store_id", "epoch", "seq", "occurred_at", "received_at", "body", "body_hash", "prev_chain", "chain", "sig",
    "public_key", "key_id",
)  # fmt: skip
FORMATS = ("sqlite", "csv", "jsonl")
TABLE = "records"
SQLITE_MAGIC = b"SQLite format 3\x00"


class ExportError(StoreSyncError):
    """An export file cannot be written or read."""

    code = "export"


def occurred_date(body: str) -> str:
    """``YYYY-MM-DD`` of the body's ``txn.occurred_at`` ('' when it has none)."""
    try:
        txn = json.loads(body).get("txn") or {}
    except (ValueError, AttributeError):
        return ""
    value = txn.get("occurred_at") if isinstance(txn, dict) else None
    return str(value)[:10] if value else ""


def row(
    *, store_id: str, epoch: int, seq: int, body: str, prev_chain: bytes, chain: bytes, sig: bytes,
    public_key: str, received_at: str,
) -> dict[str, Any]:  # fmt: skip
    """One export row."""
    occurred = ""
    try:
        txn = json.loads(body).get("txn") or {}
        occurred = str(txn.get("occurred_at") or "")
    except (ValueError, AttributeError):
        pass
    return {
        "store_id": store_id,
        "epoch": int(epoch),
        "seq": int(seq),
        "occurred_at": occurred,
        "received_at": received_at,
        "body": body,
        "body_hash": _chain.body_hash(body).hex(),
        "prev_chain": prev_chain.hex(),
        "chain": chain.hex(),
        "sig": sig.hex(),
        "public_key": public_key,
        "key_id": keys.key_id(keys.public_from_hex(public_key)),
    }


def in_range(body: str, date_from: str | None, date_to: str | None) -> bool:
    """True when the sale's date is within ``[date_from, date_to]`` (either may be None)."""
    if date_from is None and date_to is None:
        return True
    day = occurred_date(body)
    return bool(day) and (date_from is None or day >= date_from) and (date_to is None or day <= date_to)


def detect_format(path: Path) -> str:
    """``sqlite``, ``csv`` or ``jsonl`` from the file name, else from its first bytes."""
    suffix = path.suffix.lower()
    if suffix in (".db", ".sqlite", ".sqlite3"):
        return "sqlite"
    if suffix == ".csv":
        return "csv"
    if suffix in (".jsonl", ".ndjson"):
        return "jsonl"
    try:
        head = path.read_bytes()[:16]
    except OSError as exc:
        raise ExportError(f"cannot read {path}: {exc.strerror}") from None
    if head == SQLITE_MAGIC:
        return "sqlite"
    return "jsonl" if head.lstrip().startswith(b"{") else "csv"


def write(path: Path, fmt: str, rows: Iterable[dict[str, Any]]) -> int:
    """Write the rows (in seq order per writer) as ``fmt``; returns how many. ``path`` must not exist.

    Raises:
        ExportError: the file exists or cannot be written.
    """
    if fmt not in FORMATS:
        raise ExportError(f"format must be one of {', '.join(FORMATS)}, not {fmt!r}")
    if path.exists():
        raise ExportError(f"{path} exists; choose a new file for the export")
    count = 0
    try:
        if fmt == "sqlite":
            import sqlite_utils

            db = sqlite_utils.Database(str(path))
            table = db.table(TABLE)
            batch: list[dict[str, Any]] = []
            for r in rows:
                batch.append(r)
                count += 1
                if len(batch) >= 1000:
                    table.insert_all(batch, pk=("store_id", "epoch", "seq"))
                    batch = []
            table.insert_all(batch or [], pk=("store_id", "epoch", "seq"))
            if not db.table(TABLE).exists():
                db.table(TABLE).create({f: (int if f in ("epoch", "seq") else str) for f in FIELDS})
            db.close()
        else:
            with open(path, "x", encoding="utf-8", newline="") as fh:
                writer = csv.DictWriter(fh, fieldnames=FIELDS) if fmt == "csv" else None
                if writer is not None:
                    writer.writeheader()
                for r in rows:
                    if writer is not None:
                        writer.writerow(r)
                    else:
                        fh.write(json.dumps(r, ensure_ascii=False) + "\n")
                    count += 1
    except OSError as exc:
        raise ExportError(f"cannot write {path}: {exc.strerror}") from None
    return count


def read(path: Path) -> Iterator[dict[str, Any]]:
    """The rows of an export file, whatever its format.

    Raises:
        ExportError: the file cannot be read or is not an export.
    """
    fmt = detect_format(path)
    try:
        if fmt == "sqlite":
            import sqlite_utils

            db = sqlite_utils.Database(str(path))
            if not db.table(TABLE).exists():
                raise ExportError(f"{path} is a SQLite file without a {TABLE!r} table; not an export")
            yield from db.table(TABLE).rows_where(order_by="store_id, epoch, seq")
            db.close()
            return
        with open(path, encoding="utf-8", newline="") as fh:
            if fmt == "csv":
                yield from csv.DictReader(fh)
            else:
                for n, line in enumerate(fh, 1):
                    if line.strip():
                        try:
                            yield json.loads(line)
                        except ValueError:
                            raise ExportError(f"{path} line {n} is not JSON") from None
    except OSError as exc:
        raise ExportError(f"cannot read {path}: {exc.strerror}") from None


@dataclass
class Report:
    """Outcome of :func:`verify`."""

    count: int = 0
    problems: list[str] = field(default_factory=list)
    streams: dict[str, dict[str, Any]] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.count > 0 and not self.problems


def _hex(value: Any, name: str, where: str) -> bytes:
    try:
        return bytes.fromhex(str(value))
    except ValueError:
        raise RecordInvalid(0, f"{where}: {name} is not hex") from None


def verify(rows: Iterable[dict[str, Any]], public_keys: Iterable[str], *, max_problems: int = 50) -> Report:
    """Check every row's hash, chain link and signature against the given store public keys (hex)."""
    trusted = {k.strip().lower() for k in public_keys}
    parsed = {k: keys.public_from_hex(k) for k in trusted}
    report = Report()
    last: dict[tuple[str, int], tuple[int, bytes]] = {}
    for r in rows:
        report.count += 1
        try:
            store_id, epoch, seq = str(r["store_id"]), int(r["epoch"]), int(r["seq"])
        except (KeyError, TypeError, ValueError):
            report.problems.append(f"row {report.count}: store_id, epoch or seq missing or not a number")
            continue
        where = f"{store_id} epoch {epoch} seq {seq}"
        stream = report.streams.setdefault(
            f"{store_id}/{epoch}", {"records": 0, "first_seq": seq, "last_seq": seq, "gaps": []}
        )
        seen = last.get((store_id, epoch))
        if seen is not None and seq > seen[0] + 1:
            stream["gaps"].append(f"{seen[0] + 1}..{seq - 1}")
        stream["records"] += 1
        stream["last_seq"] = max(stream["last_seq"], seq)
        stream["first_seq"] = min(stream["first_seq"], seq)
        try:
            body = str(r["body"])
            prev, value, sig = (_hex(r[n], n, where) for n in ("prev_chain", "chain", "sig"))
            key_hex = str(r.get("public_key", "")).lower()
            if key_hex not in trusted:
                raise RecordInvalid(seq, f"{where}: signed by key {r.get('key_id')}, which is not a key you gave")
            if _chain.body_hash(body).hex() != str(r.get("body_hash", "")).lower():
                raise RecordInvalid(seq, f"{where}: body_hash does not match the body")
            check_body(body, store_id=store_id, epoch=epoch, seq=seq)
            if seq == 1 and prev != _chain.genesis(store_id, epoch):
                raise RecordInvalid(seq, f"{where}: seq 1 does not start at the writer's genesis")
            before = last.get((store_id, epoch))
            if before is not None and before[0] == seq - 1 and before[1] != prev:
                raise RecordInvalid(seq, f"{where}: prev_chain is not the chain of seq {seq - 1}")
            if before is not None and before[0] >= seq:
                raise RecordInvalid(seq, f"{where}: out of order or repeated (after seq {before[0]})")
            if _chain.link(prev, body) != value:
                raise RecordInvalid(seq, f"{where}: chain link does not match the body and prev_chain")
            if not keys.verify(parsed[key_hex], sig, value):
                raise RecordInvalid(seq, f"{where}: signature does not verify with the store's key")
            last[(store_id, epoch)] = (seq, value)
        except RecordInvalid as exc:
            report.problems.append(exc.reason if exc.reason.startswith(where) else f"{where}: {exc.reason}")
        except StoreSyncError as exc:
            report.problems.append(f"{where}: {exc}")
        if len(report.problems) >= max_problems:
            report.problems.append(f"stopped after {max_problems} problems")
            break
    return report
