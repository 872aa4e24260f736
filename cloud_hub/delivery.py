"""Delivery workers (DESIGN §6): claim due deliveries, call the sink, record what it confirmed.

One asyncio task per sink and one that derives events for deferred (catch-up) bursts, in a thread
of their own with their own event loop, so HTTP handling and delivery do not wait on each other:

- ``cloud-hub serve`` starts :class:`DeliveryEngine` in its lifespan and stops it on shutdown;
- ``cloud-hub deliver`` runs only the engine (scale-out: several may run against one database,
  claims never overlap).

A claim marks rows ``in_flight`` with a lease (``[delivery] lease_s``, restarted when the sink call of a
claim made ahead of time starts, so prefetching does not eat into it); if the worker dies, the rows
are due again when the lease runs out, and the sink's idempotency key (the event id) makes the
second delivery harmless. Rows are marked ``done`` only after the sink confirmed them. Transient
failures back off (full jitter, the sink's ``retry_after`` honoured) until ``max_attempts``, then
dead-letter; permanent failures dead-letter at once. In a strict sink a lane (sink, store) is sent in
seq order, one call at a time, and parks behind a dead letter until an operator replays or skips it.
"""

from __future__ import annotations

import asyncio
import logging
import random
import threading
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from itertools import groupby
from typing import Any

from sync_protocol.clock import now_iso

from ._exceptions import StorageError
from .events import SinkConfig, StoredEvent, source_of
from .forwarding import Forwarder, ForwardingConfig
from .metrics import HubMetrics
from .sinks import Outcome, Sink, build_sink
from .storage import Delivery, DeliveryUpdate, Storage

log = logging.getLogger("cloud_hub.delivery")
NOT_ATTEMPTED = "not attempted"
INGEST_BUSY_S = 0.5
"""Bursts this recent mean ingest is busy: event derivation then yields to it."""
BUSY_DERIVE_CHUNK = 100
"""Records derived per chunk while ingest is busy (about 20 ms of CPU)."""


def plan_updates(
    cfg: SinkConfig,
    batch: Sequence[Delivery],
    outcomes: Sequence[Outcome],
    now: float,
    rand: Callable[[], float] = random.random,
) -> list[DeliveryUpdate]:
    """What each delivery of a finished call becomes (pure; see the module docstring)."""
    updates: list[DeliveryUpdate] = []
    lane_wait: dict[str, float] = {}  # strict: the lane's first failure sets when the rest retry
    for d, o in zip(batch, outcomes, strict=True):
        held = cfg.ordering == "strict" and d.lane in lane_wait
        if o.status == "ok":
            updates.append(DeliveryUpdate(d.id, "done", True, now))
        elif held or o.reason.startswith(NOT_ATTEMPTED):
            wait = lane_wait.get(d.lane, now + cfg.retry.backoff(1, rand()))
            updates.append(DeliveryUpdate(d.id, "pending", False, wait))
        elif o.status == "permanent" or d.attempts + 1 >= cfg.retry.max_attempts:
            reason = o.reason if o.status == "permanent" else f"gave up after {d.attempts + 1} attempts: {o.reason}"
            updates.append(DeliveryUpdate(d.id, "dead", True, now, reason[:500]))
            lane_wait[d.lane] = now
        else:
            wait = max(cfg.retry.backoff(d.attempts + 1, rand()), o.retry_after or 0.0)
            updates.append(DeliveryUpdate(d.id, "pending", True, now + wait, o.reason[:500]))
            lane_wait[d.lane] = now + wait
    return updates


@dataclass
class _SinkWorker:
    cfg: SinkConfig
    sink: Sink
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    held: dict[str, list[Delivery]] = field(default_factory=dict)  # claim → rows not yet settled


