"""The agent's calendar jobs on APScheduler: retention at a time of day or on an interval, run once at start."""

from __future__ import annotations

import threading
import time
from datetime import datetime, timedelta

import pytest
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger

from edge_agent._exceptions import ConfigError
from edge_agent.config import AgentConfig
from edge_agent.housekeeping import Housekeeping, parse_time_of_day, retention_trigger


def wait_until(pred, timeout: float = 10.0) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if pred():
            return True
        time.sleep(0.02)
    return pred()


def test_retention_runs_at_start_and_then_on_its_interval() -> None:
    runs: list[float] = []
    job = Housekeeping(lambda: runs.append(time.monotonic()), interval=0.3)
    job.start()
    try:
        assert wait_until(lambda: len(runs) >= 3), runs
    finally:
        job.shutdown()
    assert not job.running
    count = len(runs)
    time.sleep(0.5)
    assert len(runs) == count  # nothing runs after shutdown


def test_a_slow_run_is_never_doubled() -> None:
    active = 0
    most = 0
    lock = threading.Lock()
    done = threading.Event()

    def slow() -> None:
        nonlocal active, most
        with lock:
            active += 1
            most = max(most, active)
        time.sleep(0.5)
        with lock:
            active -= 1
        done.set()

    job = Housekeeping(slow, interval=0.05, run_at_start=False)
    job.start()
    try:
        assert done.wait(5)
        time.sleep(0.4)
    finally:
        job.shutdown()
    assert most == 1


def test_a_crashing_run_is_logged_and_the_job_goes_on(caplog: pytest.LogCaptureFixture) -> None:
    runs: list[int] = []

    def crash() -> None:
        runs.append(1)
        raise RuntimeError("disk on fire")

    job = Housekeeping(crash, interval=0.2)
    job.start()
    try:
        assert wait_until(lambda: len(runs) >= 2)
    finally:
        job.shutdown()
    assert "retention job crashed" in caplog.text


def test_time_of_day_gives_a_daily_cron_trigger_at_that_local_time() -> None:
    trigger = retention_trigger(at="03:30", interval=3600)
    assert isinstance(trigger, CronTrigger)
    now = datetime.now().astimezone()
    nxt = trigger.get_next_fire_time(None, now)
    assert nxt is not None and (nxt.hour, nxt.minute) == (3, 30)
    assert timedelta(0) < nxt - now <= timedelta(days=1, hours=1)
    job = Housekeeping(lambda: None, at="03:30", run_at_start=False)
    job.start()
    try:
        nxt_text = job.next_run_time()
    finally:
        job.shutdown()
    assert nxt_text is not None and "T03:30:00" in nxt_text


def test_without_a_time_of_day_the_interval_is_used() -> None:
    assert isinstance(retention_trigger(at=None, interval=60), IntervalTrigger)


@pytest.mark.parametrize("bad", ["3.30", "24:00", "03:60", "noon", ""])
def test_a_bad_time_of_day_is_refused_naming_the_setting(bad: str) -> None:
    if bad == "":
        assert isinstance(retention_trigger(at=bad, interval=60), IntervalTrigger)  # empty means unset
        return
    with pytest.raises(ConfigError, match="retention_at"):
        parse_time_of_day(bad)


def test_a_non_positive_interval_is_refused() -> None:
    with pytest.raises(ConfigError, match="retention_interval"):
        retention_trigger(at=None, interval=0)


def test_retention_at_comes_from_the_environment(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EDGE_AGENT_RETENTION_AT", "02:15")
    assert AgentConfig.load(tmp_path).retention_at == "02:15"
