"""Drop-import fault trials: a file dropped into a running agent, the agent killed (or its power cut) mid-import.

Each trial writes a case (:mod:`storesync_harness.dropcases`: N transactions, mixed sales, returns
and voids, a few bad rows, one of the three formats) and renames it into the agent's drop folder.
Kill trials (one long-lived :class:`~storesync_harness.rig.Rig`) then ``kill -9`` the agent 0-3
times at seeded random moments of the import, each time in one of three ways (:data:`KILL_STYLES`):
the agent alone (its reader worker processes notice and exit), the agent and its worker processes
at once, or the workers first and the agent a moment later; the agent is restarted after each
kill. In some trials the hub is down from the drop until the import is finished. Power trials (the
agent on the power-cut VFS, :mod:`storesync_harness.powercut`) cut the power 1-3 times instead
(SIGKILL with the un-synced pages lost, before a WAL write, after a WAL sync, before a checkpoint
write); after each cut, if the file was already acknowledged (its ``result.json`` and the file were
in ``processed/``), every good row must be in the outbox as it survived (or at the hub).

Then the import finishes and syncs, and the content is checked (``_Trials.check_case``; the sinks and
``edge-agent verify`` over everything in the rig's final check, and ``verify`` after every power cut):

- every good row of the file is in the hub ledger exactly once, its transaction's canonical JSON is
  the reference's, nothing else is there, chain and signatures are valid, every record has exactly
  one event in each jsonl sink with that transaction (:func:`~storesync_harness.invariants.judge`
  over a journal holding the reference of every acknowledged file); ``edge-agent verify`` passes;
- ``rejected/<file>.errors.jsonl`` names each bad row's line and field exactly once, with a reason;
- the file is in ``processed/`` exactly once (same bytes, nowhere else), its ``result.json`` counts
  are the reference's (accepted = good rows, 0 duplicates, rejected = bad rows);
- a second drop of the same bytes is answered ``duplicate_file`` and adds nothing to the outbox.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import random
import shutil
import signal
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from edge_agent.store import Outbox

from .dropcases import FORMATS, SUFFIX, DropCase, write_case
from .invariants import PosJournal, Verdict, agent_verify, canonical_digest, judge
from .powercut import Spec, Trigger, arm, start_armed, tally_cut
from .rig import AGENT_ENV, Rig

log = logging.getLogger(__name__)

KILL_STYLES = ("agent", "agent+workers", "workers-then-agent")
POWER_POINTS = ("kill", "mid_commit", "after_commit", "checkpoint")
BYTES_PER_TXN = {"jsonl": 345, "csv_canonical": 142, "shopify_csv": 456}
DONE_TIMEOUT_S = 300.0


@dataclass
class DropRunResult:
    """What a run of drop trials found (the figures of the report).

    Attributes:
        trials / power_trials: Trials run, of which on the power-cut VFS.
        files_acknowledged: Files whose import said imported (``result.json`` in ``processed/``).
        rows_acknowledged: Good rows of those files (each must be at the hub once).
        bad_rows: Bad rows injected (each must be reported once, and not stored).
        kills / kills_mid_import: Agent kills, and of those the ones that struck while the import ran.
        worker_kills: Kills that also struck reader worker processes (and how many processes).
        hub_down: Trials with the hub down (kill trials) or unreachable (power trials) during the import.
        cuts / cut_points: Power cuts, per point (``<point>:missed``: the trigger was not reached).
        lost_at_cut / mismatched_at_cut: Rows of an acknowledged file missing from, or different in,
            what survived a power cut.
        formats: Trials per format.
        failures: Every broken invariant, per trial.
        final: The whole ledger from genesis, every sink and ``edge-agent verify`` at the end of each rig.
    """

    seed: int = 0
    trials: int = 0
    power_trials: int = 0
    files_acknowledged: int = 0
    rows_acknowledged: int = 0
    bad_rows: int = 0
    kills: int = 0
    kills_mid_import: int = 0
    worker_kills: int = 0
    worker_processes_killed: int = 0
    duplicate_drops: int = 0
    hub_down: int = 0
    cuts: int = 0
    cut_points: Counter[str] = field(default_factory=Counter)
    lost_at_cut: int = 0
    mismatched_at_cut: int = 0
    formats: Counter[str] = field(default_factory=Counter)
    rows: Counter[str] = field(default_factory=Counter)  # per-trial rows lost / duplicated / mismatched / bad_stored
    failures: list[str] = field(default_factory=list)
    final: list[Verdict] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return (
            not self.failures and not self.lost_at_cut and not self.mismatched_at_cut and all(v.ok for v in self.final)
        )

    def totals(self) -> dict[str, int]:
        """lost / duplicated / mismatched / unexpected summed over the final checks."""
        return {
            name: sum(getattr(v, name) for v in self.final)
            for name in ("lost", "duplicated", "mismatched", "unexpected", "chain_errors", "bad_signatures")
        }

    def lines(self) -> list[str]:
        t = self.totals()
        out = [
            f"drop-import trials: {self.trials} trials ({self.power_trials} on the power-cut VFS) "
            f"in {self.seconds:.0f} s (seed {self.seed})",
            "  formats: " + ", ".join(f"{k} {v}" for k, v in sorted(self.formats.items())),
            f"  files acknowledged {self.files_acknowledged}, good rows acknowledged {self.rows_acknowledged}, "
            f"bad rows {self.bad_rows}",
            f"  agent kills {self.kills} ({self.kills_mid_import} mid-import), with worker processes "
            f"{self.worker_kills} ({self.worker_processes_killed} processes), trials with the hub down {self.hub_down}",
            "  power cuts "
            + f"{self.cuts}: "
            + (", ".join(f"{k} {v}" for k, v in sorted(self.cut_points.items())) or "none"),
            f"  lost at a cut {self.lost_at_cut}, content mismatches at a cut {self.mismatched_at_cut}",
            f"  second drops answered duplicate_file {self.duplicate_drops}",
            f"  per trial, good rows lost {self.rows['lost']}, duplicated {self.rows['duplicated']}, "
            f"content mismatches {self.rows['mismatched']}; bad rows stored {self.rows['bad_stored']}",
            f"  final: lost {t['lost']}, duplicated {t['duplicated']}, content mismatches {t['mismatched']}, "
            f"unexpected {t['unexpected']}, chain errors {t['chain_errors']}, bad signatures {t['bad_signatures']}",
        ]
        for v in self.final:
            out += [f"  {line}" for line in v.event_lines()]
            out.append(f"  edge-agent verify {'OK' if v.agent_verify_ok else 'FAILED'}")
        out += [f"  ! {f}" for f in self.failures[:20]]
        for v in self.final:
            out += [f"  ! {d}" for d in v.details[:10]]
        return out


# ----------------------------------------------------------------------------------- processes


def _descendants(pid: int) -> list[tuple[int, int]]:
    """Every process below ``pid`` with its depth: 1 the fork server and resource tracker, 2 the pool's workers."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", encoding="ascii", errors="replace") as f:
                stat = f.read()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(entry))
    out: list[tuple[int, int]] = []
    todo = [(pid, 0)]
    while todo:
        parent, depth = todo.pop()
        for child in children.get(parent, []):
            out.append((child, depth + 1))
            todo.append((child, depth + 1))
    return out


