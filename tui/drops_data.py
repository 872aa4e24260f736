"""What the TUI reads about franchise file drops: a small, documented read interface.

The drop folder is ``--drop-dir``, else ``$EDGE_AGENT_DROP_DIR``, else ``<data-dir>/drops`` when it
exists; without one the panel says "no drop folder configured". Inside it (docs/file-drops.md):

- ``<folder>/<file>`` — waiting, or being imported when the outbox already holds records whose
  ``origin`` is ``file:<file>`` (protocol §3); progress is those records against the file's data lines
  (an estimate: one transaction per line for JSON Lines, per data row for CSV).
- ``processed/<file>.result.json`` / ``rejected/<file>.result.json`` — finished imports
  (``edge_agent.drops.report.ImportSummary``); ``rejected/<file>.errors.jsonl`` — the error report.
- The importer's rows in the outbox (``edge_agent.store.imports``, read through
  ``edge_agent.store.StoreView.import_rows``), one row per file, with ``name``, ``status``, ``rows``,
  ``accepted``, ``duplicates``, ``rejected``, ``checkpoint_offset``, ``size``: for a file still in the
  drop folder its numbers win (``checkpoint_offset / size`` = exact progress).

"Retry" without a running agent sends a rejected file back through the agent's own retry path
(``edge_agent.drops.folders.send_back``): the old result and error report are kept in
``rejected/retried/`` with a time stamp, and a retry ticket lets the importer take the same bytes again.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from edge_agent.drops.folders import DropFolders, send_back
from edge_agent.drops.report import ERRORS_SUFFIX, RESULT_SUFFIX, read_result
from sync_protocol.cards import mask_file_name, mask_pans, mask_value

from . import agent_data
from .format import parse_time

ENV_DROP_DIR = "EDGE_AGENT_DROP_DIR"
SKIP_SUFFIXES = (".part", ".tmp", RESULT_SUFFIX, ERRORS_SUFFIX)
SHOW_FINISHED = 20


@dataclass(frozen=True)
class DropImport:
    """One drop file as the panel shows it.

    Attributes:
        file: File name (a card number in it masked: a file still waiting may not be renamed yet).
        state: ``waiting``, ``running``, or a finished status (``ok``, ``partial``, ``rejected``,
            ``duplicate_file``).
        rows: Data rows read (finished) or in the file (running estimate), if known.
        accepted: Transactions stored (so far).
        duplicates: Transactions already stored before.
        rejected: Transactions refused.
        done: Progress numerator (records so far, or bytes with an importer table).
        total: Progress denominator, or None when unknown.
        reason: Why the whole file was refused, if it was.
        errors_report: The ``.errors.jsonl`` file, when there is one.
        finished_at: When the import finished.
        sha256: The file's SHA-256 (the importer's key for a retry), when known.
    """

    file: str
    state: str
    rows: int | None = None
    accepted: int = 0
    duplicates: int = 0
    rejected: int = 0
    done: int = 0
    total: int | None = None
    reason: str | None = None
    errors_report: Path | None = None
    finished_at: datetime | None = None
    sha256: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "file", mask_file_name(self.file))

    @property
    def needs_fixing(self) -> bool:
        return self.state in ("rejected", "partial")


def resolve_drop_dir(arg: str | None, data_dir: Path) -> Path | None:
    """The drop folder, or None when none is configured."""
    raw = arg or os.environ.get(ENV_DROP_DIR)
    if raw:
        return Path(raw).expanduser().resolve()
    default = data_dir / "drops"
    return default if default.is_dir() else None


class DropTracker:
    """Scans a drop folder; keeps running counts between refreshes so each scan stays cheap.

    Args:
        folder: The drop folder (None: not configured).
        db_path: The outbox, for records already stored from a running file.
    """

    def __init__(self, folder: Path | None, db_path: Path) -> None:
        self.folder = folder
        self.db_path = db_path
        self._counts: dict[str, tuple[int, int]] = {}  # file -> (records so far, scanned through seq)
        self._lines: dict[str, tuple[int, float, int]] = {}  # file -> (size, mtime, data lines)

    def scan(self) -> list[DropImport] | None:
        """Running and waiting files first, then the newest finished imports; None without a folder."""
        if self.folder is None or not self.folder.is_dir():
            return None
        table = self._table()
        live = [self._live(p, table.get(p.name)) for p in sorted(self.folder.iterdir()) if _is_drop(p)]
        finished: list[DropImport] = []
        for sub in ("processed", "rejected"):
            for res in (self.folder / sub).glob(f"*{RESULT_SUFFIX}"):
                item = self._finished(res)
                if item is not None:
                    finished.append(item)
        finished.sort(key=lambda d: (d.finished_at is not None, d.finished_at or datetime.min), reverse=True)
        live.sort(key=lambda d: d.state != "running")
        return live + finished[:SHOW_FINISHED]

    def _table(self) -> dict[str, dict[str, Any]]:
        """The agent's drop-import rows by file name, newest last wins."""
        try:
            rows = agent_data.import_rows(self.db_path)
        except Exception:  # no outbox yet, or unreadable: the folder alone still tells a lot
            return {}
        out: dict[str, dict[str, Any]] = {}
        for r in rows or []:
            if r.get("offset") is None and r.get("checkpoint_offset") is not None:
                r["offset"] = r["checkpoint_offset"]
            out[str(r.get("file") or r.get("name"))] = r
        return out

    def _live(self, path: Path, row: dict[str, Any] | None) -> DropImport:
        name = path.name
        if row is not None and row.get("status") not in (None, "running", "waiting"):
            row = None  # finished: its result file tells the rest
        if row is not None:
            done, total = _int(row.get("offset")), _int(row.get("size"))
            state = "running" if done or _int(row.get("accepted")) else "waiting"
            return DropImport(
                name,
                state,
                rows=_int(row.get("rows")),
                accepted=_int(row.get("accepted")) or 0,
                duplicates=_int(row.get("duplicates")) or 0,
                rejected=_int(row.get("rejected")) or 0,
                done=done or 0,
                total=total,
            )
        so_far = self._records_from(name)
        lines = self._data_lines(path)
        return DropImport(
            name, "running" if so_far else "waiting", rows=lines, accepted=so_far, done=so_far, total=lines or None
        )

    def _records_from(self, name: str) -> int:
        total, through = self._counts.get(name, (0, 0))
        try:
            more, head = agent_data.origin_count(self.db_path, f"file:{name}", through)
        except Exception:
            return total
        self._counts[name] = (total + more, head)
        return total + more

    def _data_lines(self, path: Path) -> int:
        try:
            st = path.stat()
        except OSError:
            return 0
        known = self._lines.get(path.name)
        if known and known[0] == st.st_size and known[1] == st.st_mtime:
            return known[2]
        lines, first = 0, b""
        with open(path, "rb") as f:
            for raw in f:
                if raw.strip():
                    lines += 1
                    first = first or raw.lstrip(b"\xef\xbb\xbf").lstrip()
        data = lines if first.startswith(b"{") else max(0, lines - 1)
        self._lines[path.name] = (st.st_size, st.st_mtime, data)
        return data

    def _finished(self, res: Path) -> DropImport | None:
        try:
            s = read_result(res)
        except (OSError, ValueError, TypeError):
            return None
        assert self.folder is not None
        errors = self.folder / "rejected" / f"{s.file}{ERRORS_SUFFIX}"
        return DropImport(
            s.file,
            s.status or "ok",
            rows=s.rows,
            accepted=s.accepted,
            duplicates=s.duplicates,
            rejected=s.rejected,
            done=s.transactions,
            total=s.transactions,
            reason=mask_pans(s.reason) if s.reason else None,
            errors_report=errors if errors.exists() else None,
            finished_at=parse_time(s.finished_at),
            sha256=s.sha256 or None,
        )


