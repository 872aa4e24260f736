"""Background jobs of a running agent: the sync pass, the heartbeat and the reachability probe.

Jobs are timed on the monotonic clock, never on the wall clock: a store server's clock that jumps
(an NTP correction of days, a dead CMOS battery, a manual change) neither replays the runs it
"missed" nor stalls the jobs until the wall clock catches up. (APScheduler 3, used before, timed jobs
on the wall clock; after a 21-day forward step it computed millions of missed run times while
holding the lock the capture path's nudge needs, and the POS waited seconds for its answer.)

The sync job runs every ``sync_interval`` seconds, at most one pass at a time (a run that comes due
while one is running is skipped, never queued). :meth:`AgentScheduler.nudge` makes it due now; the
capture writer calls it after each commit so records leave at once when the hub is reachable.
Backoff is the sync pass's own business (``next_attempt_at``), unless a nudge is forced. The probe
job (every ``probe_interval``) asks the syncer whether a backoff is over or the hub answers again,
and then runs the pass at once. Retention, a calendar job, runs on APScheduler
(:mod:`edge_agent.housekeeping`).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from sync_protocol.clock import now_iso

from ._exceptions import AgentError
from .store import Outbox
from .sync import PassResult, Syncer

log = logging.getLogger(__name__)

SYNC_JOB = "sync"
HEARTBEAT_JOB = "heartbeat"
PROBE_JOB = "probe"


@dataclass
class _Job:
    name: str
    fn: Callable[[], object]
    interval: float
    due: float  # time.monotonic() of the next run
    running: bool = False
    skipped: int = 0


class AgentScheduler:
    """Runs the agent's jobs on a thread of its own, timed on the monotonic clock.

    Args:
        syncer: Runs sync passes (with its own outbox connection).
        heartbeat_outbox: Connection used only by the heartbeat job.
        sync_interval: Seconds between sync passes.
        heartbeat_interval: Seconds between heartbeats.
        on_pass: Called with each pass result (tests and logging).
        probe_interval: Seconds between reachability probes while backing off (None: no probe).
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
    ) -> None:
        self.syncer = syncer
        self._heartbeat_outbox = heartbeat_outbox
        self._on_pass = on_pass
        self._lock = threading.Lock()
        self._running = False
        self._nudged = False
        self._force = False
        self._rerun = False
        now = time.monotonic()
        self._jobs: dict[str, _Job] = {
            SYNC_JOB: _Job(SYNC_JOB, self._sync_job_run, sync_interval, now),
            HEARTBEAT_JOB: _Job(HEARTBEAT_JOB, self._heartbeat, heartbeat_interval, now),
        }
        if probe_interval:
            self._jobs[PROBE_JOB] = _Job(PROBE_JOB, self._probe, probe_interval, now + probe_interval)
        self._wake = threading.Condition(self._lock)
        self._stopping = False
        self._pool = ThreadPoolExecutor(max_workers=3, thread_name_prefix="agent-job")
        self._thread = threading.Thread(target=self._loop, name="agent-scheduler", daemon=True)

    @property
    def running(self) -> bool:
        return self._thread.is_alive()

    def start(self) -> None:
        self._thread.start()

    def shutdown(self) -> None:
        """Stop the jobs, waiting for a running pass to finish."""
        with self._lock:
            self._stopping = True
            self._wake.notify_all()
        if self._thread.is_alive():
            self._thread.join()
        self._pool.shutdown(wait=True)
        self.syncer.close()

    def _loop(self) -> None:
        with self._lock:
            while not self._stopping:
                now = time.monotonic()
                for job in self._jobs.values():
                    if job.due > now:
                        continue
                    # Next run one interval on, measured from now: runs missed while busy are never replayed.
                    job.due = now + job.interval
                    if job.running:
                        job.skipped += 1
                        continue
                    job.running = True
                    self._pool.submit(self._run, job)
                nearest = min(job.due for job in self._jobs.values())
                self._wake.wait(timeout=max(0.0, nearest - time.monotonic()))

    def _run(self, job: _Job) -> None:
        try:
            job.fn()
        except Exception:
            log.exception("%s job crashed", job.name)
        finally:
            with self._lock:
                job.running = False

    def _make_due(self, name: str) -> None:
        with self._lock:
            job = self._jobs.get(name)
            if job is not None and not self._stopping:
                job.due = time.monotonic()
                self._wake.notify_all()

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
        self._make_due(SYNC_JOB)

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
            self._heartbeat_outbox.update_sync(heartbeat_at=now_iso())
        except AgentError as exc:
            log.error("heartbeat failed: %s", exc)
