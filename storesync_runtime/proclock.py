"""An exclusive lock on a data folder, held for the life of a process, that names its holder.

``edge-agent run``, ``edge-agent import`` and a SQLite hub's ``cloud-hub serve`` each hold the lock
file of their data folder while they run, so two processes never capture, sync or serve from the same
folder. The lock is an OS lock (``flock`` on POSIX, ``msvcrt.locking`` on Windows): it goes away with
the process, ``kill -9`` and power cuts included, so a stale file never blocks a restart. The file
records who holds it (pid, host, command, start time) for the refusal message.
"""

from __future__ import annotations

import json
import os
import socket
import sys
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Any

from sync_protocol._exceptions import StoreSyncError


class LockHeld(StoreSyncError):
    """Another process holds the data folder's lock.

    Attributes:
        holder: What the holder wrote into the lock file (``pid``, ``host``, ``command``, ``since``).
    """

    code = "locked"

    def __init__(self, path: Path, holder: dict[str, Any]) -> None:
        self.path = path
        self.holder = holder
        who = describe(holder)
        super().__init__(f"{path.parent} is in use by {who}; stop that process first (lock file {path})")


def describe(holder: dict[str, Any]) -> str:
    """``'edge-agent run' (pid 123 on host, since 2026-01-01T10:00:00Z)'``, or what is known of it."""
    if not holder:
        return "another process"
    command = holder.get("command") or "a process"
    return f"'{command}' (pid {holder.get('pid', '?')} on {holder.get('host', '?')}, since {holder.get('since', '?')})"


_WIN_LOCK_OFFSET = 1 << 20


def _try_lock(fd: int) -> bool:
    if os.name == "nt":  # pragma: no cover - Windows
        import msvcrt

        os.lseek(fd, _WIN_LOCK_OFFSET, os.SEEK_SET)  # lock a byte past the holder text, which stays readable
        try:
            msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)  # type: ignore[attr-defined]
        except OSError:
            return False
        return True
    import fcntl

    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


def read_holder(path: Path) -> dict[str, Any]:
    """What the lock file says about its holder (empty when unreadable)."""
    try:
        doc = json.loads(path.read_text(encoding="utf-8") or "{}")
    except (OSError, ValueError):
        return {}
    return doc if isinstance(doc, dict) else {}


class ProcessLock:
    """Hold ``path`` exclusively until :meth:`release` (or the end of the ``with`` block, or the process).

    Args:
        path: The lock file (created with mode 0600 when missing).
        command: What this process is, for the holder description (e.g. ``"edge-agent run"``).

    Raises:
        LockHeld: another process holds it.
        OSError: the lock file cannot be created.
    """

    def __init__(self, path: Path, command: str) -> None:
        self.path = Path(path)
        self.fd: int | None = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        if not _try_lock(self.fd):
            os.close(self.fd)
            self.fd = None
            raise LockHeld(self.path, read_holder(self.path))
        holder = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "command": command,
            "since": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "argv": " ".join(sys.argv[1:])[:300],
        }
        data = json.dumps(holder).encode("utf-8")
        os.ftruncate(self.fd, 0)
        os.lseek(self.fd, 0, os.SEEK_SET)
        os.write(self.fd, data)

    def release(self) -> None:
        """Give the lock up (idempotent)."""
        if self.fd is None:
            return
        fd, self.fd = self.fd, None
        if os.name != "nt":
            try:
                os.ftruncate(fd, 0)
            except OSError:  # pragma: no cover - best effort
                pass
        os.close(fd)  # closing the descriptor drops the lock

    def __enter__(self) -> ProcessLock:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.release()
