"""Calendar jobs of a running agent, on APScheduler: retention, at a quiet hour of the store's day.

Two kinds of timing live in the agent, each on the clock that suits it:

* The sync pass, the heartbeat and the reachability probe run every few seconds on the monotonic clock
  (:mod:`edge_agent.scheduler`): a wall clock that jumps must never stall them or replay missed runs.
* Retention is a calendar job: it deletes old, receipted records, which is disk work best done while
  the tills are quiet, so it runs at a local time of day (``retention_at``, e.g. ``"03:30"``), or, when
  none is set, every ``retention_interval`` seconds. That is what APScheduler is for. Its jobs are set
  with ``coalesce=True`` and ``max_instances=1``: after the store server's clock jumps forward by days
  the job runs once, not once per missed night, and never twice at the same time. After a jump back,
  the next run waits for the wall clock, which only delays pruning (never a sale).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable

from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.base import BaseTrigger
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger

from ._exceptions import ConfigError

log = logging.getLogger(__name__)

RETENTION_JOB = "retention"
_HHMM = re.compile(r"^([01]?\d|2[0-3]):([0-5]\d)$")


def parse_time_of_day(text: str, *, field: str = "retention_at") -> tuple[int, int]:
    """``"HH:MM"`` (24-hour, local time) as ``(hour, minute)``.

    Raises:
        ConfigError: naming ``field`` when the text is not a time of day.
    """
    match = _HHMM.match(text.strip())
    if match is None:
        raise ConfigError(f"{field}: {text!r} is not a time of day as HH:MM (24-hour, e.g. 03:30)")
    return int(match.group(1)), int(match.group(2))


def retention_trigger(*, at: str | None, interval: float) -> BaseTrigger:
    """The trigger of the retention job: daily at ``at`` (local time) when given, else every ``interval`` s.

    Raises:
        ConfigError: ``at`` is not HH:MM, or ``interval`` is not positive.
    """
    if at:
        hour, minute = parse_time_of_day(at)
        return CronTrigger(hour=hour, minute=minute)
    if interval <= 0:
        raise ConfigError(f"retention_interval: {interval!r} must be a positive number of seconds")
    return IntervalTrigger(seconds=interval)


class Housekeeping:
    """The agent's calendar jobs on an APScheduler background scheduler (one thread of its own).

    Args:
        retention: The retention job; it logs its own errors.
        at: Local time of day for retention (``"HH:MM"``), or None for a fixed interval.
        interval: Seconds between retention runs when ``at`` is None.
        run_at_start: Also run retention once soon after start (the first interval may be long).
    """

    def __init__(
        self,
        retention: Callable[[], object],
        *,
        at: str | None = None,
        interval: float = 3600.0,
        run_at_start: bool = True,
    ) -> None:
        self._retention = retention
        self._trigger = retention_trigger(at=at, interval=interval)
        self._run_at_start = run_at_start
        self._scheduler = BackgroundScheduler(
            job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": None},
        )

    @property
    def running(self) -> bool:
        return bool(self._scheduler.running)

    def next_run_time(self) -> str | None:
        """When retention runs next (ISO, local zone), for status and logs."""
        job = self._scheduler.get_job(RETENTION_JOB)
        return job.next_run_time.isoformat() if job is not None and job.next_run_time else None

    def start(self) -> None:
        self._scheduler.add_job(self._run, self._trigger, id=RETENTION_JOB, name=RETENTION_JOB)
        if self._run_at_start:
            self._scheduler.add_job(self._run, id=f"{RETENTION_JOB}-at-start", name=RETENTION_JOB)
        self._scheduler.start()
        log.debug("retention scheduled: next run %s", self.next_run_time())

    def shutdown(self) -> None:
        """Stop; a retention run in progress finishes first (it deletes in small committed chunks)."""
        if self._scheduler.running:
            self._scheduler.shutdown(wait=True)

    def _run(self) -> None:
        try:
            self._retention()
        except Exception:
            log.exception("retention job crashed")
