"""JSONL file sink: one CloudEvents structured-mode JSON object per line (DESIGN §8).

Options:
    path: The file to append to (created with its folder).
    fsync: ``true`` (default) to fsync after every batch; the delivery is marked done only after.

Idempotent: the sink keeps an in-memory index of the ids already in the file (built by reading the
file when the sink opens) and skips an event whose id is there, so a redelivery after a crash
between the write and the hub's "done" never writes a line twice. A torn last line (a crash in the
middle of a write) is cut off when the file is opened, and its event is written again.
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

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
        self._index: set[str] | None = None
        self._lock = asyncio.Lock()

    @property
    def written_ids(self) -> frozenset[str]:
        """The ids in the file (after the first delivery or :meth:`open`)."""
        return frozenset(self._index or ())

    def _load(self) -> set[str]:
        index: set[str] = set()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if not self.path.exists():
            fd = os.open(self.path, os.O_CREAT | os.O_WRONLY, 0o640)
            os.fsync(fd)
            os.close(fd)
            dfd = os.open(self.path.parent, os.O_RDONLY)
            try:
                os.fsync(dfd)
            finally:
                os.close(dfd)
            return index
        good = 0
        with open(self.path, "rb") as f:
            for raw in f:
                if not raw.endswith(b"\n"):
                    break  # torn write: cut it off below
                try:
                    index.add(json.loads(raw)["id"])
                except (ValueError, KeyError, TypeError):
                    pass  # a foreign or damaged line is kept but not indexed
                good += len(raw)
        if good != self.path.stat().st_size:
            with open(self.path, "r+b") as f:
                f.truncate(good)
                f.flush()
                os.fsync(f.fileno())
        return index

    async def open(self) -> None:
        """Build the id index now (otherwise it is built on the first delivery)."""
        async with self._lock:
            if self._index is None:
                self._index = await asyncio.to_thread(self._load)

    def _append(self, lines: list[str]) -> None:
        data = "".join(lines).encode("utf-8")
        with open(self.path, "ab") as f:
            f.write(data)
            f.flush()
            if self.fsync:
                os.fsync(f.fileno())

    async def deliver(self, events: Sequence[Mapping[str, Any]]) -> list[Outcome]:
        """Append the events not yet in the file; duplicates are ok without a second line."""
        async with self._lock:
            try:
                with map_transport_errors(f"write {self.path}"):
                    if self._index is None:
                        self._index = await asyncio.to_thread(self._load)
                    index = self._index
                    fresh: list[str] = []
                    ids: list[str] = []
                    for event in events:
                        eid = event["id"]
                        if eid in index or eid in ids:
                            continue
                        ids.append(eid)
                        fresh.append(event_json(event) + "\n")
                    if fresh:
                        await asyncio.to_thread(self._append, fresh)
                        index.update(ids)
            except SinkError as exc:
                self._index = None  # the file may hold part of the batch: re-read it next time
                return [exc.outcome(e["id"]) for e in events]
        new = set(ids)
        return [Outcome.ok(e["id"], reason="" if e["id"] in new else "duplicate") for e in events]
