"""A test rig: hub and agent processes with a fault proxy between them, and POS registers posting sales.

```
PosDriver ──HTTP──▶ edge-agent (process) ──▶ FaultProxy (thread, survives kills) ──▶ cloud-hub (process)
```

The POS keeps the only record that matters for the invariants: every transaction it was told is
saved (201/200), and every one it sent without getting an answer. Like a real register it retries a
transaction that got no answer, with the same ``txn_id``, until it gets one (or gives up, when told).
"""

from __future__ import annotations

import random
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from .faultproxy import FaultProxy
from .invariants import (
    Key,
    LedgerWatcher,
    PosJournal,
    Verdict,
    agent_verify,
    jsonl_events,
    judge,
    store_public_key,
    wait_delivered,
)
from .pos import Pos
from .powercut import wrap as powercut_wrap
from .processes import Agent, Hub

STORE = "S1"
# Two sinks, so "exactly one event per sink" is checked per sink: an archive and a stream, both jsonl files.
# lease_s: a delivery claimed by a hub that was killed is delivered again after this (the product default is 60 s;
# the crash and power-cut trials kill the hub mid-delivery, and only the redelivery matters, not its delay).
HUB_TOML = """
[delivery]
poll_s = 0.2
lease_s = 5

[[sinks]]
name = "archive"
kind = "jsonl"
role = "archive"
path = "archive.jsonl"

[[sinks]]
name = "stream"
kind = "jsonl"
role = "stream"
path = "stream.jsonl"
"""
SINK_FILES = {"archive": "archive.jsonl", "stream": "stream.jsonl"}
# Agent settings for the rig: short timeouts so stalls and outages cost seconds, not minutes.
AGENT_ENV = {
    "EDGE_AGENT_READ_TIMEOUT": "3",
    "EDGE_AGENT_CONNECT_TIMEOUT": "2",
    "EDGE_AGENT_BACKOFF_CAP": "5",
    "EDGE_AGENT_PROBE_INTERVAL": "0.5",
}


def _key(txn: dict[str, Any]) -> Key:
    return (str(txn["register_id"]), str(txn["txn_id"]))


@dataclass
class PosLedger:
    """What the POS still has to do: keys in doubt (to retry), keys given up, capture latencies.

    What it sent and what it was answered is in :class:`~storesync_harness.invariants.PosJournal`.
    """

    in_doubt: dict[Key, dict[str, Any]] = field(default_factory=dict)
    abandoned: set[Key] = field(default_factory=set)
    latencies_ms: list[float] = field(default_factory=list)
    refused: int = 0


class PosDriver:
    """Registers posting transactions to the agent from a background thread.

    Args:
        agent_url: Base URL of the agent's capture API.
        registers: How many registers (each its own txn_id series).
        interval: Seconds between posts (the POS pace).
        seed: Seed of the generated transactions.
    """

    def __init__(self, agent_url: str, *, registers: int = 2, interval: float = 0.02, seed: int = 0) -> None:
        self.agent_url = agent_url
        self.pos = [Pos(f"R{i + 1}", seed=seed) for i in range(registers)]
        self.interval = interval
        self.book = PosLedger()
        self.journal = PosJournal()
        self.measure = False
        self._lock = threading.Lock()
        self._active = threading.Event()
        self._stop = threading.Event()
        self._idle = threading.Event()
        self._idle.set()
        self._n = 0
        self._thread = threading.Thread(target=self._run, name="pos", daemon=True)
        self._client = httpx.Client(timeout=httpx.Timeout(10.0, connect=1.0))

    def start(self) -> PosDriver:
        self._thread.start()
        return self

    def resume(self) -> None:
        self._active.set()

    def pause(self, timeout: float = 15.0) -> None:
        """Stop posting and wait until the request in flight has its outcome."""
        self._active.clear()
        self._idle.wait(timeout)

    def close(self) -> None:
        self._stop.set()
        self._active.set()
        self._thread.join(15)
        self._client.close()

    def post(self, txn: dict[str, Any]) -> bool:
        """Post one transaction and book the outcome; True when the POS got a definite answer."""
        key = _key(txn)
        started = time.perf_counter()
        try:
            r = self.journal.post(self._client, self.agent_url, txn)
        except httpx.HTTPError:
            with self._lock:
                self.book.in_doubt[key] = txn
            return False
        elapsed = (time.perf_counter() - started) * 1000
        with self._lock:
            if r.status_code in (200, 201):
                self.book.in_doubt.pop(key, None)
                if self.measure:
                    self.book.latencies_ms.append(elapsed)
                return True
            if r.status_code >= 500:  # e.g. 503 while the agent shuts down: not saved, retry
                self.book.in_doubt[key] = txn
                return False
            self.book.refused += 1  # a 4xx: the POS must fix the sale; the harness never sends those
            self.book.in_doubt.pop(key, None)
            return True

    def settle(self, rng: random.Random, *, give_up: float = 0.0, timeout: float = 30.0) -> None:
        """Retry every transaction in doubt until answered; abandon a share ``give_up`` of them first."""
        with self._lock:
            pending = list(self.book.in_doubt.items())
        deadline = time.monotonic() + timeout
        for key, txn in pending:
            if rng.random() < give_up:
                with self._lock:
                    self.book.abandoned.add(key)
                    self.book.in_doubt.pop(key, None)
                continue
            while not self.post(txn):
                if time.monotonic() > deadline:
                    raise TimeoutError(f"transaction {key} still has no answer after {timeout} s")
                time.sleep(0.1)

    def _run(self) -> None:
        while not self._stop.is_set():
            if not self._active.is_set():
                self._idle.set()
                self._active.wait()
                continue
            self._idle.clear()
            if not self._active.is_set():
                continue
            with self._lock:
                retry = next(iter(self.book.in_doubt.values()), None)
            txn = retry if retry is not None else self.pos[self._n % len(self.pos)].mixed()
            self._n += 1
            if not self.post(txn):
                time.sleep(0.05)  # the agent is down: do not spin
            elif self.interval:
                time.sleep(self.interval)


