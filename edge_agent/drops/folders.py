"""The drop folder layout, durable moves, and the ONE way a finished file is sent back for another import.

Layout::

    <drop>/                   files dropped by staff; a file stays here while it is imported
    <drop>/processed/         imported files (status ok or partial) and their <file>.result.json
    <drop>/rejected/          refused files (rejected whole, every transaction bad, duplicate_file),
                              their <file>.result.json, and <file>.errors.jsonl of every import with bad rows
    <drop>/rejected/retried/  result and error files of files sent back by a retry
    <drop>/rejected/.<sha256>.retry   a retry ticket: the importer takes these bytes once more

:func:`send_back` is used by the agent (``POST /v1/imports/{sha}/retry``, through
:func:`edge_agent.drops.importer.retry`) and by the store TUI when the agent is not running. It
leaves a retry ticket for the file's bytes, so the importer imports them again instead of answering
``duplicate_file`` — whether the agent was running when staff asked or starts later.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from .report import errors_path, fsync_dir, result_path, sha256_file

TICKET_SUFFIX = ".retry"


@dataclass(frozen=True)
class DropFolders:
    """The drop folder and its ``processed/`` and ``rejected/`` subfolders."""

    root: Path

    @property
    def processed(self) -> Path:
        return self.root / "processed"

    @property
    def rejected(self) -> Path:
        return self.root / "rejected"

    @property
    def retried(self) -> Path:
        return self.rejected / "retried"

    def ensure(self) -> DropFolders:
        """Create the folders when missing."""
        for folder in (self.root, self.processed, self.rejected):
            folder.mkdir(parents=True, exist_ok=True)
        return self

    def ticket(self, sha256: str) -> Path:
        """The retry ticket of these bytes (it exists while a retry of them is pending)."""
        return self.rejected / f".{sha256}{TICKET_SUFFIX}"


def move(src: Path, dst: Path) -> None:
    """Move a file (rename when on the same file system) and make the move durable."""
    if src.resolve() == dst.resolve():
        return
    shutil.move(str(src), str(dst))
    fsync_dir(dst.parent)
    if src.parent.resolve() != dst.parent.resolve():
        fsync_dir(src.parent)


def send_back(folders: DropFolders, source: Path, *, keep_name: bool = False, now: datetime | None = None) -> Path:
    """Send a finished drop file back into the drop folder for another import of the same bytes.

    The file's old result and error report move to ``rejected/retried/`` with a time stamp (nothing
    staff may still need is deleted), and a retry ticket for its bytes is left for the importer.

    Args:
        folders: The drop folders.
        source: The file in ``rejected/`` or ``processed/``.
        keep_name: Put it back under its own name (else ``<stem>.retry<N>.<ext>``, a name no earlier
            result uses).
        now: Time of the stamp (default: now, local time).

    Returns:
        The file's new path.

    Raises:
        FileNotFoundError: when ``source`` is not a file.
        FileExistsError: with ``keep_name``, when a file of that name is already waiting.
    """
    if not source.is_file():
        raise FileNotFoundError(f"{source.name} is not in rejected/ or processed/")
    name = source.name
    if keep_name:
        target = folders.root / name
        if target.exists():
            raise FileExistsError(f"{name} is already waiting in the drop folder")
    else:
        stem, dot, ext = name.partition(".")
        n = 1
        while (target := folders.root / f"{stem}.retry{n}{dot}{ext}").exists():
            n += 1
    sha = sha256_file(source)
    folders.retried.mkdir(parents=True, exist_ok=True)
    stamp = (now or datetime.now()).strftime("%Y%m%dT%H%M%S")
    for old in (result_path(source.parent, name), errors_path(folders.rejected, name)):
        if old.exists():
            move(old, folders.retried / f"{stamp}-{old.name}")
    ticket = folders.ticket(sha)
    ticket.write_text(f"{name}\n", encoding="utf-8")
    fsync_dir(ticket.parent)
    move(source, target)
    return target


def take_ticket(folders: DropFolders, sha256: str) -> bool:
    """True (and the ticket is used up) when a retry of these bytes was asked for."""
    ticket = folders.ticket(sha256)
    if not ticket.exists():
        return False
    ticket.unlink(missing_ok=True)
    return True