def _sigkill(pids: list[tuple[int, int]]) -> int:
    """SIGKILL each process; returns how many of them were reader workers (depth 2 and below)."""
    n = 0
    for pid, depth in pids:
        try:
            os.kill(pid, signal.SIGKILL)
            n += depth >= 2
        except ProcessLookupError:
            pass
    return n


# ----------------------------------------------------------------------------------- one trial


class _Trials:
    """The state shared by the trials of one rig."""

    def __init__(self, rig: Rig, drop: Path, result: DropRunResult, rng: random.Random) -> None:
        self.rig, self.drop, self.result, self.rng = rig, drop, result, rng
        self.journal = PosJournal()
        self.rate = 8000.0  # rows/s of an import, learnt as trials finish (to pick kill moments)

    # -- the import's progress, as the agent and the folders show it

    def imports(self) -> list[dict[str, Any]]:
        return list(httpx.get(self.rig.agent.url + "/v1/imports", timeout=10).json()["imports"])

    def acknowledged(self, name: str) -> dict[str, Any] | None:
        """The file's ``result.json`` once the file and it are in ``processed/`` (the import said imported)."""
        res = self.drop / "processed" / f"{name}.result.json"
        if not (self.drop / "processed" / name).is_file() or not res.is_file():
            return None
        try:
            return dict(json.loads(res.read_text(encoding="utf-8")))
        except (OSError, ValueError):
            return None

    def wait_done(self, name: str, timeout: float = DONE_TIMEOUT_S) -> tuple[dict[str, Any], list[str]]:
        """Wait until the file is acknowledged and its import row is finished.

        Returns the ``result.json`` and the problems: a file acknowledged whose import row still
        runs (it never finishes) is checked all the same, as acknowledged.

        Raises:
            TimeoutError: the file was never acknowledged.
        """
        deadline = time.monotonic() + timeout
        doc = None
        while time.monotonic() < deadline:
            doc = self.acknowledged(name)
            if doc is not None and not any(r["status"] == "running" for r in self.imports()):
                return doc, []
            time.sleep(0.1)
        if doc is not None:
            return doc, [
                f"{name} is in processed/ with its result.json, but its import still runs after {timeout:.0f} s"
            ]
        raise TimeoutError(f"{name} not imported after {timeout:.0f} s; imports: {self.imports()[:1]}")

    def stored_rows(self) -> int:
        """Rows the running import has committed (its checkpoint), 0 when none runs."""
        try:
            running = [r for r in self.imports() if r["status"] == "running"]
        except httpx.HTTPError:
            return 0
        return int(running[0]["rows"]) if running else 0

    def remaining_rows(self, case: DropCase) -> int:
        return max(0, case.rows - self.stored_rows())

    def seconds_left(self, case: DropCase) -> float:
        """The import's expected remaining time: start-up (the watcher's settle and poll, or the resume) and rows."""
        return 0.6 + self.remaining_rows(case) / self.rate

    # -- kills

    def kill(self, case: DropCase) -> None:
        """kill -9 the agent (and maybe its workers) at a random moment of the import, then restart it.

        The moment: 70 % of the time a random time within the import's expected remaining duration
        (learnt from the trials so far), else once the import has committed a random share of the
        file's rows (its checkpoint, as ``GET /v1/imports`` shows it) plus 0-250 ms; so kills strike
        while a chunk is read, signed or committed, between chunks, at start-up and while the
        finished file is being moved.
        """
        agent = self.rig.agent
        if self.rng.random() < 0.7:  # at a random time of the import's expected duration (commits are 4,000 rows)
            target, deadline = float("inf"), time.monotonic() + self.rng.uniform(0.1, self.seconds_left(case))
        else:
            target, deadline = self.rng.uniform(-0.1, 1.0) * case.rows, time.monotonic() + DONE_TIMEOUT_S
        while time.monotonic() < deadline and self.acknowledged(case.path.name) is None:
            if self.stored_rows() >= target:
                time.sleep(self.rng.uniform(0.0, 0.25))
                break
            time.sleep(0.02)
        style = self.rng.choice(KILL_STYLES)
        assert agent.proc is not None
        mid = self.acknowledged(case.path.name) is None
        workers = _descendants(agent.proc.pid)
        if style == "agent":
            agent.kill()
        else:
            n = _sigkill(workers)
            if n:
                self.result.worker_kills += 1
                self.result.worker_processes_killed += n
            if style == "workers-then-agent":
                time.sleep(self.rng.uniform(0.0, 0.5))
            agent.kill()
        self.result.kills += 1
        self.result.kills_mid_import += int(mid)
        agent.start()

    # -- the checks

    def check_case(self, trial: int, case: DropCase, doc: dict[str, Any], *, verify: bool = False) -> list[str]:
        """Every invariant of one finished trial; returns the problems (empty: it held)."""
        problems: list[str] = []
        name = case.path.name
        problems += _check_folders(self.drop, case)
        problems += _check_result(doc, case)
        problems += _check_errors(self.drop / "rejected" / f"{name}.errors.jsonl", case)
        for text in case.expected.values():
            self.journal.record(text, 201)
        self.rig.watcher.update(self.rig.hub)
        held = self.rig.watcher.held
        tally: Counter[str] = Counter()
        first: dict[str, str] = {}
        for key, text in case.expected.items():
            got = held.get(key, [])
            what = "lost" if not got else "duplicated" if len(got) > 1 else ""
            if not what and got[0].txn_digest != canonical_digest(json.loads(text)):
                what = "mismatched"
            if what:
                tally[what] += 1
                first.setdefault(what, f"{key[0]}/{key[1]}")
        stored_bad = [f"{k[0]}/{k[1]}" for k in case.bad_keys if k in held]
        if stored_bad:
            tally["bad_stored"] = len(stored_bad)
            first["bad_stored"] = stored_bad[0]
        for what, n in tally.items():
            problems.append(f"{n} good rows {what} at the hub (first {first[what]})" if what != "bad_stored"
                            else f"{n} bad rows stored at the hub (first {first[what]})")  # fmt: skip
        self.result.rows.update(tally)
        verdict = judge(self.rig.watcher, self.journal)  # the sinks and verify: in the rig's final check
        if verify:
            verdict.agent_verify_ok, text = agent_verify(self.rig.agent.data_dir)
            if not verdict.agent_verify_ok:
                problems.append(f"edge-agent verify: {text[-300:]}")
        if not verdict.ok:
            problems.append("content check: " + verdict.counts() + "; " + "; ".join(verdict.details[:5]))
        self.result.files_acknowledged += 1
        self.result.rows_acknowledged += case.good
        self.result.bad_rows += len(case.bad)
        return [f"trial {trial} ({case.fmt}, {name}): {p}" for p in problems]

    def second_drop(self, trial: int, case: DropCase) -> list[str]:
        """Drop the same bytes again under another name: answered duplicate_file, nothing stored."""
        before = int(self.rig.agent_status()["last_seq"])
        again = f"{case.path.stem}.again{case.path.suffix}"
        staged = self.drop.parent / again
        shutil.copyfile(self.drop / "processed" / case.path.name, staged)
        os.rename(staged, self.drop / again)
        res = self.drop / "rejected" / f"{again}.result.json"
        deadline = time.monotonic() + 60
        while not res.is_file() and time.monotonic() < deadline:
            time.sleep(0.1)
        problems = []
        if not res.is_file():
            problems.append("a second drop of the same bytes was not answered")
        elif (status := json.loads(res.read_text(encoding="utf-8")).get("status")) != "duplicate_file":
            problems.append(f"a second drop of the same bytes was answered {status}, not duplicate_file")
        else:
            self.result.duplicate_drops += 1
        after = int(self.rig.agent_status()["last_seq"])
        if after != before:
            problems.append(f"a second drop of the same bytes added records {before + 1}..{after}")
        return [f"trial {trial} ({case.fmt}): {p}" for p in problems]


