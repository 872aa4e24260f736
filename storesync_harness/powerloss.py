"""Power-cut trials: the agent or the hub runs on the power-cut VFS, the power goes at random points.

Each trial, on one long-lived :class:`~storesync_harness.rig.Rig`:

1. the target process runs with a trigger armed (:mod:`storesync_harness.powercut`); the point is
   taken in rotation from :data:`AGENT_POINTS` / :data:`HUB_POINTS`: ``kill`` (SIGKILL at a random
   moment: every un-synced write is lost), ``mid_commit`` (before the N-th WAL write), ``after_commit``
   (right after the N-th WAL sync: durable, but the answer never leaves), ``checkpoint`` (before the
   N-th write to the database file) and, for the agent, ``retention`` (a write of the pruning job).
   The hub also dies at exact places (:data:`HUB_KILL_POINTS`: between a burst's ledger commit and
   its answer, between deferred event derivation and delivery, and between a sink call and the
   record of its outcome); its rig derives every burst's events after the ingest (``inline_max = 0``)
   so the second place exists.
   The trigger lands a random subset of the pending writes and tears the last one;
2. the POS posts sales (through the proxy, the hub is unreachable during half of the agent trials,
   so the outbox alone must hold what was acknowledged) until the cut, or SIGKILL after a while;
3. with the target dead, the durability check:
   - agent: every sale answered 201/200 is in the outbox files as they survived, or already in the
     hub ledger, with the content the POS sent; ``edge-agent verify`` passes on those files;
   - hub: the agent's ``acked_through`` (learnt only from signed receipts) is not beyond what the
     hub's ledger holds after the cut: a receipt is signed only for what survives;
4. the target restarts (it must), the POS retries what got no answer, the agent catches up, and the
   content invariants are checked against every POS call so far.

At the end the whole ledger is checked again from genesis with every sink's events. ``sync_off``
is the control: the same trials with ``synchronous=OFF`` must lose acknowledged sales (agent) or
sign receipts beyond the surviving ledger (hub), or the harness is not sensitive enough.
"""

from __future__ import annotations

import json
import logging
import random
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from edge_agent.store import Outbox

from .invariants import PosJournal, Verdict, agent_verify, canonical_digest, judge, sent_digest, txn_key
from .powercut import Spec, Trigger, arm, start_armed, tally_cut
from .rig import AGENT_ENV, HUB_TOML, STORE, PosDriver, Rig

log = logging.getLogger(__name__)

AGENT_POINTS = ("kill", "mid_commit", "after_commit", "checkpoint", "retention")
HUB_POINTS = ("kill", "mid_commit", "after_commit", "checkpoint", "ingest_commit", "derived", "delivering")
# The hub points that are kill -9 at an exact place (nothing is pending when they strike):
# after a burst's ledger commit before its answer, after deferred event derivation before delivery,
# and after a sink call before its outcome is recorded.
HUB_KILL_POINTS = ("ingest_commit", "derived", "delivering")
POWER_ENV = {
    **AGENT_ENV,
    "EDGE_AGENT_RETENTION_DAYS": "0",  # prune every receipted record: retention runs all the time
    "EDGE_AGENT_RETENTION_INTERVAL": "1",
}


@dataclass
class PowerResult:
    """What a power-cut run found.

    Attributes:
        target: ``"agent"`` or ``"hub"``.
        sync_off: The control (``synchronous=OFF``).
        cuts: Power cuts (trigger or SIGKILL).
        points: Cuts per point; ``<point>:missed`` when the trigger was not reached and SIGKILL cut instead.
        torn: Cuts that landed a torn write.
        acknowledged_at_cuts: Sum over cuts of the sales acknowledged so far.
        lost_at_cut: Acknowledged sales missing (agent: from the surviving outbox and the hub) after a cut.
        mismatched_at_cut: Surviving records whose content is not what the POS sent.
        receipts_beyond: Hub cuts after which the agent held a receipt beyond the surviving ledger.
        verify_failed: Cuts after which ``edge-agent verify`` failed on the surviving files.
        restart_failed: Cuts after which the target did not start.
        final: The full content check at the end (None for the control, which stops early).
    """

    target: str
    sync_off: bool = False
    cuts: int = 0
    points: Counter[str] = field(default_factory=Counter)
    torn: int = 0
    landed: int = 0
    dropped: int = 0
    acknowledged_at_cuts: int = 0
    lost_at_cut: int = 0
    mismatched_at_cut: int = 0
    receipts_beyond: int = 0
    verify_failed: int = 0
    restart_failed: int = 0
    final: Verdict | None = None
    failures: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def durable(self) -> bool:
        """Nothing acknowledged was lost at any cut, nothing signed beyond what survived."""
        return not (self.lost_at_cut or self.mismatched_at_cut or self.receipts_beyond)

    @property
    def ok(self) -> bool:
        healthy = not (self.verify_failed or self.restart_failed or self.failures)
        return self.durable and healthy and (self.final is None or self.final.ok)

    def lines(self) -> list[str]:
        label = f"power cuts on the {self.target}" + (" (control: synchronous=OFF)" if self.sync_off else "")
        out = [f"{label}: {self.cuts} cuts in {self.seconds:.0f} s"]
        out.append("  points: " + ", ".join(f"{k} {v}" for k, v in sorted(self.points.items())))
        out.append(
            f"  un-synced writes at trigger cuts: landed {self.landed}, dropped {self.dropped}; "
            f"cuts with a torn write {self.torn}"
        )
        out.append(f"  acknowledged at the cuts (summed) {self.acknowledged_at_cuts}")
        out.append(f"  lost at a cut {self.lost_at_cut}, content mismatches {self.mismatched_at_cut}")
        if self.target == "hub":
            out.append(f"  receipts beyond the surviving ledger {self.receipts_beyond}")
        out.append(f"  verify failed {self.verify_failed}, restart failed {self.restart_failed}")
        if self.final is not None:
            out.append("  final: " + self.final.counts())
            out += [f"  {line}" for line in self.final.event_lines()]
        return out


