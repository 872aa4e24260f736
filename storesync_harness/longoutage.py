"""The long outage: days of a busy store captured while the hub is down, then a full catch-up.

72 hours at 1 transaction per second is 259,200 records. Time is compressed: the backlog is captured
as fast as the agent takes it (``edge-agent capture`` in chunks, into the outbox of the running,
offline agent), then the hub comes back. During the catch-up a POS keeps posting through the capture
API, one sale at a time, and each answer's latency is measured: the sync of the backlog must not make
the till wait.
"""

from __future__ import annotations

import random
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from .invariants import (
    LedgerWatcher,
    PosJournal,
    Verdict,
    agent_verify,
    encode,
    jsonl_events,
    judge,
    store_public_key,
    wait_delivered,
)
from .pos import Pos
from .processes import Agent, Hub, agent_cli
from .rig import STORE, PosDriver

HOURS_72 = 72 * 3600
CHUNK = 20_000


@dataclass
class OutageResult:
    """Figures of one long-outage run (seconds and milliseconds)."""

    records: int = 0
    capture_s: float = 0.0
    catchup_s: float = 0.0
    drain_s: float = 0.0
    pos_posts: int = 0
    p50_ms: float = 0.0
    p99_ms: float = 0.0
    max_ms: float = 0.0
    baseline_p50_ms: float = 0.0
    baseline_p99_ms: float = 0.0
    verdict: Verdict = field(default_factory=Verdict)

    @property
    def ok(self) -> bool:
        return self.verdict.ok and self.verdict.acknowledged >= self.records


def _percentile(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def _status(agent: Agent) -> dict[str, object]:
    return dict(httpx.get(agent.url + "/v1/status", timeout=10).json())


def run_long_outage(
    workdir: Path,
    records: int = HOURS_72,
    *,
    pos_interval: float = 0.02,
    seed: int = 0,
    progress: Callable[[str], None] | None = None,
    timeout: float = 900.0,
) -> OutageResult:
    """Capture ``records`` with the hub down, bring it back, and measure the catch-up.

    Args:
        workdir: Empty folder.
        records: Backlog size (default: 72 hours at 1/s).
        pos_interval: Pause between the measuring POS's posts during the catch-up.
        seed: Seed of the generated transactions.
        progress: Called with a line now and then.
        timeout: Give up the catch-up after this many seconds.
    """
    say = progress or (lambda _line: None)
    out = OutageResult(records=records)
    hub = Hub.create(workdir / "hub", None, "--log-level", "warning")
    hub.start()
    agent = Agent.enrolled(workdir / "agent", hub, STORE, "Europe/Berlin", "--sync-interval", "1")
    hub.stop()  # the outage begins
    agent.start()
    journal = PosJournal()  # the backlog's lines, booked with the CLI's answer for each
    registers = [Pos(f"B{i}", seed=seed) for i in range(1, 5)]
    rng = random.Random(seed)
    try:
        started = time.monotonic()
        done = 0
        while done < records:
            n = min(CHUNK, records - done)
            path = workdir / "backlog.jsonl"
            texts = [encode(registers[(done + i) % len(registers)].mixed()) for i in range(n)]
            path.write_text("".join(t + "\n" for t in texts), encoding="utf-8")
            res = agent_cli("capture", "--data-dir", str(agent.data_dir), str(path), check=False)
            answers = res.stdout.splitlines()
            for i, text in enumerate(texts):
                line = answers[i] if i < len(answers) else ""
                status = 201 if ": stored as seq" in line else 200 if ": duplicate of seq" in line else 422
                journal.record(text, status, line)
            done += n
            say(f"captured {done}/{records} offline ({time.monotonic() - started:.0f}s)")
        path.unlink(missing_ok=True)
        out.capture_s = time.monotonic() - started
        st = _status(agent)
        assert st["pending"] == records, f"expected {records} pending, status says {st['pending']}"

        pos = PosDriver(agent.url, registers=1, interval=pos_interval, seed=seed + 1).start()
        try:
            pos.measure = True
            pos.resume()
            time.sleep(3.0)  # baseline: the same POS while nothing syncs
            pos.pause()
            base = list(pos.book.latencies_ms)
            out.baseline_p50_ms = statistics.median(base) if base else 0.0
            out.baseline_p99_ms = _percentile(base, 0.99)
            pos.book.latencies_ms.clear()
            pos.resume()
            hub.start()
            t0 = time.monotonic()
            last_say = t0
            while True:
                st = _status(agent)
                acked = int(st["acked_through"])  # type: ignore[call-overload]
                if acked >= records and not out.catchup_s:
                    out.catchup_s = time.monotonic() - t0
                    pos.pause()  # latency is measured during the catch-up; then the last sales drain
                if out.catchup_s and st["pending"] == 0:
                    break
                if time.monotonic() - t0 > timeout:
                    raise TimeoutError(f"catch-up not done after {timeout} s: {st}")
                if time.monotonic() - last_say > 10:
                    say(f"catch-up: acked {acked}/{records} ({time.monotonic() - t0:.0f}s)")
                    last_say = time.monotonic()
                time.sleep(0.2)
            pos.pause()
            pos.settle(rng)
            out.drain_s = time.monotonic() - t0
            agent.wait_synced(timeout=60)
            lat = pos.book.latencies_ms
            out.pos_posts = len(lat)
            out.p50_ms = statistics.median(lat) if lat else 0.0
            out.p99_ms = _percentile(lat, 0.99)
            out.max_ms = max(lat, default=0.0)
            watcher = LedgerWatcher(STORE, store_public_key(agent.data_dir))
            watcher.update(hub)
            for call in pos.journal.calls:  # the live POS's calls join the backlog's
                journal.record(call.sent, call.status, call.answer)
            wait_delivered(hub, timeout=timeout)
            sinks = {"events": jsonl_events(hub.data_dir / "events.jsonl")}
            out.verdict = judge(watcher, journal, sinks=sinks)
            out.verdict.agent_verify_ok, text = agent_verify(agent.data_dir)
            if not out.verdict.agent_verify_ok:
                out.verdict.note(f"edge-agent verify: {text}")
        finally:
            pos.close()
    finally:
        agent.stop()
        hub.stop()
    return out