def _check_folders(drop: Path, case: DropCase) -> list[str]:
    name, stem = case.path.name, case.path.stem
    problems = []
    if (drop / name).exists():
        problems.append("the file is still in the drop folder")
    done = drop / "processed" / name
    if not done.is_file() or _sha(done) != case.sha256:
        problems.append("the file is not in processed/ with its bytes")
    copies = [p.name for p in (drop / "processed").iterdir() if p.name.startswith(stem) and p.name != name]
    copies = [c for c in copies if c != f"{name}.result.json"]
    if copies:
        problems.append(f"processed/ holds more than the file and its result: {copies}")
    if (drop / "rejected" / name).exists():
        problems.append("the file is also in rejected/")
    return problems


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _check_result(doc: dict[str, Any], case: DropCase) -> list[str]:
    want = {
        "status": "partial",
        "sha256": case.sha256,
        "format": case.fmt,
        "rows": case.rows,
        "accepted": case.good,
        "duplicates": 0,
        "rejected": len(case.bad),
    }
    return [f"result.json {k} is {doc.get(k)!r}, not {v!r}" for k, v in want.items() if doc.get(k) != v]


def _check_errors(path: Path, case: DropCase) -> list[str]:
    if not path.is_file():
        return [f"no {path.name} for {len(case.bad)} bad rows"]
    got = []
    problems = []
    for text in path.read_text(encoding="utf-8").splitlines():
        rec = json.loads(text)
        got.append((rec.get("line"), rec.get("field")))
        if not isinstance(rec.get("reason"), str) or not rec["reason"]:
            problems.append(f"errors line {rec.get('line')} has no reason")
    if sorted(got) != sorted(case.bad):
        problems.append(f"errors file names {sorted(got)}, the bad rows are {sorted(case.bad)}")
    return problems