def _spec(point: str, rng: random.Random, *, sync_off: bool, report: Path, target: str) -> Spec:
    seed = rng.randrange(1 << 30)
    triggers = {
        "kill": None,
        "mid_commit": Trigger("wal", "write", rng.randrange(0, 60)),
        "after_commit": Trigger("wal", "sync", rng.randrange(0, 20)),
        "checkpoint": Trigger("db", "write", rng.randrange(0, 40)),
        "retention": Trigger("any", "write", rng.randrange(0, 4), phase="retention"),
        "ingest_commit": Trigger("wal", "sync", rng.randrange(0, 6), phase="ingest"),
        "derived": Trigger("wal", "sync", rng.randrange(0, 3), phase="derive"),
        "delivering": Trigger("wal", "write", rng.randrange(0, 3), phase="deliver"),
    }
    mode = "drop" if point in HUB_KILL_POINTS or rng.random() < 0.25 else "subset"
    return Spec(triggers[point], mode, seed, str(report), sync_off, autocheckpoint=48)


def _wait_exit(proc: Any, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return True
        time.sleep(0.01)
    return False


def _outbox_bodies(db: Path) -> list[str]:
    """Every record body in the outbox files as they survived (read with plain SQLite, no VFS)."""
    with Outbox(db, create=False, durable=False) as ob:
        return [r.body for r in ob.pending(0, 10_000_000)]


def _hub_bodies(rig: Rig) -> list[str]:
    return [r["body"] for r in rig.hub.ledger(STORE)]


def _survivors(journal: PosJournal, bodies: list[str]) -> tuple[int, int, int]:
    """(acknowledged, lost, mismatched) of the journal against surviving record bodies."""
    held: dict[tuple[str, str], set[bytes]] = {}
    for body in bodies:
        txn = json.loads(body)["txn"]
        held.setdefault(txn_key(txn), set()).add(canonical_digest(txn))
    acked = journal.acknowledged
    lost = mismatched = 0
    for key, sent in acked.items():
        got = held.get(key)
        if not got:
            lost += 1
        elif sent_digest(sent) not in got:
            mismatched += 1
    return len(acked), lost, mismatched


def _cut_target(rig: Rig, target: str, rng: random.Random, point: str, result: PowerResult) -> None:
    service = rig.agent if target == "agent" else rig.hub
    if service.proc is None:  # the cut came during start-up
        result.points[point] += 1
        result.cuts += 1
        return
    wait = rng.uniform(0.2, 1.0) if point == "kill" else 6.0
    went_down = _wait_exit(service.proc, wait)
    if not went_down:
        service.kill()
    else:
        service.proc = None
    tally_cut(result.points, point, went_down=went_down)
    result.cuts += 1


def _agent_trial(rig: Rig, pos: PosDriver, rng: random.Random, point: str, spec: Spec, result: PowerResult) -> None:
    rig.agent.stop()  # graceful: the OS writes everything back
    offline = spec.sync_off or rng.random() < 0.5  # offline: the outbox alone holds what was acknowledged
    rig.proxy.set_mode("refuse" if offline else "pass")
    if start_armed(rig.agent, spec):
        pos.resume()
    _cut_target(rig, "agent", rng, point, result)
    pos.pause()
    rig.proxy.set_mode("pass")
    surviving = _outbox_bodies(rig.agent.data_dir / "outbox.db") + _hub_bodies(rig)
    acked, lost, mismatched = _survivors(pos.journal, surviving)
    result.acknowledged_at_cuts += acked
    result.lost_at_cut += lost
    result.mismatched_at_cut += mismatched
    ok, text = agent_verify(rig.agent.data_dir)
    if not ok:
        result.verify_failed += 1
        result.failures.append(f"verify after a {point} cut: {text[-300:]}")


def _hub_head(rig: Rig) -> int:
    try:
        streams = rig.hub.admin(f"/v1/admin/stores/{STORE}")["streams"]
    except httpx.HTTPStatusError:
        return 0
    return max((int(s["acked_through"]) for s in streams if s["epoch"] == 1), default=0)


def _hub_trial(rig: Rig, pos: PosDriver, rng: random.Random, point: str, spec: Spec, result: PowerResult) -> None:
    rig.hub.stop()
    if start_armed(rig.hub, spec):
        pos.resume()
    _cut_target(rig, "hub", rng, point, result)
    rig.proxy.set_mode("refuse")  # the agent must not refill the hub before its head is read
    time.sleep(0.3)
    pos.pause()
    agent_acked = int(rig.agent_status()["acked_through"])
    arm(rig.hub, Spec(None, seed=0, sync_off=spec.sync_off))
    try:
        rig.hub.start()
    except RuntimeError as exc:
        result.restart_failed += 1
        result.failures.append(f"hub did not start after a {point} cut: {exc}")
        return
    head = _hub_head(rig)
    result.acknowledged_at_cuts += agent_acked
    if head < agent_acked:
        result.receipts_beyond += 1
        result.failures.append(f"{point}: agent holds a receipt for seq {agent_acked}, the hub kept {head}")
    rig.proxy.set_mode("pass")


def run_power_cuts(
    workdir: Path,
    *,
    target: str,
    cuts: int,
    seed: int = 0,
    sync_off: bool = False,
    only: tuple[str, ...] = (),
    progress: Callable[[str], None] | None = None,
) -> PowerResult:
    """Run ``cuts`` power cuts on ``target`` (``"agent"`` or ``"hub"``) and check what survives.

    ``only`` limits the points (in rotation) to these. With ``sync_off`` (the control) the run stops
    after the cuts' durability checks: the point is to see acknowledged sales lost, after which the
    agent and the hub disagree and catch-up is moot.
    """
    rng = random.Random(seed)
    result = PowerResult(target=target, sync_off=sync_off)
    points = tuple(only) if only else AGENT_POINTS if target == "agent" else HUB_POINTS
    report = workdir / "powercut-report.jsonl"
    workdir.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    hub_toml = HUB_TOML.replace("poll_s = 0.2", "poll_s = 0.2\ninline_max = 0") if target == "hub" else HUB_TOML
    with Rig(workdir, agent_env=dict(POWER_ENV), powercut=target, hub_toml=hub_toml) as rig:
        pos = PosDriver(rig.agent.url, interval=0.02, seed=seed).start()
        try:
            for n in range(cuts):
                point = points[n % len(points)]
                spec = _spec(point, rng, sync_off=sync_off, report=report, target=target)
                t0 = time.monotonic()
                try:
                    if target == "agent":
                        _agent_trial(rig, pos, rng, point, spec, result)
                        arm(rig.agent, Spec(None, seed=0, sync_off=sync_off))
                        try:
                            rig.agent.start()
                        except RuntimeError as exc:
                            result.restart_failed += 1
                            result.failures.append(f"agent did not start after a {point} cut: {exc}")
                            break
                    else:
                        _hub_trial(rig, pos, rng, point, spec, result)
                    if sync_off:
                        continue
                    pos.settle(rng, give_up=0.1)
                    rig.wait_synced(timeout=90.0)
                    rig.watcher.update(rig.hub)
                    verdict = judge(rig.watcher, pos.journal)
                    if not verdict.ok:
                        result.failures.append(f"cut {n + 1} {point}: " + "; ".join(verdict.details))
                except Exception as exc:  # a trial that cannot finish is a failure, not a crash of the run
                    log.exception("power cut %d (%s) failed", n + 1, point)
                    result.failures.append(f"cut {n + 1} {point}: {type(exc).__name__}: {exc}")
                    pos.pause()
                    rig.proxy.set_mode("pass")
                    if not sync_off:
                        arm(rig.agent, Spec(None))
                        arm(rig.hub, Spec(None))
                        rig.ensure_up()
                if progress is not None:
                    progress(
                        f"power cut {n + 1:3d}/{cuts} {target} {point:12s} acked {len(pos.journal.acknowledged):6d} "
                        f"lost {result.lost_at_cut} beyond {result.receipts_beyond} {time.monotonic() - t0:5.1f}s"
                    )
            if not sync_off:
                pos.pause()
                rig.ensure_up()
                pos.settle(rng)
                rig.wait_synced(timeout=90.0)
                if target == "agent":  # no other process may open a file the VFS holds writes of (docs/faults.md)
                    rig.agent.stop()
                result.final = rig.full_check(pos.journal)
        finally:
            pos.close()
    if report.exists():
        for line in report.read_text().splitlines():
            doc = json.loads(line)
            result.torn += int(any(f["torn"] for f in doc["files"].values()))
            result.landed += sum(f["landed"] for f in doc["files"].values())
            result.dropped += sum(f["pending"] - f["landed"] for f in doc["files"].values())
    result.seconds = time.monotonic() - started
    return result