def _is_drop(path: Path) -> bool:
    return path.is_file() and not path.name.startswith(".") and not path.name.endswith(SKIP_SUFFIXES)


def _int(value: Any) -> int | None:
    try:
        return None if value is None else int(value)
    except (TypeError, ValueError):
        return None


def read_error_report(path: Path, limit: int = 500) -> list[dict[str, Any]]:
    """The first ``limit`` lines of an ``.errors.jsonl`` report (unreadable lines shown as text).

    Card numbers are masked to their last four digits, also in a report written by an older agent.
    """
    out: list[dict[str, Any]] = []
    with open(path, encoding="utf-8", errors="replace") as f:
        for line in f:
            if len(out) >= limit:
                break
            if not line.strip():
                continue
            try:
                doc = json.loads(line)
            except ValueError:
                doc = {"reason": mask_pans(line.strip())}
            out.append(mask_value(doc) if isinstance(doc, dict) else {"reason": mask_pans(str(doc))})
    return out


def retry(folder: Path, file: str, now: datetime) -> Path:
    """Send a rejected (or partly rejected) file back into the drop folder for another import.

    The agent's own retry path (:func:`edge_agent.drops.folders.send_back`), used when the agent is
    not running: the file keeps its name, its old result and error report go to ``rejected/retried/``
    with a time stamp, and a retry ticket makes the importer take the same bytes again when it next
    sees them (instead of answering ``duplicate_file``).

    Returns:
        The file's new path.

    Raises:
        FileNotFoundError: when the file is in neither ``rejected/`` nor ``processed/``.
        FileExistsError: when a file of that name is already waiting in the drop folder.
    """
    folders = DropFolders(folder)
    source = next((p for p in (folders.rejected / file, folders.processed / file) if p.is_file()), None)
    if source is None:
        raise FileNotFoundError(f"{file} is not in rejected/ or processed/")
    return send_back(folders, source, keep_name=True, now=now)
