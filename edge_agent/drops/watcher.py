"""The drop-folder watcher: notices complete files and imports them one at a time on its own thread.

A ``watchdog`` observer reports files created, modified or moved into the drop folder (not its
subfolders). Reports only make a file a *candidate*; the import thread stats candidates every
``poll`` seconds and imports a file once its size and mtime have not changed for ``settle`` seconds.
Hidden files and names ending in ``.part``, ``.tmp``, ``.partial``, ``.crdownload``, ``.swp`` or ``~``
are never read: writers should write under such a name and rename when done.

Each file is imported once: an import moves it to ``processed/`` or ``rejected/``, so later reports
of it find nothing; a file whose bytes were imported before is recognised by its SHA-256. On start
the thread first resumes any import a crash left ``running``, then scans the folder for files that
arrived while the agent was down, and it rescans every ``rescan`` seconds in case a report was lost.

Imports use their own outbox connection and commit in short chunks, so POS captures interleave;
after each chunk the sync scheduler is nudged. :meth:`DropWatcher.stop` asks the import to stop
after its current chunk; it resumes from its checkpoint at the next start.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path

from watchdog.events import FileSystemEvent, FileSystemEventHandler
from watchdog.observers import Observer

from .._exceptions import NotEnrolled, StorageError
from ..store import Outbox
from .importer import WORKERS, DropFolders, Importer, ImportInterrupted

log = logging.getLogger("edge_agent.drops")

SETTLE_S = 2.0
POLL_S = 0.5
RESCAN_S = 30.0
RETRY_S = 10.0
IGNORED_SUFFIXES = (".part", ".tmp", ".partial", ".crdownload", ".swp", "~")


def is_candidate(path: Path) -> bool:
    """A file name the watcher may import (not hidden, not being written under a temporary name)."""
    name = path.name
    return bool(name) and not name.startswith(".") and not name.lower().endswith(IGNORED_SUFFIXES)


class _Handler(FileSystemEventHandler):
    def __init__(self, watcher: DropWatcher) -> None:
        self.watcher = watcher

    def on_any_event(self, event: FileSystemEvent) -> None:
        if event.is_directory:
            return
        for raw in (event.src_path, getattr(event, "dest_path", "")):
            if raw:
                path = Path(str(raw))
                if path.parent == self.watcher.folders.root:
                    self.watcher.notice(path)


class DropWatcher:
    """Watches a drop folder and imports complete files into the outbox.

    Args:
        open_outbox: Opens the import thread's own outbox connection (with the signing key).
        folder: The drop folder; it and its subfolders are created when missing.
        settle: Seconds a file's size and mtime must stay unchanged before it is read.
        poll: Seconds between checks of the candidates.
        rescan: Seconds between full scans of the folder.
        on_chunk: Called after each committed chunk (the sync scheduler's nudge).
        workers: Reader processes per import.
        key_file: The signing key's file, for the reader processes to sign with (see
            :class:`~edge_agent.drops.importer.Importer`); None: the import thread signs.
    """

    def __init__(
        self,
        open_outbox: Callable[[], Outbox],
        folder: Path,
        *,
        settle: float = SETTLE_S,
        poll: float = POLL_S,
        rescan: float = RESCAN_S,
        on_chunk: Callable[[], None] | None = None,
        workers: int = WORKERS,
        key_file: Path | None = None,
    ) -> None:
        self.folders = DropFolders(folder.absolute()).ensure()
        self._open = open_outbox
        self.settle, self.poll, self.rescan = settle, poll, rescan
        self._on_chunk = on_chunk
        self._workers = workers
        self._key_file = key_file
        self._lock = threading.Lock()
        self._noticed: set[Path] = set()
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._importer: Importer | None = None
        self._thread = threading.Thread(target=self._run, name="drop-importer", daemon=True)
        self._observer = Observer()
        self.imported = 0  # files finished by this watcher (tests, status)

    def start(self) -> DropWatcher:
        """Start the observer and the import thread."""
        self._observer.schedule(_Handler(self), str(self.folders.root), recursive=False)
        self._observer.start()
        self._thread.start()
        return self

    def stop(self, timeout: float = 30.0) -> None:
        """Stop watching; a running import stops after its current chunk and resumes at the next start."""
        self._stopping.set()
        importer = self._importer
        if importer is not None:
            importer.stop_requested = True
        self._wake.set()
        self._observer.stop()
        self._observer.join(timeout)
        self._thread.join(timeout)

    def notice(self, path: Path) -> None:
        """Make a file a candidate (called by the observer, or by anyone who knows of a new file)."""
        if is_candidate(path):
            with self._lock:
                self._noticed.add(path)
            self._wake.set()

    # -- the import thread ----------------------------------------------------------------------

    def _run(self) -> None:
        try:
            outbox = self._open()
        except Exception:
            log.exception("drop watcher: cannot open the outbox; file drops are not imported")
            return
        try:
            importer = Importer(
                outbox, self.folders, workers=self._workers, key_file=self._key_file, on_chunk=self._on_chunk
            )
            self._importer = importer
            self._loop(importer)
        finally:
            outbox.close()

    def _loop(self, importer: Importer) -> None:
        pending: dict[Path, tuple[int, int, float]] = {}  # path -> (size, mtime_ns, unchanged since)
        failed: dict[Path, tuple[int, int]] = {}  # files whose import failed, until they change
        resumed = False
        last_scan = next_resume = 0.0
        while not self._stopping.is_set():
            now = time.monotonic()
            if not resumed and now >= next_resume:
                resumed = self._guard(importer.resume_all)
                next_resume = now + RETRY_S
            if resumed and now - last_scan >= self.rescan:
                last_scan = now
                for path in self.folders.root.iterdir():
                    self.notice(path)
            with self._lock:
                noticed, self._noticed = self._noticed, set()
            for path in noticed:
                pending.setdefault(path, (-1, -1, now))
            for path, (size, mtime, since) in list(pending.items()):
                if self._stopping.is_set() or not resumed:
                    break
                try:
                    st = path.stat()
                except OSError:
                    del pending[path]  # gone (imported, moved away or deleted)
                    continue
                if not path.is_file():
                    del pending[path]
                    continue
                state = (st.st_size, st.st_mtime_ns)
                if state != (size, mtime):
                    pending[path] = (*state, time.monotonic())
                    continue
                if time.monotonic() - since < self.settle or failed.get(path) == state:
                    continue
                if self._guard(lambda p=path: importer.import_file(p)):  # type: ignore[misc]
                    del pending[path]
                    failed.pop(path, None)
                    self.imported += 1
                elif isinstance(self._last_error, NotEnrolled | StorageError):
                    pending[path] = (*state, time.monotonic() + RETRY_S)  # not before RETRY_S + settle
                elif self._last_error is not None:
                    failed[path] = state
            self._wake.wait(self.poll)
            self._wake.clear()

    _last_error: BaseException | None = None

    def _guard(self, fn: Callable[[], object]) -> bool:
        """Run an import step; log what stops it. True when it completed."""
        self._last_error = None
        try:
            fn()
            return True
        except ImportInterrupted:
            log.info("drop import paused; it resumes at the next start")
        except (NotEnrolled, StorageError) as exc:  # try again later, the file stays where it is
            self._last_error = exc
            log.warning("file drops wait: %s", exc)
        except Exception as exc:  # keep watching; the file is retried once it changes
            self._last_error = exc
            log.exception("drop import failed")
        return False
