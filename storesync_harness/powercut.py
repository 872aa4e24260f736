"""Power loss for SQLite, the way SQLite's own crash tests do it: a VFS that keeps un-synced writes in memory.

``kill -9`` is not a power cut: the operating system still writes the dead process's page cache to
disk, so a test that kills the agent passes even with ``synchronous=OFF``. This module puts an apsw
VFS (:class:`PowerCutVFS`, registered as the default, on top of ``unix``) under a real ``edge-agent``
or ``cloud-hub`` process. For every main database and WAL file the VFS keeps:

- a *shadow*: the file as the process sees it (reads are served from it);
- the *pending* writes and truncations since the file's last ``xSync``, in order.

``xSync`` writes the pending operations to the real file and fsyncs it: only then is data "on the
platter". The real file therefore holds exactly what survived the last sync of each file. A cut is:

- ``SIGKILL`` of the process at any moment: every pending write is lost (it only lived in memory);
- a *trigger* armed through ``$STORESYNC_POWERCUT`` (JSON, see :class:`Spec`): at the N-th matching
  operation (a write or sync of the WAL or the database file, optionally only while the retention
  job runs) the VFS lands a random subset of the pending writes, in order, tearing some of them (the
  last one most often) at a 512-byte sector boundary (``mode = "subset"``; ``"drop"`` lands none),
  appends a line to the
  report file and ends the process with ``os._exit`` (no answer leaves after the cut).

A normal exit (SIGTERM) writes everything pending, as an operating system that keeps running would.
The ``-shm`` index is shared memory, not durable data: SQLite rebuilds it from the WAL after a crash,
and the VFS leaves it to ``unix``. ``sync_off`` rewrites every ``PRAGMA synchronous`` the process
issues to ``OFF``: the control that must lose acknowledged sales.

Run as ``python -m storesync_harness.powercut edge_agent run ...`` (or ``cloud_hub serve ...``).
What this cannot simulate is listed in docs/faults.md ("Power loss").
"""

from __future__ import annotations

import atexit
import json
import os
import random
import re
import runpy
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import apsw

ENV = "STORESYNC_POWERCUT"
VFS_NAME = "powercut"
SECTOR = 512
CUT_EXIT = 86
_WAL = int(apsw.mapping_open_flags["SQLITE_OPEN_WAL"])
_MAIN_DB = int(apsw.mapping_open_flags["SQLITE_OPEN_MAIN_DB"])
_MAIN_JOURNAL = int(apsw.mapping_open_flags["SQLITE_OPEN_MAIN_JOURNAL"])
_KINDS = ((_WAL, "wal"), (_MAIN_DB, "db"), (_MAIN_JOURNAL, "journal"))
_SYNC_PRAGMA = re.compile(r"^\s*PRAGMA\s+synchronous\s*=\s*\w+\s*;?\s*$", re.IGNORECASE)


@dataclass
class Trigger:
    """Cut at the ``skip + 1``-th operation that matches.

    Attributes:
        file: ``"wal"``, ``"db"`` (the main database file: in WAL mode only checkpoints write it) or ``"any"``.
        op: ``"write"`` (cut before it lands: mid-commit, mid-checkpoint) or ``"sync"`` (cut right after the
            sync: the commit is durable but its answer never leaves).
        skip: Matching operations to let pass first.
        phase: Only count operations made while this phase runs (see :data:`PHASES`), or None.
    """

    file: str = "wal"
    op: str = "write"
    skip: int = 0
    phase: str | None = None


@dataclass
class Spec:
    """What ``$STORESYNC_POWERCUT`` holds (JSON)."""

    trigger: Trigger | None = None
    mode: str = "subset"
    seed: int = 0
    report: str | None = None
    sync_off: bool = False
    autocheckpoint: int | None = None

    @classmethod
    def from_json(cls, text: str) -> Spec:
        doc = json.loads(text)
        trig = doc.pop("trigger", None)
        return cls(trigger=Trigger(**trig) if trig else None, **doc)

    def to_json(self) -> str:
        return json.dumps(asdict(self))