def _case_size(rng: random.Random, fmt: str, max_bytes: int) -> int:
    """Transactions (orders) for a file of 0.3 MB to ``max_bytes``; 60 % from 2.2 MB (read by worker processes)."""
    low = 2_200_000 if rng.random() < 0.6 and max_bytes > 2_300_000 else 300_000
    return max(200, int(rng.uniform(low, max_bytes) / BYTES_PER_TXN[fmt]))


def _stage(root: Path, trial: int, fmt: str, rng: random.Random, max_bytes: int) -> DropCase:
    staged = root / "staged"
    staged.mkdir(exist_ok=True)
    return write_case(staged / f"t{trial:03d}-{fmt}{SUFFIX[fmt]}", fmt, _case_size(rng, fmt, max_bytes), rng, trial)


def _kill_trial(t: _Trials, trial: int, root: Path, max_bytes: int) -> None:
    rng, rig, result = t.rng, t.rig, t.result
    case = _stage(root, trial, FORMATS[trial % len(FORMATS)], rng, max_bytes)
    kills = rng.randint(0, 3)
    hub_down = rng.random() < 0.3
    if hub_down:
        rig.hub.stop()
        result.hub_down += 1
    began, left = time.monotonic(), case.rows
    os.rename(case.path, t.drop / case.path.name)
    case.path = t.drop / case.path.name
    for _ in range(kills):
        if t.acknowledged(case.path.name) is not None:
            break
        t.kill(case)
        began, left = time.monotonic(), t.remaining_rows(case)
    doc, stuck = t.wait_done(case.path.name)
    result.failures += [f"trial {trial}: {p}" for p in stuck]
    if not hub_down:  # learn the import rate (rows/s), for the kill moments
        t.rate = 0.5 * t.rate + 0.5 * max(2000.0, left / max(0.1, time.monotonic() - began))
    if hub_down:
        rig.hub.start()
    rig.wait_synced(timeout=180.0)
    result.failures += t.check_case(trial, case, doc)
    result.failures += t.second_drop(trial, case)