class Rig:
    """Hub, proxy and agent for one store, started in ``workdir``.

    Args:
        workdir: Empty folder for the hub and agent data.
        agent_env: Extra agent environment (defaults to :data:`AGENT_ENV`).
        powercut: ``"agent"`` or ``"hub"``: run that process on the power-cut VFS
            (:mod:`storesync_harness.powercut`) once enrollment is done.
        hub_toml: The hub's sinks and delivery settings (default :data:`HUB_TOML`).
    """

    def __init__(
        self,
        workdir: Path,
        agent_env: dict[str, str] | None = None,
        powercut: str | None = None,
        hub_toml: str = HUB_TOML,
    ) -> None:
        self.workdir = workdir
        (workdir / "hub").mkdir(parents=True, exist_ok=True)
        config = workdir / "hub" / "hub.toml"
        config.write_text(hub_toml, encoding="utf-8")
        self.hub = Hub.create(workdir / "hub", None, "--log-level", "warning", "--config", str(config))
        self.hub.start()
        self.proxy = FaultProxy(upstream_port=self.hub.port, upstream_timeout=30.0).start()
        self.agent = Agent.enrolled(workdir / "agent", self.hub, STORE, "Europe/Berlin")
        self.agent.argv += ["--hub", self.proxy.url, "--sync-interval", "0.5"]
        self.agent.env.update(AGENT_ENV if agent_env is None else agent_env)
        if powercut == "hub":  # enrollment and "store add" wrote hub.db from other processes: restart on the VFS
            self.hub.stop()
            powercut_wrap(self.hub)
            self.hub.start()
        elif powercut == "agent":
            powercut_wrap(self.agent)
        self.agent.start()
        self.public_key = store_public_key(self.agent.data_dir)
        self.watcher = LedgerWatcher(STORE, self.public_key)

    def close(self) -> None:
        for stop in (self.agent.stop, self.proxy.stop, self.hub.stop):
            try:
                stop()
            except Exception:  # noqa: BLE001 - best effort teardown
                pass

    def __enter__(self) -> Rig:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def ensure_up(self) -> None:
        """Restart whatever a trial left down, and put the proxy back to ``pass``."""
        self.proxy.set_mode("pass")
        if not self.hub.running:
            self.hub.start()
        if not self.agent.running:
            self.agent.start()

    def sink_events(self) -> dict[str, list[dict[str, Any]]]:
        """Every event each of the rig's sinks received, once the hub has delivered everything."""
        wait_delivered(self.hub)
        return {name: jsonl_events(self.hub.data_dir / path) for name, path in SINK_FILES.items()}

    def full_check(self, journal: PosJournal) -> Verdict:
        """The whole ledger again from genesis, every sink, and ``edge-agent verify``, against ``journal``."""
        fresh = LedgerWatcher(STORE, self.public_key)
        fresh.update(self.hub)
        verdict = judge(fresh, journal, sinks=self.sink_events())
        verdict.agent_verify_ok, text = agent_verify(self.agent.data_dir)
        if not verdict.agent_verify_ok:
            verdict.note(f"edge-agent verify: {text}")
        return verdict

    def agent_status(self) -> dict[str, Any]:
        return dict(httpx.get(self.agent.url + "/v1/status", timeout=10).json())

    def wait_synced(self, timeout: float = 60.0) -> dict[str, Any]:
        """Wait until the running agent has nothing pending; nudges a sync now and then."""
        deadline = time.monotonic() + timeout
        last_nudge = 0.0
        st: dict[str, Any] = {}
        while time.monotonic() < deadline:
            st = self.agent_status()
            if st["pending"] == 0 and st["acked_through"] == st["last_seq"]:
                return st
            if st.get("blocked"):
                raise AssertionError(f"agent blocked: {st['blocked']}")
            if time.monotonic() - last_nudge > 5:
                httpx.post(self.agent.url + "/v1/sync", json={}, timeout=10)
                last_nudge = time.monotonic()
            time.sleep(0.05)
        raise TimeoutError(f"agent not synced after {timeout} s: {st}")

    def wait_upstream_request(self, timeout: float = 5.0) -> bool:
        """Wait until the proxy forwards a new request to the hub (a burst or a probe is in flight)."""
        start = self.proxy.stats()["upstream_requests"]
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proxy.stats()["upstream_requests"] > start:
                return True
            time.sleep(0.002)
        return False

    def wait_fault(self, kind: str, before: int, timeout: float = 10.0) -> bool:
        """Wait until the proxy has injected more than ``before`` faults of ``kind``."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proxy.stats()["faults"].get(kind, 0) > before:
                return True
            time.sleep(0.002)
        return False
