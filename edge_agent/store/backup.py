"""An online copy of ``outbox.db`` (SQLite's backup API), safe while the agent captures and syncs.

The copy is taken a few hundred pages at a time from a connection of its own, so the outbox writer
is never held up for more than a step; the result is one self-contained file (no ``-wal``), checked
with ``PRAGMA integrity_check`` before it replaces ``dest`` (written as ``dest.part`` first).
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import apsw

from .._exceptions import StorageError
from ._db import BUSY_TIMEOUT_MS

STEP_PAGES = 256


def backup_database(db_path: Path, dest: Path) -> None:
    """Copy the outbox at ``db_path`` to ``dest``.

    Raises:
        StorageError: the source cannot be read or the copy does not check out.
    """
    part = Path(str(dest) + ".part")
    part.unlink(missing_ok=True)
    try:
        source = apsw.Connection(str(db_path), flags=apsw.SQLITE_OPEN_READWRITE)
        source.setbusytimeout(BUSY_TIMEOUT_MS)
        target = apsw.Connection(str(part))
        try:
            with target.backup("main", source, "main") as job:
                while not job.done:
                    job.step(STEP_PAGES)
                    if not job.done:
                        time.sleep(0.001)  # a waiting capture commit goes first
            target.execute("PRAGMA journal_mode = DELETE").fetchall()
            check = target.execute("PRAGMA integrity_check").fetchall()
        finally:
            target.close()
            source.close()
    except apsw.Error as exc:
        part.unlink(missing_ok=True)
        raise StorageError(f"backup of {db_path} to {dest} failed: {exc}") from None
    if check != [("ok",)]:
        part.unlink(missing_ok=True)
        raise StorageError(f"backup of {db_path} failed its integrity check: {check[:1]}")
    os.replace(part, dest)
