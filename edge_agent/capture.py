"""The capture path with group commit.

One writer thread owns the outbox's write connection. Request handlers validate a transaction on
the event loop (:func:`sync_protocol.parse_transaction`), then :meth:`CaptureWriter.submit` it and
await the result. The writer takes everything that is queued, stores it in ONE SQLite transaction
with ONE commit (one fsync), and only then resolves the waiting futures. Each item has its own
result, so one item's conflict never affects another. Capture never waits on the network; after a
commit that stored something the writer calls ``on_commit`` (the sync scheduler's nudge).
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from typing import TypeAlias

from sync_protocol.transaction import Transaction

from ._exceptions import AgentError, StorageError
from .store import CaptureResult, Outbox

log = logging.getLogger(__name__)

Result: TypeAlias = CaptureResult | AgentError
MAX_BATCH = 512


@dataclass
class _Item:
    txn: Transaction
    origin: str
    loop: asyncio.AbstractEventLoop | None
    future: asyncio.Future[Result] | Future[Result]


@dataclass
class WriterStats:
    """Counters for the status page and benchmarks."""

    batches: int = 0
    items: int = 0
    largest_batch: int = 0
    commit_ms_total: float = 0.0


def _resolve_many(pairs: list[tuple[asyncio.Future[Result], Result]]) -> None:
    for fut, result in pairs:
        if not fut.done():
            fut.set_result(result)


class CaptureWriter:
    """The single writer thread of the outbox.

    Args:
        open_outbox: Opens the writer's own outbox connection (called on the writer thread).
        on_commit: Called on the writer thread after a commit that stored at least one new record.
    """

    def __init__(self, open_outbox: Callable[[], Outbox], on_commit: Callable[[], None] | None = None) -> None:
        self._open = open_outbox
        self._on_commit = on_commit
        self._queue: queue.SimpleQueue[_Item | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name="outbox-writer", daemon=True)
        self._ready = threading.Event()
        self._startup_error: BaseException | None = None
        self._stopping = False
        self.stats = WriterStats()
        self.last_error: str | None = None  # the last batch's storage failure, until a batch stores again

    def start(self) -> None:
        """Start the writer thread and wait until its connection is open.

        Raises:
            StorageError, ConfigError: when the outbox cannot be opened.
        """
        self._thread.start()
        self._ready.wait()
        if self._startup_error is not None:
            raise self._startup_error

    def alive(self) -> bool:
        """True while the writer thread runs (the systemd watchdog's health check)."""
        return self._thread.is_alive()

    def stop(self, timeout: float = 10.0) -> None:
        """Process everything already queued, then stop the thread."""
        self._stopping = True
        self._queue.put(None)
        self._thread.join(timeout)

    async def submit(self, txn: Transaction, origin: str = "api") -> Result:
        """Queue one validated transaction and wait for its committed result (never raises)."""
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[Result] = loop.create_future()
        self._put(_Item(txn, origin, loop, fut))
        return await fut

    async def submit_many(self, txns: Sequence[Transaction], origin: str = "api") -> list[Result]:
        """Queue several transactions at once (they commit together when nothing else is queued)."""
        loop = asyncio.get_running_loop()
        futs: list[asyncio.Future[Result]] = []
        for txn in txns:
            fut: asyncio.Future[Result] = loop.create_future()
            futs.append(fut)
            self._put(_Item(txn, origin, loop, fut))
        return list(await asyncio.gather(*futs))

    def submit_blocking(self, txn: Transaction, origin: str = "api", timeout: float | None = None) -> Result:
        """Queue a transaction from a plain thread and wait for its result."""
        fut: Future[Result] = Future()
        self._put(_Item(txn, origin, None, fut))
        return fut.result(timeout)

    def _put(self, item: _Item) -> None:
        if self._stopping or not self._thread.is_alive():
            item.future.set_result(StorageError("the agent is shutting down; retry shortly"))
            return
        self._queue.put(item)

    def _run(self) -> None:
        try:
            outbox = self._open()
        except BaseException as exc:  # reported to start()
            self._startup_error = exc
            self._ready.set()
            return
        self._ready.set()
        try:
            while True:
                first = self._queue.get()
                batch: list[_Item] = []
                stop = first is None
                if first is not None:
                    batch.append(first)
                while len(batch) < MAX_BATCH:
                    try:
                        nxt = self._queue.get_nowait()
                    except queue.Empty:
                        break
                    if nxt is None:
                        stop = True
                        continue
                    batch.append(nxt)
                if batch:
                    self._process(outbox, batch)
                if stop and self._queue.empty():
                    break
        finally:
            outbox.close()

    def _process(self, outbox: Outbox, batch: list[_Item]) -> None:
        started = time.perf_counter()
        try:
            results = outbox.capture_batch([(item.txn, item.origin) for item in batch])
        except AgentError as exc:
            results = [exc for _ in batch]
        except Exception as exc:  # never leave a POS hanging
            log.exception("capture batch failed")
            results = [StorageError(f"internal error while storing: {type(exc).__name__}") for _ in batch]
        elapsed = (time.perf_counter() - started) * 1000
        failed = next((r for r in results if isinstance(r, StorageError)), None)
        if failed is not None:
            self.last_error = str(failed)
        elif any(isinstance(r, CaptureResult) for r in results):
            self.last_error = None
        st = self.stats
        st.batches += 1
        st.items += len(batch)
        st.largest_batch = max(st.largest_batch, len(batch))
        st.commit_ms_total += elapsed
        by_loop: dict[asyncio.AbstractEventLoop, list[tuple[asyncio.Future[Result], Result]]] = {}
        for item, result in zip(batch, results, strict=True):
            if item.loop is None:
                assert isinstance(item.future, Future)
                item.future.set_result(result)
            else:
                assert isinstance(item.future, asyncio.Future)
                by_loop.setdefault(item.loop, []).append((item.future, result))
        for loop, pairs in by_loop.items():
            try:
                loop.call_soon_threadsafe(_resolve_many, pairs)
            except RuntimeError:  # loop closed: the client is gone, the record is stored anyway
                pass
        if self._on_commit is not None and any(isinstance(r, CaptureResult) and not r.duplicate for r in results):
            try:
                self._on_commit()
            except Exception:
                log.exception("on_commit hook failed")