@dataclass
class _Overlay:
    path: str
    kind: str  # "db", "wal" or "journal"
    shadow: bytearray
    pending: list[tuple[str, int, bytes]] = field(default_factory=list)  # ("w", offset, data) / ("t", size, b"")


class Disk:
    """The process-wide state of the simulated disk: one overlay per file, the trigger, the cut."""

    def __init__(self, spec: Spec) -> None:
        self.spec = spec
        self.lock = threading.RLock()
        self.files: dict[str, _Overlay] = {}
        self.matched = 0
        self.cut = False
        self.rng = random.Random(spec.seed)
        self.phase = threading.local()
        self.stats = {"writes": 0, "syncs": 0}

    @contextmanager
    def in_phase(self, name: str) -> Iterator[None]:
        """Mark the operations of the calling thread as belonging to ``name`` (e.g. retention)."""
        old = getattr(self.phase, "name", None)
        self.phase.name = name
        try:
            yield
        finally:
            self.phase.name = old

    def overlay(self, path: str, kind: str) -> _Overlay:
        with self.lock:
            ov = self.files.get(path)
            if ov is None:
                try:
                    data = bytearray(Path(path).read_bytes())
                except FileNotFoundError:
                    data = bytearray()
                ov = self.files[path] = _Overlay(path, kind, data)
            return ov

    def forget(self, path: str) -> None:
        with self.lock:
            self.files.pop(path, None)

    def check(self, ov: _Overlay, op: str) -> None:
        """Count the operation against the trigger; cut when it fires. Raises after a cut."""
        if self.cut:
            raise apsw.IOError("power is off")
        trig = self.spec.trigger
        if trig is None or trig.op != op or (trig.file != "any" and trig.file != ov.kind):
            return
        if trig.phase is not None and getattr(self.phase, "name", None) != trig.phase:
            return
        self.matched += 1
        if self.matched > trig.skip:
            self.power_cut(f"{op} of {ov.kind} #{self.matched}")

    def flush(self, ov: _Overlay) -> None:
        """Land every pending operation of one file on the real file, then fsync it."""
        if not ov.pending and Path(ov.path).exists():
            return
        _land(ov.path, ov.pending)
        ov.pending.clear()

    def flush_all(self) -> None:
        with self.lock:
            if self.cut:
                return
            for ov in self.files.values():
                if ov.pending:
                    self.flush(ov)

    def power_cut(self, why: str) -> None:
        """Land a random subset of what is pending (the last landed write torn), report, and die."""
        with self.lock:
            self.cut = True
            summary: dict[str, Any] = {"why": why, "mode": self.spec.mode, "pid": os.getpid(), "files": {}}
            for ov in self.files.values():
                chosen: list[tuple[str, int, bytes]] = []
                if self.spec.mode == "subset":
                    chosen = [item for item in ov.pending if self.rng.random() < 0.5]
                torn = 0
                for i, (kind, offset, data) in enumerate(chosen):
                    last = i == len(chosen) - 1
                    if kind == "w" and len(data) > SECTOR and self.rng.random() < (0.7 if last else 0.2):
                        keep = self.rng.randrange(1, -(-len(data) // SECTOR)) * SECTOR  # whole sectors only
                        chosen[i] = (kind, offset, data[:keep])
                        torn += 1
                _land(ov.path, chosen)
                summary["files"][Path(ov.path).name] = {
                    "pending": len(ov.pending),
                    "landed": len(chosen),
                    "torn": torn,
                }
            summary["writes"], summary["syncs"] = self.stats["writes"], self.stats["syncs"]
            if self.spec.report:
                with open(self.spec.report, "a", encoding="utf-8") as fh:
                    fh.write(json.dumps(summary) + "\n")
                    fh.flush()
                    os.fsync(fh.fileno())
            os._exit(CUT_EXIT)


def _land(path: str, ops: list[tuple[str, int, bytes]]) -> None:
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o640)
    try:
        for kind, where, data in ops:
            if kind == "w":
                os.pwrite(fd, data, where)
            else:
                os.ftruncate(fd, where)
        os.fsync(fd)
    finally:
        os.close(fd)


class CutFile(apsw.VFSFile):
    """A main database, WAL or journal file whose writes wait in memory until ``xSync``."""

    def __init__(self, disk: Disk, name: Any, flags: list[int], kind: str) -> None:
        super().__init__("unix", name, flags)
        self.disk = disk
        path = name.filename() if isinstance(name, apsw.URIFilename) else str(name)
        self.ov = disk.overlay(path, kind)

    def xRead(self, amount: int, offset: int) -> bytes:  # noqa: N802 - the apsw method name
        with self.disk.lock:
            if self.disk.cut:
                raise apsw.IOError("power is off")
            return bytes(self.ov.shadow[offset : offset + amount])

    def xWrite(self, data: bytes, offset: int) -> None:  # noqa: N802
        with self.disk.lock:
            self.disk.check(self.ov, "write")
            shadow = self.ov.shadow
            end = offset + len(data)
            if len(shadow) < offset:
                shadow.extend(bytes(offset - len(shadow)))
            shadow[offset:end] = data
            self.ov.pending.append(("w", offset, bytes(data)))
            self.disk.stats["writes"] += 1

    def xTruncate(self, newsize: int) -> None:  # noqa: N802
        with self.disk.lock:
            self.disk.check(self.ov, "truncate")
            del self.ov.shadow[newsize:]
            self.ov.pending.append(("t", newsize, b""))

    def xFileSize(self) -> int:  # noqa: N802
        with self.disk.lock:
            return len(self.ov.shadow)

    def xSync(self, flags: int) -> None:  # noqa: N802
        with self.disk.lock:
            if self.disk.cut:
                raise apsw.IOError("power is off")
            self.disk.flush(self.ov)
            self.disk.stats["syncs"] += 1
            self.disk.check(self.ov, "sync")  # a "sync" trigger cuts right after the data is durable


class PowerCutVFS(apsw.VFS):
    """The VFS: :class:`CutFile` for database, WAL and journal files, ``unix`` for everything else."""

    def __init__(self, disk: Disk, name: str = VFS_NAME, makedefault: bool = True) -> None:
        self.disk = disk
        super().__init__(name, "unix", makedefault=makedefault)

    def xOpen(self, name: Any, flags: list[int]) -> apsw.VFSFile:  # noqa: N802
        if self.disk.cut:
            raise apsw.IOError("power is off")
        kind = next((k for bit, k in _KINDS if flags[0] & bit), "")
        if name is None or not kind:
            return apsw.VFSFile("unix", name, flags)
        return CutFile(self.disk, name, flags, kind)

    def xSleep(self, microseconds: int) -> int:  # noqa: N802
        """Sleep without the GIL (SQLite's busy handler sleeps here while another connection writes).

        apsw's inherited ``xSleep`` sleeps holding the GIL: every thread of the process, the lock's
        holder too, then stood still for each 1-100 ms step of the busy wait, and one waiting burst
        stretched a 20 ms transaction to seconds (docs/faults.md, "The hub kill points").
        """
        time.sleep(microseconds / 1_000_000)
        return microseconds

    def xDelete(self, filename: str, syncdir: bool) -> None:  # noqa: N802
        if self.disk.cut:
            raise apsw.IOError("power is off")
        self.disk.forget(filename)
        super().xDelete(filename, syncdir)


_installed: tuple[Disk, PowerCutVFS] | None = None


def install(spec: Spec, module: str = "") -> Disk:
    """Register the VFS as the process's default (once).

    With ``sync_off`` every ``PRAGMA synchronous`` becomes ``OFF``; with ``autocheckpoint`` every new
    connection checkpoints its WAL after that many pages (SQLite's own checkpoint, just more often, so
    short trials cut during checkpoints too). The functions in :data:`PHASES` of ``module`` are tagged
    (the agent's pruning job; the hub's ingest, event derivation and delivery bookkeeping).
    """
    global _installed
    if _installed is not None:
        return _installed[0]
    disk = Disk(spec)
    vfs = PowerCutVFS(disk)
    _installed = (disk, vfs)
    atexit.register(disk.flush_all)
    if spec.sync_off or spec.autocheckpoint:
        base = apsw.Connection
        sync_off, pages = spec.sync_off, spec.autocheckpoint

        class Instrumented(base):  # type: ignore[misc, valid-type]
            def __init__(self, *args: Any, **kwargs: Any) -> None:
                super().__init__(*args, **kwargs)
                if pages:
                    super().execute(f"PRAGMA wal_autocheckpoint={int(pages)}")

            def execute(self, statements: str, *args: Any, **kwargs: Any) -> Any:
                if sync_off and isinstance(statements, str) and _SYNC_PRAGMA.match(statements):
                    statements = "PRAGMA synchronous=OFF"
                return super().execute(statements, *args, **kwargs)

        apsw.Connection = Instrumented  # type: ignore[misc]
    _mark_phases(disk, module)
    return disk


# Phases a trigger can be limited to: operations made while one of these functions runs (any thread).
PHASES: dict[str, dict[str, str]] = {
    "edge_agent": {"retention": "edge_agent.runtime:run_retention"},
    "cloud_hub": {
        "ingest": "cloud_hub.app:ingest_burst",  # a burst's ledger transaction, before its answer
        "derive": "cloud_hub.forwarding:Forwarder.catch_up",  # deferred derivation of events
        "deliver": "cloud_hub.delivery:DeliveryEngine._finish",  # recording a sink call's outcome
    },
}


def _mark_phases(disk: Disk, module: str) -> None:
    """Wrap each phase function of ``module`` so the VFS knows which phase an operation belongs to."""
    import importlib

    for phase, target in PHASES.get(module, {}).items():
        mod_name, _, qual = target.partition(":")
        owner: Any = importlib.import_module(mod_name)
        *path, name = qual.split(".")
        for part in path:
            owner = getattr(owner, part)
        original = getattr(owner, name)

        def marked(*args: Any, _fn: Any = original, _phase: str = phase, **kwargs: Any) -> Any:
            with disk.in_phase(_phase):
                return _fn(*args, **kwargs)

        setattr(owner, name, marked)


def main(argv: list[str] | None = None) -> None:
    """``python -m storesync_harness.powercut MODULE [ARGS...]``: run MODULE's ``__main__`` on the VFS."""
    args = list(sys.argv[1:] if argv is None else argv)
    if not args:
        raise SystemExit("usage: python -m storesync_harness.powercut MODULE [ARGS...]")
    module = args[0]
    install(Spec.from_json(os.environ.get(ENV) or "{}"), module)
    sys.argv = [module, *args[1:]]
    try:
        runpy.run_module(module, run_name="__main__", alter_sys=True)
    finally:
        sys.stdout.flush()


def wrap(service: Any) -> None:
    """Make a :class:`~storesync_harness.processes.Service` (``python -m MODULE ...``) run on the VFS."""
    argv = service.argv
    i = argv.index("-m")
    if argv[i + 1] != __name__:
        argv[i + 1 : i + 1] = [__name__]


def arm(service: Any, spec: Spec) -> None:
    """Set the spec the service's next start uses."""
    service.env[ENV] = spec.to_json()


def _reports(path: Path) -> int:
    return len(path.read_text().splitlines()) if path.exists() else 0


def start_armed(service: Any, spec: Spec) -> bool:
    """Start ``service`` with ``spec`` armed; False when the power went already while it started.

    Raises:
        RuntimeError: the service failed to start and no cut was reported (a real failure).
    """
    arm(service, spec)
    before = _reports(Path(str(spec.report)))
    try:
        service.start()
    except RuntimeError:
        if _reports(Path(str(spec.report))) > before:
            return False
        raise
    return True


def tally_cut(points: Counter[str], point: str, *, went_down: bool) -> None:
    """Count one cut at ``point``: as struck when the process went down by the trigger (or the point is a
    plain ``kill``), else as ``point:missed`` (the trigger never came and the process was killed instead)."""
    points[point if went_down or point == "kill" else f"{point}:missed"] += 1


if __name__ == "__main__":  # pragma: no cover
    main()
