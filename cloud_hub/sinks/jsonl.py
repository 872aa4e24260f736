"""JSONL file sink: one CloudEvents structured-mode JSON object per line (DESIGN §8).

Options:
    path: The file to append to (created with its folder).
    fsync: ``true`` (default) to fsync after every batch; the delivery is marked done only after.

Idempotent across processes: any number of delivery processes (``cloud-hub serve`` replicas,
``cloud-hub deliver``) may append to one file. Every batch is written under an exclusive
``flock`` on the file itself; holding it, the sink first reads what other writers appended since it
last looked (its index of event ids is rebuilt from the file, never trusted from memory alone), then
appends only the events whose id is not in the file yet, then fsyncs, then lets go. So a redelivery
after a crash between the write and the hub's "done", or a lease taken over by another process,
never writes a line twice. A torn last line found under the lock (a writer died in the middle of a
write) is cut off, and its event is written again. The file must be on a local file system
(``flock`` over NFS is not relied on).
"""

from __future__ import annotations

import asyncio
import fcntl
import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, BinaryIO

from ..events import SinkConfig, event_json
from .base import Outcome, Sink, SinkError, map_transport_errors


class JsonlSink(Sink):
    """Append events to a JSON Lines file, once each."""

    kind = "jsonl"

    def __init__(self, config: SinkConfig) -> None:
        super().__init__(config)
        raw = self.options.get("path")
        if not raw:
            raise ValueError(f"sink {config.name}: jsonl needs 'path'")
        self.path = Path(str(raw))
        self.fsync = bool(self.options.get("fsync", True))
        self._index: set[str] = set()
        self._offset = 0  # bytes of the file already read into the index
        self._file_id: tuple[int, int] | None = None  # (st_dev, st_ino) of the file indexed
        self._lock = asyncio.Lock()

    @property
    def written_ids(self) -> frozenset[str]:
        """The ids in the file, as of this process's last look (after :meth:`open` or a delivery)."""
        return frozenset(self._index)

    def _create(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if self.path.exists():
            return
        fd = os.open(self.path, os.O_CREAT | os.O_WRONLY, 0o640)
        os.fsync(fd)
        os.close(fd)
        dfd = os.open(self.path.parent, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)

    def _catch_up(self, f: BinaryIO) -> None:
        """Under the lock: read what was appended since the last look; cut off a torn last line."""
        st = os.fstat(f.fileno())
        file_id = (st.st_dev, st.st_ino)
        if file_id != self._file_id or st.st_size < self._offset:  # first look, replaced or truncated
            self._index, self._offset, self._file_id = set(), 0, file_id
        if st.st_size == self._offset:
            return
        f.seek(self._offset)
        good = self._offset
        for raw in f:
            if not raw.endswith(b"\n"):
                break  # torn write: cut it off below
            try:
                self._index.add(json.loads(raw)["id"])
            except (ValueError, KeyError, TypeError):
                pass  # a foreign or damaged line is kept but not indexed
            good += len(raw)
        if good != st.st_size:
            f.truncate(good)
            f.flush()
            os.fsync(f.fileno())
        self._offset = good

    def _locked(self, events: Sequence[Mapping[str, Any]] | None) -> set[str]:
        """Catch up with the file and append the events it lacks, all under ``flock``; the ids written."""
        self._create()
        with open(self.path, "a+b") as f:
            fcntl.flock(f.fileno(), fcntl.LOCK_EX)
            try:
                self._catch_up(f)
                written: set[str] = set()
                if not events:
                    return written
                fresh: list[str] = []
                for event in events:
                    eid = event["id"]
                    if eid in self._index or eid in written:
                        continue
                    written.add(eid)
                    fresh.append(event_json(event) + "\n")
                if fresh:
                    data = "".join(fresh).encode("utf-8")
                    f.write(data)
                    f.flush()
                    if self.fsync:
                        os.fsync(f.fileno())
                    self._offset += len(data)
                    self._index.update(written)
                return written
            finally:
                fcntl.flock(f.fileno(), fcntl.LOCK_UN)

    async def open(self) -> None:
        """Build the id index from the file now (otherwise it is built on the first delivery)."""
        async with self._lock:
            await asyncio.to_thread(self._locked, None)

    async def deliver(self, events: Sequence[Mapping[str, Any]]) -> list[Outcome]:
        """Append the events not yet in the file; duplicates are ok without a second line."""
        async with self._lock:
            try:
                with map_transport_errors(f"write {self.path}"):
                    new = await asyncio.to_thread(self._locked, events)
            except SinkError as exc:
                self._file_id = None  # the file may hold part of the batch: re-read it all next time
                return [exc.outcome(e["id"]) for e in events]
        return [Outcome.ok(e["id"], reason="" if e["id"] in new else "duplicate") for e in events]