def _outbox_digests(db: Path) -> dict[tuple[str, str], set[bytes]]:
    """Key -> canonical digests of every record in the outbox files as they survived (plain SQLite)."""
    held: dict[tuple[str, str], set[bytes]] = {}
    with Outbox(db, create=False, durable=False) as ob:
        for rec in ob.pending(0, 100_000_000):
            txn = json.loads(rec.body)["txn"]
            held.setdefault((str(txn["register_id"]), str(txn["txn_id"])), set()).add(canonical_digest(txn))
    return held


def _power_spec(point: str, rng: random.Random, case: DropCase, report: Path) -> Spec:
    pages = max(20, case.rows // 6)  # WAL page writes an import of this file makes, roughly
    triggers = {
        "kill": None,
        "mid_commit": Trigger("wal", "write", rng.randrange(0, pages)),
        "after_commit": Trigger("wal", "sync", rng.randrange(0, max(2, case.rows // 2000))),
        "checkpoint": Trigger("db", "write", rng.randrange(0, pages)),
    }
    mode = "drop" if rng.random() < 0.25 else "subset"
    return Spec(triggers[point], mode, rng.randrange(1 << 30), str(report), autocheckpoint=48)


def _power_cut(t: _Trials, case: DropCase, point: str, spec: Spec) -> None:
    """Start the agent armed; wait for the cut, or SIGKILL it (un-synced pages lost) at a random moment."""
    agent, result = t.rig.agent, t.result
    if not start_armed(agent, spec):  # the power went while it started
        result.cut_points[point] += 1
        result.cuts += 1
        agent.proc = None
        return
    proc = agent.proc
    assert proc is not None
    wait = (
        1.0 + 1.5 * t.remaining_rows(case) / t.rate if point != "kill" else t.rng.uniform(0.2, 1.0 + case.rows / t.rate)
    )
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline and proc.poll() is None:
        if point == "kill" and t.acknowledged(case.path.name) is not None:
            break
        time.sleep(0.01)
    went_down = proc.poll() is not None
    if not went_down:
        _sigkill(_descendants(proc.pid))
        agent.kill()
    else:
        agent.proc = None
    tally_cut(result.cut_points, point, went_down=went_down)
    result.cuts += 1


def _power_trial(t: _Trials, trial: int, root: Path, max_bytes: int, report: Path) -> None:
    rng, rig, result = t.rng, t.rig, t.result
    rig.agent.stop()
    case = _stage(root, trial, FORMATS[trial % len(FORMATS)], rng, max_bytes)
    offline = rng.random() < 0.5  # the hub unreachable: the outbox alone holds what was acknowledged
    rig.proxy.set_mode("refuse" if offline else "pass")
    result.hub_down += int(offline)
    os.rename(case.path, t.drop / case.path.name)
    case.path = t.drop / case.path.name
    point = POWER_POINTS[(result.seed + result.power_trials) % len(POWER_POINTS)]  # in rotation from the seed
    for _ in range(rng.randint(1, 3)):
        acked_before = t.acknowledged(case.path.name) is not None
        _power_cut(t, case, point, _power_spec(point, rng, case, report))
        if acked_before or t.acknowledged(case.path.name) is not None:
            surviving = _outbox_digests(rig.agent.data_dir / "outbox.db")
            if not offline:
                rig.watcher.update(rig.hub)
            for key, text in case.expected.items():
                got = surviving.get(key) or {h.txn_digest for h in rig.watcher.held.get(key, [])}
                if not got:
                    result.lost_at_cut += 1
                elif canonical_digest(json.loads(text)) not in got:
                    result.mismatched_at_cut += 1
        ok, text = agent_verify(rig.agent.data_dir)
        if not ok:
            result.failures.append(f"trial {trial}: verify after a {point} cut: {text[-300:]}")
    arm(rig.agent, Spec(None))
    rig.agent.start()
    doc, stuck = t.wait_done(case.path.name)
    result.failures += [f"trial {trial}: {p}" for p in stuck]
    rig.proxy.set_mode("pass")
    rig.wait_synced(timeout=180.0)
    result.failures += t.check_case(trial, case, doc)
    result.failures += t.second_drop(trial, case)
    rig.agent.stop()  # no other process may open a file the VFS holds writes of
    ok, text = agent_verify(rig.agent.data_dir)
    if not ok:
        result.failures.append(f"trial {trial}: edge-agent verify: {text[-300:]}")


def _agent_env(drop: Path) -> dict[str, str]:
    return {**AGENT_ENV, "EDGE_AGENT_DROP_DIR": str(drop), "EDGE_AGENT_DROP_SETTLE": "0.3"}


def _run_rig(
    workdir: Path,
    trials: list[int],
    result: DropRunResult,
    rng: random.Random,
    *,
    power: bool,
    max_bytes: int,
    progress: Callable[[str], None] | None,
) -> None:
    drop = workdir / "drop"
    with Rig(workdir, agent_env=_agent_env(drop), powercut="agent" if power else None) as rig:
        t = _Trials(rig, drop, result, rng)
        report = workdir / "powercut-report.jsonl"
        for trial in trials:
            t0 = time.monotonic()
            kills, cuts = result.kills, result.cuts
            failed = len(result.failures)
            try:
                if power:
                    _power_trial(t, trial, workdir, max_bytes, report)
                    result.power_trials += 1
                else:
                    _kill_trial(t, trial, workdir, max_bytes)
            except Exception as exc:  # a trial that cannot finish is a failure, not a crash of the run
                log.exception("drop trial %d failed; agent log:\n%s", trial, rig.agent.log_tail(30))
                result.failures.append(f"trial {trial}: {type(exc).__name__}: {exc}")
                arm(rig.agent, Spec(None))
                rig.ensure_up()
            result.trials += 1
            result.formats[FORMATS[trial % len(FORMATS)]] += 1
            if progress is not None:
                what = f"cuts {result.cuts - cuts}" if power else f"kills {result.kills - kills}"
                verdict = "ok" if len(result.failures) == failed else "FAILED"
                progress(
                    f"drop trial {trial + 1:3d} {'power' if power else 'kill '} {FORMATS[trial % 3]:13s} {what} "
                    f"rows acked {result.rows_acknowledged:7d} {verdict} {time.monotonic() - t0:5.1f}s"
                )
        rig.ensure_up()
        if power:
            rig.agent.stop()
        final = rig.full_check(t.journal)
        result.final.append(final)
        if progress is not None:  # printed now too: a run cut short by a time limit still shows it
            verify = "OK" if final.agent_verify_ok else "FAILED"
            sinks = "; ".join(final.event_lines())
            progress(
                f"drop trials {'power' if power else 'kill'} rig final: {final.counts()}; {sinks}; verify {verify}"
            )


def run_drop_trials(
    workdir: Path,
    trials: int,
    *,
    seed: int = 0,
    max_bytes: int = 4_000_000,
    progress: Callable[[str], None] | None = None,
) -> DropRunResult:
    """Run ``trials`` drop-import trials: a quarter (at least one, from two trials) on the power-cut VFS.

    ``max_bytes`` bounds a file's size (files are 0.3 MB up to it; from 2 MiB the import reads with
    worker processes).
    """
    rng = random.Random(seed)
    result = DropRunResult(seed=seed)
    started = time.monotonic()
    power = 0 if trials < 2 else max(1, round(trials / 4))
    order = list(range(trials))
    if trials - power:
        _run_rig(workdir / "kill", order[: trials - power], result, rng, power=False, max_bytes=max_bytes,
                 progress=progress)  # fmt: skip
    if power:
        _run_rig(workdir / "power", order[trials - power :], result, rng, power=True, max_bytes=max_bytes,
                 progress=progress)  # fmt: skip
    result.seconds = time.monotonic() - started
    return result