class DeliveryEngine:
    """Delivery workers for every configured sink, plus the catch-up deriver.

    Args:
        storage: The hub database.
        config: Sinks and ``[delivery]`` settings.
        forwarder: Derives events for deferred bursts (shared with the ingest hook).
        metrics: Counters to update, if any.
        sink_factory: Builds a sink from its config (tests may substitute).
    """

    def __init__(
        self,
        storage: Storage,
        config: ForwardingConfig,
        forwarder: Forwarder,
        metrics: HubMetrics | None = None,
        sink_factory: Callable[[SinkConfig], Sink] = build_sink,
    ) -> None:
        self.storage = storage
        self.config = config
        self.settings = config.delivery
        self.forwarder = forwarder
        self.metrics = metrics
        self.sink_factory = sink_factory
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._stopping: asyncio.Event | None = None
        self._workers: list[_SinkWorker] = []
        self._derive_wake: asyncio.Event | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._last_ingest = 0.0
        self.crashed: BaseException | None = None

    # ------------------------------------------------------------------------------ lifecycle

    def start(self) -> None:
        """Run the engine in a background thread (returns once its loop runs)."""
        started = threading.Event()

        def main() -> None:
            try:
                asyncio.run(self.run(started))
            except BaseException as exc:  # noqa: BLE001 - reported by alive()/readyz
                self.crashed = exc
                log.exception("delivery engine stopped: %s", type(exc).__name__)
                started.set()

        self._thread = threading.Thread(target=main, name="delivery", daemon=True)
        self._thread.start()
        started.wait(30)

    def stop(self, timeout: float | None = None) -> None:
        """Stop the workers (the current calls get ``shutdown_grace_s``) and close the sinks."""
        loop, thread = self._loop, self._thread
        if loop is not None and self._stopping is not None and not loop.is_closed():
            try:
                loop.call_soon_threadsafe(self._stopping.set)
            except RuntimeError:
                pass  # loop already closed
        if thread is not None:
            thread.join(timeout if timeout is not None else self.settings.shutdown_grace_s + 10)

    def alive(self) -> bool:
        """True while every worker task runs."""
        if self._thread is None or not self._thread.is_alive() or self.crashed is not None:
            return False
        return all(not t.done() for t in self._tasks)

    def wake(self) -> None:
        """Thread-safe: new work may be due (called by the ingest hook)."""
        self._last_ingest = time.monotonic()
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        try:
            loop.call_soon_threadsafe(self._wake_all)
        except RuntimeError:
            pass

    def _wake_all(self) -> None:
        for w in self._workers:
            w.wake.set()
        if self._derive_wake is not None:
            self._derive_wake.set()

    async def run(self, started: threading.Event | None = None) -> None:
        """Run until :meth:`stop` (or until cancelled)."""
        self._loop = asyncio.get_running_loop()
        self._stopping = asyncio.Event()
        self._derive_wake = asyncio.Event()
        self._workers = [_SinkWorker(cfg, self.sink_factory(cfg)) for cfg in self.config.sinks]
        self._tasks = [asyncio.create_task(self._derive_loop(), name="derive")]
        self._tasks += [asyncio.create_task(self._sink_loop(w), name=f"sink:{w.cfg.name}") for w in self._workers]
        if started is not None:
            started.set()
        log.info("delivery workers started for sinks: %s", ", ".join(w.cfg.name for w in self._workers) or "none")
        try:
            await self._stopping.wait()
        finally:
            self._wake_all()
            _, pending = await asyncio.wait(self._tasks, timeout=self.settings.shutdown_grace_s)
            for task in pending:
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)
            for w in self._workers:
                if w.held:
                    await asyncio.to_thread(self._release, w)
                try:
                    await w.sink.aclose()
                except Exception:  # noqa: BLE001 - closing is best effort
                    log.warning("closing sink %s failed", w.cfg.name)
            log.info("delivery workers stopped")

    # ---------------------------------------------------------------------------------- loops

    async def _idle(self, wake: asyncio.Event) -> None:
        assert self._stopping is not None
        if self._stopping.is_set():
            return
        try:
            await asyncio.wait_for(wake.wait(), self.settings.poll_s)
        except TimeoutError:
            pass
        wake.clear()

    def _ingest_busy(self) -> bool:
        """True while bursts are arriving (one in the last :data:`INGEST_BUSY_S` seconds)."""
        return time.monotonic() - self._last_ingest < INGEST_BUSY_S

    async def _derive_loop(self) -> None:
        """Derive events for catch-up bursts; custody first.

        Deriving is CPU-bound Python in the hub's process. While bursts are arriving it works in small
        chunks and then leaves the CPU to ingest for as long as the chunk took (half speed, never
        starved), so a store's receipt is not delayed by another store's forwarding backlog.
        """
        assert self._stopping is not None and self._derive_wake is not None
        while not self._stopping.is_set():
            busy = self._ingest_busy()
            limit = min(self.settings.batch_size, BUSY_DERIVE_CHUNK) if busy else self.settings.batch_size
            started = time.monotonic()
            try:
                done = await asyncio.to_thread(self.forwarder.catch_up, self.storage, limit)
            except StorageError as exc:
                log.warning("deriving events failed (will retry): %s", exc.message)
                done = 0
            if done:
                for w in self._workers:
                    w.wake.set()
                if busy:
                    await asyncio.sleep(time.monotonic() - started)
                continue
            await self._idle(self._derive_wake)

    def _claim(self, w: _SinkWorker, claim: str) -> list[Delivery]:
        now = time.time()
        return self.storage.run(
            lambda tx: tx.claim_deliveries(
                w.cfg.name,
                strict=w.cfg.ordering == "strict",
                now=now,
                lease_until=now + self.settings.lease_s,
                claim=claim,
                limit=self.settings.batch_size,
            )
        )

    def _renew(self, w: _SinkWorker, claim: str, batch: list[Delivery]) -> list[Delivery]:
        """Restart the lease of a prefetched claim as its sink call starts; only rows still held stay."""
        lease_until = time.time() + self.settings.lease_s
        held = self.storage.run(lambda tx: tx.renew_claim(claim, lease_until))
        kept = [d for d in batch if d.id in held]
        if kept:
            w.held[claim] = kept
        else:
            w.held.pop(claim, None)
        return kept

    def _finish(self, claim: str, updates: list[DeliveryUpdate]) -> int:
        at = now_iso(z=True)
        return self.storage.run(lambda tx: tx.finish_deliveries(claim, updates, at))

    def _release(self, w: _SinkWorker) -> None:
        now = time.time()
        for claim, rows in list(w.held.items()):
            try:
                self._finish(claim, [DeliveryUpdate(d.id, "pending", False, now) for d in rows])
            except StorageError:
                pass  # the lease runs out instead
        w.held.clear()

    async def _take(self, w: _SinkWorker, linger: float) -> tuple[str, list[Delivery]]:
        claim = uuid.uuid4().hex
        batch = await asyncio.to_thread(self._claim, w, claim)
        if batch:
            w.held[claim] = batch
        if batch and linger and len(batch) < self.settings.batch_size:
            await asyncio.sleep(linger)  # let a coalescing sink collect more of its window
            # Returns every row under this claim when it took new ones, else nothing.
            batch = await asyncio.to_thread(self._claim, w, claim) or batch
            w.held[claim] = batch
        return claim, batch

    async def _settle(self, w: _SinkWorker, claim: str, batch: list[Delivery], outcomes: list[Outcome]) -> None:
        updates = plan_updates(w.cfg, batch, outcomes, time.time())
        try:
            await asyncio.to_thread(self._finish, claim, updates)
        except StorageError as exc:
            log.warning("sink %s: recording results failed; they are delivered again: %s", w.cfg.name, exc)
        w.held.pop(claim, None)
        self._count(w.cfg, batch, updates, outcomes)

    async def _sink_loop(self, w: _SinkWorker) -> None:
        """Claim, deliver, record — with the next claim and the last record overlapping the call."""
        assert self._stopping is not None
        linger = float(getattr(w.sink, "linger_s", 0.0) or 0.0)
        prefetch: asyncio.Task[tuple[str, list[Delivery]]] | None = None
        settling: asyncio.Task[None] | None = None
        try:
            while not self._stopping.is_set():
                prefetched = prefetch is not None
                try:
                    claim, batch = await (prefetch or self._take(w, linger))
                    if prefetched and batch:  # claimed during the last call: its lease starts now
                        batch = await asyncio.to_thread(self._renew, w, claim, batch)
                except StorageError as exc:
                    log.warning("sink %s: claim failed (will retry): %s", w.cfg.name, exc.message)
                    claim, batch = "", []
                prefetch = None
                if not batch:
                    await self._idle(w.wake)
                    continue
                if not linger:
                    prefetch = asyncio.create_task(self._take(w, 0.0))
                outcomes = await self._deliver(w, batch)
                if settling is not None:
                    await settling
                settling = asyncio.create_task(self._settle(w, claim, batch, outcomes))
        finally:
            if settling is not None:
                await asyncio.shield(settling)
            if prefetch is not None:
                try:
                    await prefetch
                except StorageError:
                    pass

    async def _deliver(self, w: _SinkWorker, batch: list[Delivery]) -> list[Outcome]:
        events: list[Mapping[str, Any]] = [
            StoredEvent(d.event_json, {"id": d.event_id, "source": source_of(d.store_id), "type": d.type})
            for d in batch
        ]
        try:
            if w.cfg.ordering != "strict":
                calls = [w.sink.deliver(events)]
            else:  # one call per lane (in seq order); lanes go in parallel
                calls = []
                i = 0
                for _, lane in groupby(batch, key=lambda d: d.lane):
                    n = len(list(lane))
                    calls.append(w.sink.deliver(events[i : i + n]))
                    i += n
            results = await asyncio.wait_for(asyncio.gather(*calls), self.settings.lease_s * 0.9)
            outcomes = [o for r in results for o in r]
            if len(outcomes) != len(batch):
                raise RuntimeError(f"sink answered {len(outcomes)} outcomes for {len(batch)} events")
            return outcomes
        except TimeoutError:
            return [Outcome.transient(e["id"], "sink call timed out, outcome unknown") for e in events]
        except Exception as exc:  # noqa: BLE001 - a sink bug must not kill its worker
            log.exception("sink %s raised %s", w.cfg.name, type(exc).__name__)
            return [Outcome.transient(e["id"], f"sink raised {type(exc).__name__}") for e in events]

    def _count(
        self, cfg: SinkConfig, batch: list[Delivery], updates: list[DeliveryUpdate], outcomes: list[Outcome]
    ) -> None:
        for d, u in zip(batch, updates, strict=True):
            if u.state == "dead":
                log.warning(
                    "dead letter: sink=%s event=%s attempts=%d reason=%s",
                    cfg.name,
                    d.event_id,
                    d.attempts + 1,
                    u.last_error,
                )
        if self.metrics is not None:
            attempted = [o for o, u in zip(outcomes, updates, strict=True) if u.attempted]
            self.metrics.delivered(cfg.name, attempted)
