"""The crash matrix and the proxy-fault trials: break things at random points, then check the promise.

Each trial runs on one long-lived :class:`~storesync_harness.rig.Rig` (so 200 trials fit in minutes):
the POS posts sales, the fault strikes, whatever was killed is restarted, the POS retries what got no
answer (and abandons a few, as a register that gave up would), the agent catches up, and the
content invariants (:mod:`storesync_harness.invariants`) are checked against every POS call since the
rig started; at the end the whole ledger is checked again from genesis, with every sink's events.

Crash kinds (SIGKILL: the process dies but the operating system keeps its page cache, so this is not a
power cut; :mod:`storesync_harness.powercut` simulates those):

- ``agent_kill_capture``: the agent, at a random moment while the POS is posting;
- ``agent_kill_mid_burst``: the agent, just after the proxy forwarded a burst to the hub;
- ``agent_kill_after_commit``: the proxy swallows the hub's answer to a burst (``after_commit_drop``:
  the hub committed) and the agent is killed before it could learn anything;
- ``hub_kill``: the hub, just after a burst reached it; restarted after a random pause;
- ``both_kill``: the hub and the agent at once.

Proxy kinds (no process dies): ``drop``, ``stall``, ``reset_mid_response``, ``truncate_body``,
``http_5xx_storm``, ``after_commit_drop``, ``refuse`` and ``random`` (a seeded mix).
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .invariants import Verdict, agent_verify, judge
from .rig import PosDriver, Rig

log = logging.getLogger(__name__)

CRASH_KINDS = (
    "agent_kill_capture",
    "agent_kill_mid_burst",
    "agent_kill_after_commit",
    "hub_kill",
    "both_kill",
)
PROXY_KINDS = (
    "drop",
    "stall",
    "reset_mid_response",
    "truncate_body",
    "http_5xx_storm",
    "after_commit_drop",
    "refuse",
    "random",
)
BURSTS = "/v1/bursts"


@dataclass
class KindTally:
    """Trials of one kind and what they found (counts are per trial, summed)."""

    trials: int = 0
    faults_injected: int = 0
    failed_trials: int = 0
    seconds: float = 0.0


@dataclass
class MatrixResult:
    """Everything a matrix run learnt; ``final`` is the full re-check at the end."""

    tallies: dict[str, KindTally] = field(default_factory=dict)
    final: Verdict = field(default_factory=Verdict)
    failures: list[str] = field(default_factory=list)
    seconds: float = 0.0
    seed: int = 0
    in_doubt_seen: int = 0
    abandoned: int = 0

    @property
    def trials(self) -> int:
        return sum(t.trials for t in self.tallies.values())

    @property
    def ok(self) -> bool:
        return self.final.ok and not self.failures


def _kill_agent_soon(rig: Rig, rng: random.Random) -> None:
    time.sleep(rng.uniform(0.0, 0.25))
    rig.agent.kill()


def _agent_mid_burst(rig: Rig, rng: random.Random) -> None:
    rig.wait_upstream_request(timeout=3.0)
    time.sleep(rng.uniform(0.0, 0.02))
    rig.agent.kill()


def _agent_after_commit(rig: Rig, rng: random.Random) -> int:
    before = rig.proxy.stats()["faults"]["after_commit_drop"]
    rig.proxy.set_mode("after_commit_drop", path_prefix=BURSTS, count=1, rst=rng.random() < 0.5)
    hit = rig.wait_fault("after_commit_drop", before, timeout=5.0)
    rig.agent.kill()
    return int(hit)


def _hub_kill(rig: Rig, rng: random.Random, *, agent_too: bool = False) -> None:
    rig.wait_upstream_request(timeout=3.0)
    time.sleep(rng.uniform(0.0, 0.03))
    rig.hub.kill()
    if agent_too:
        rig.agent.kill()
    time.sleep(rng.uniform(0.0, 0.8))  # the POS keeps selling while the hub is down


def crash_trial(rig: Rig, kind: str, rng: random.Random) -> int:
    """Inflict one crash of ``kind``; returns the number of faults injected (1 when it struck)."""
    if kind == "agent_kill_capture":
        _kill_agent_soon(rig, rng)
    elif kind == "agent_kill_mid_burst":
        _agent_mid_burst(rig, rng)
    elif kind == "agent_kill_after_commit":
        return _agent_after_commit(rig, rng)
    elif kind == "hub_kill":
        _hub_kill(rig, rng)
    elif kind == "both_kill":
        _hub_kill(rig, rng, agent_too=True)
    else:
        raise ValueError(f"unknown crash kind {kind!r}")
    return 1


PROXY_PARAMS: dict[str, dict[str, Any]] = {
    "drop": {"count": 3},
    "stall": {"count": 1},  # the agent's read timeout (3 s in the rig) ends it
    "reset_mid_response": {"count": 3},
    "truncate_body": {"count": 3},
    "http_5xx_storm": {"count": 4, "statuses": [500, 502, 503], "retry_after": 1},
    "after_commit_drop": {"count": 3},
    "refuse": {"count": 3},
}


def proxy_trial(rig: Rig, kind: str, rng: random.Random) -> int:
    """Switch the proxy to a fault mode for a few bursts while the POS posts; returns faults injected."""
    before = sum(rig.proxy.stats()["faults"].values())
    if kind == "random":
        probabilities = {
            "refuse": 0.05,
            "drop": 0.1,
            "reset_mid_response": 0.1,
            "truncate_body": 0.1,
            "after_commit_drop": 0.1,
            "http_5xx_storm": 0.1,
        }
        rig.proxy.set_mode("random", path_prefix=BURSTS, probabilities=probabilities, seed=rng.randrange(1 << 30))
        time.sleep(rng.uniform(1.0, 2.0))
    else:
        params = dict(PROXY_PARAMS[kind])
        if kind != "refuse":
            params["path_prefix"] = BURSTS
        rig.proxy.set_mode(kind, **params)
        deadline = time.monotonic() + 12.0
        while rig.proxy.mode.mode != "pass" and time.monotonic() < deadline:
            time.sleep(0.02)
    rig.proxy.set_mode("pass")
    return sum(rig.proxy.stats()["faults"].values()) - before


def _settle_and_check(
    rig: Rig, pos: PosDriver, rng: random.Random, *, give_up: float, verify: bool, timeout: float
) -> Verdict:
    pos.pause()
    rig.ensure_up()
    pos.settle(rng, give_up=give_up)
    rig.wait_synced(timeout=timeout)
    rig.watcher.update(rig.hub)
    verdict = judge(rig.watcher, pos.journal)
    if verify:
        verdict.agent_verify_ok, text = agent_verify(rig.agent.data_dir)
        if not verdict.agent_verify_ok:
            verdict.note(f"edge-agent verify: {text}")
    return verdict


def run_matrix(
    workdir: Path,
    *,
    crash_trials: int,
    proxy_rounds: int = 1,
    seed: int = 0,
    verify_every: int = 10,
    give_up: float = 0.2,
    progress: Callable[[str], None] | None = None,
) -> MatrixResult:
    """Run ``crash_trials`` crash trials (kinds in rotation) and every proxy kind ``proxy_rounds`` times.

    Args:
        workdir: Empty folder for the rig.
        crash_trials: Number of crash trials.
        proxy_rounds: Rounds over all :data:`PROXY_KINDS`.
        seed: Seeds the timing choices and the POS, for a replay.
        verify_every: Run ``edge-agent verify`` every this many trials (and always at the end).
        give_up: Share of in-doubt transactions the POS abandons instead of retrying.
        progress: Called with one line per trial.
    """
    rng = random.Random(seed)
    result = MatrixResult(seed=seed)
    plan = [(k, "proxy") for _ in range(proxy_rounds) for k in PROXY_KINDS]
    plan += [(CRASH_KINDS[i % len(CRASH_KINDS)], "crash") for i in range(crash_trials)]
    started = time.monotonic()
    with Rig(workdir) as rig:
        pos = PosDriver(rig.agent.url, interval=0.02, seed=seed).start()
        try:
            for n, (kind, family) in enumerate(plan, 1):
                t0 = time.monotonic()
                tally = result.tallies.setdefault(kind, KindTally())
                pos.resume()
                time.sleep(rng.uniform(0.05, 0.3))
                doubt_before = len(pos.book.in_doubt)
                try:
                    if family == "crash":
                        injected = crash_trial(rig, kind, rng)
                    else:
                        injected = proxy_trial(rig, kind, rng)
                    time.sleep(rng.uniform(0.0, 0.2))
                    result.in_doubt_seen += max(0, len(pos.book.in_doubt) - doubt_before)
                    verdict = _settle_and_check(
                        rig, pos, rng, give_up=give_up, verify=n % verify_every == 0, timeout=90.0
                    )
                except Exception as exc:  # a trial that cannot even finish is a failure, not a crash of the run
                    log.exception("trial %d (%s) failed", n, kind)
                    result.failures.append(f"trial {n} {kind}: {type(exc).__name__}: {exc}")
                    tally.failed_trials += 1
                    pos.pause()
                    rig.ensure_up()
                    continue
                tally.trials += 1
                tally.faults_injected += injected
                tally.seconds += time.monotonic() - t0
                if not verdict.ok:
                    tally.failed_trials += 1
                    result.failures.append(f"trial {n} {kind} (seed {seed}): " + "; ".join(verdict.details))
                if progress is not None:
                    progress(
                        f"trial {n:3d}/{len(plan)} {kind:24s} ack {verdict.acknowledged:6d} found {verdict.found:6d} "
                        f"lost {verdict.lost} dup {verdict.duplicated} content {verdict.mismatched} "
                        f"chain {verdict.chain_errors} sig {verdict.bad_signatures} "
                        f"{time.monotonic() - t0:5.1f}s"
                    )
            pos.pause()
            rig.ensure_up()
            rig.wait_synced(timeout=90.0)
            result.final = rig.full_check(pos.journal)  # the whole ledger again from genesis, and every sink
            result.abandoned = len(pos.book.abandoned)
        finally:
            pos.close()
    result.seconds = time.monotonic() - started
    return result
