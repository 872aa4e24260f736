"""Background jobs of a running agent: the sync pass and the heartbeat (APScheduler 3).

The sync job runs every ``sync_interval`` seconds with ``max_instances=1`` and ``coalesce=True``, so
at most one pass (one burst in flight) runs at a time. :meth:`AgentScheduler.nudge` moves its next
run to now; the capture writer calls it after each commit so records leave at once when the hub is
reachable. Backoff is the sync pass's own business (``next_attempt_at``), unless a nudge is forced.
The probe job (every ``probe_interval``) asks the syncer whether a backoff is over or the hub answers
again, and then runs the pass at once. The retention job prunes old, receipted records.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from datetime import UTC, datetime

from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.job import Job
from apscheduler.jobstores.base import JobLookupError
from apscheduler.schedulers.background import BackgroundScheduler

from ._exceptions import AgentError
from .store import Outbox, now_utc
from .sync import PassResult, Syncer

log = logging.getLogger(__name__)

SYNC_JOB = "sync"
HEARTBEAT_JOB = "heartbeat"
PROBE_JOB = "probe"
RETENTION_JOB = "retention"


class AgentScheduler:
    """Owns the APScheduler instance and the connections its jobs use.

    Args:
        syncer: Runs sync passes (with its own outbox connection).
        heartbeat_outbox: Connection used only by the heartbeat job.
        sync_interval: Seconds between sync passes.
        heartbeat_interval: Seconds between heartbeats.
        on_pass: Called with each pass result (tests and logging).
        probe_interval: Seconds between reachability probes while backing off (None: no probe).
        retention: The retention job (None: no pruning).
        retention_interval: Seconds between retention runs.
    """

    def __init__(
        self,
        syncer: Syncer,
        heartbeat_outbox: Outbox,
        *,
        sync_interval: float,
        heartbeat_interval: float = 5.0,
        on_pass: Callable[[PassResult], None] | None = None,
        probe_interval: float | None = None,
        retention: Callable[[], object] | None = None,
        retention_interval: float = 3600.0,
    ) -> None:
        self.syncer = syncer
        self._heartbeat_outbox = heartbeat_outbox
        self._on_pass = on_pass
        self._lock = threading.Lock()
        self._running = False
        self._nudged = False
        self._force = False
        self._rerun = False
        self._scheduler = BackgroundScheduler(
            timezone=UTC,
            executors={"default": ThreadPoolExecutor(max_workers=3)},
            job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": None},
        )
        self._sync_job: Job = self._scheduler.add_job(
            self._sync_job_run,
            "interval",
            seconds=sync_interval,
            id=SYNC_JOB,
            next_run_time=datetime.now(UTC),
        )
        self._scheduler.add_job(
            self._heartbeat,
            "interval",
            seconds=heartbeat_interval,
            id=HEARTBEAT_JOB,
            next_run_time=datetime.now(UTC),
        )
        if probe_interval:
            self._scheduler.add_job(self._probe, "interval", seconds=probe_interval, id=PROBE_JOB)
        if retention is not None:
            self._scheduler.add_job(
                retention, "interval", seconds=retention_interval, id=RETENTION_JOB, next_run_time=datetime.now(UTC)
            )

    def start(self) -> None:
        self._scheduler.start()

    def shutdown(self) -> None:
        """Stop the jobs, waiting for a running pass to finish."""
        if self._scheduler.running:
            self._scheduler.shutdown(wait=True)
        self.syncer.close()

    def nudge(self, *, force: bool = False) -> None:
        """Run the sync job now (cheap; safe to call after every capture, from any thread).

        Args:
            force: Also skip the backoff or blocked wait (staff pressed "sync now").
        """
        with self._lock:
            if force:
                self._force = True
            if self._running:
                self._rerun = True  # the running pass will run again instead of being skipped
                return
            if self._nudged:
                return
            self._nudged = True
        try:
            self._sync_job.modify(next_run_time=datetime.now(UTC))
        except JobLookupError:  # scheduler shut down
            pass

    def _sync_job_run(self) -> None:
        while True:
            with self._lock:
                self._running = True
                self._nudged = False
                self._rerun = False
                force, self._force = self._force, False
            try:
                result = self.syncer.run_pass(force=force)
                if self._on_pass is not None:
                    self._on_pass(result)
            except AgentError as exc:
                log.error("sync pass failed: %s", exc)
                result = None
            except Exception:
                log.exception("sync pass crashed")
                result = None
            with self._lock:
                ok = result is not None and result.result == "ok"
                again = self._rerun and (ok or self._force)
                self._running = False
            if not again:
                return

    def _probe(self) -> None:
        with self._lock:
            if self._running or self._nudged:
                return
        try:
            verdict = self.syncer.probe_tick()
        except Exception:
            log.exception("reachability probe crashed")
            return
        if verdict is not None:
            self.nudge(force=verdict == "up")

    def _heartbeat(self) -> None:
        try:
            self._heartbeat_outbox.update_sync(heartbeat_at=now_utc())
        except AgentError as exc:
            log.error("heartbeat failed: %s", exc)
