"""``python -m storesync_harness.faults``: run the fault harness and print its report.

The full run (``make faults``): 200 crash trials, two rounds of every proxy fault, the 72-hour
long outage (259,200 records), 50 power cuts (agent and hub on the power-cut VFS) plus the
``synchronous=OFF`` controls, which must lose acknowledged sales, and 20 drop-import trials (a
franchise file killed or power-cut mid-import, :mod:`storesync_harness.droptrials`). ``--quick``
is the size of ``make test`` for the crash matrix (tests/faults/test_harness_quick.py): one crash
trial of every kind, one round of every proxy fault, a 20,000-record outage. Exit code 0 only when
nothing was lost, duplicated or broken, and every control did lose something.
"""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from .crashmatrix import CRASH_KINDS, MatrixResult, run_matrix
from .droptrials import DropRunResult, run_drop_trials
from .invariants import Verdict
from .longoutage import HOURS_72, OutageResult, run_long_outage
from .powerloss import PowerResult, run_power_cuts


def _verdict_lines(v: Verdict) -> list[str]:
    lines = [
        f"  acknowledged to the POS  {v.acknowledged}",
        f"  found at the hub         {v.found}",
        f"  lost                     {v.lost}",
        f"  duplicated               {v.duplicated}",
        f"  unexpected at the hub    {v.unexpected}",
        f"  content mismatches       {v.mismatched}",
        f"  chain errors             {v.chain_errors}",
        f"  bad signatures           {v.bad_signatures}",
    ]
    lines += [f"  {line}" for line in v.event_lines()]
    if not v.events_checked:
        lines.append("  events                   not checked")
    lines.append(f"  edge-agent verify        {'OK' if v.agent_verify_ok else 'FAILED'}")
    return lines


def format_report(
    matrix: MatrixResult | None,
    outage: OutageResult | None,
    power: Sequence[PowerResult] = (),
    drops: DropRunResult | None = None,
) -> str:
    """The report as plain text."""
    lines = ["StoreSync fault harness report", "=" * 31]
    if matrix is not None:
        head = f"crash matrix + proxy faults: {matrix.trials} trials in {matrix.seconds:.0f} s"
        lines.append(f"{head} (seed {matrix.seed})")
        lines.append(f"  {'fault kind':26s} {'trials':>6s} {'faults':>6s} {'failed':>6s}")
        for kind, t in matrix.tallies.items():
            lines.append(f"  {kind:26s} {t.trials:6d} {t.faults_injected:6d} {t.failed_trials:6d}")
        v = matrix.final
        lines += _verdict_lines(v)
        lines.append(
            f"  POS requests left without an answer {matrix.in_doubt_seen}, abandoned by the POS {matrix.abandoned}"
        )
        lines += [f"  ! {f}" for f in matrix.failures[:20]]
        lines += [f"  ! {d}" for d in v.details[:10]]
    if outage is not None:
        v = outage.verdict
        hours = outage.records / 3600
        lines += [
            f"long outage: {outage.records} records (~{hours:.0f} h at 1 tx/s) "
            f"captured offline in {outage.capture_s:.0f} s",
            f"  catch-up (hub back -> backlog acknowledged)  {outage.catchup_s:.1f} s",
            f"  until nothing pending (incl. new sales)      {outage.drain_s:.1f} s",
            f"  capture latency during catch-up ({outage.pos_posts} POS posts): "
            f"p50 {outage.p50_ms:.1f} ms, p99 {outage.p99_ms:.1f} ms, max {outage.max_ms:.1f} ms",
            f"  capture latency with nothing syncing: p50 {outage.baseline_p50_ms:.1f} ms, "
            f"p99 {outage.baseline_p99_ms:.1f} ms",
        ]
        lines += _verdict_lines(v)
        lines += [f"  ! {d}" for d in v.details[:10]]
    for run in power:
        lines += run.lines()
        if run.sync_off:
            lines.append(
                "  control: "
                + ("RED as it must be (the harness sees loss)" if not run.durable else "GREEN - NOT SENSITIVE")
            )
        lines += [f"  ! {f}" for f in run.failures[:10] if not run.sync_off]
    if drops is not None:
        lines += drops.lines()
    ok = _all_ok(matrix, outage, power, drops)
    passed = "PASS - nothing lost or duplicated, content and signatures intact, events once per sink"
    lines.append("RESULT: " + (passed if ok else "FAIL"))
    return "\n".join(lines)


def _all_ok(
    matrix: MatrixResult | None, outage: OutageResult | None, power: Sequence[PowerResult], drops: DropRunResult | None
) -> bool:
    return (
        (matrix is None or matrix.ok)
        and (outage is None or outage.ok)
        and power_ok(power)
        and (drops is None or drops.ok)
    )


def power_ok(power: Sequence[PowerResult]) -> bool:
    """Every real run kept the promise, and every control lost something (the harness can see loss)."""
    return all((not r.durable) if r.sync_off else r.ok for r in power)


def run_power(root: Path, cuts: int, seed: int, say: Callable[[str], None] | None) -> list[PowerResult]:
    """``cuts`` power cuts, 60 % on the agent and 40 % on the hub, then a short control on each."""
    agent_cuts = max(1, round(cuts * 0.6))
    return [
        run_power_cuts(root / "agent", target="agent", cuts=agent_cuts, seed=seed, progress=say),
        run_power_cuts(root / "hub", target="hub", cuts=max(1, cuts - agent_cuts), seed=seed + 1, progress=say),
        run_power_cuts(root / "agent-off", target="agent", cuts=2, seed=seed + 2, sync_off=True, progress=say),
        run_power_cuts(root / "hub-off", target="hub", cuts=2, seed=seed + 3, sync_off=True, progress=say),
    ]


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point."""
    parser = argparse.ArgumentParser(prog="python -m storesync_harness.faults", description=__doc__)
    parser.add_argument(
        "--quick",
        action="store_true",
        help="make test size: one crash trial per kind, 20,000-record outage, 2 drop trials",
    )
    parser.add_argument(
        "--trials", type=int, default=None, help=f"crash trials (default 200, quick {len(CRASH_KINDS)})"
    )
    parser.add_argument("--proxy-rounds", type=int, default=None, help="rounds of every proxy fault (default 2)")
    parser.add_argument("--records", type=int, default=None, help=f"long-outage records (default {HOURS_72})")
    parser.add_argument("--seed", type=int, default=None, help="seed (default: from the clock, printed)")
    parser.add_argument("--power-cuts", type=int, default=None, help="power cuts (default 50, quick 10)")
    parser.add_argument("--drop-trials", type=int, default=None, help="drop-import trials (default 20, quick 2)")
    parser.add_argument("--skip-matrix", action="store_true")
    parser.add_argument("--skip-power", action="store_true")
    parser.add_argument("--skip-outage", action="store_true")
    parser.add_argument("--workdir", type=Path, default=None, help="keep the data here (default: a temp folder)")
    parser.add_argument("-v", "--verbose", action="store_true", help="one line per trial")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s %(message)s")
    trials = args.trials if args.trials is not None else (len(CRASH_KINDS) if args.quick else 200)
    rounds = args.proxy_rounds if args.proxy_rounds is not None else (1 if args.quick else 2)
    records = args.records if args.records is not None else (20_000 if args.quick else HOURS_72)
    seed = args.seed if args.seed is not None else int(time.time()) % 100_000
    say = (lambda line: print(line, file=sys.stderr, flush=True)) if args.verbose else None
    with tempfile.TemporaryDirectory(prefix="storesync-faults-") as tmp:
        root = args.workdir or Path(tmp)
        root.mkdir(parents=True, exist_ok=True)
        matrix = outage = None
        if not args.skip_matrix:
            matrix = run_matrix(root / "matrix", crash_trials=trials, proxy_rounds=rounds, seed=seed, progress=say)
        if not args.skip_outage:
            outage = run_long_outage(root / "outage", records, seed=seed, progress=say)
        power: list[PowerResult] = []
        if not args.skip_power:
            cuts = args.power_cuts if args.power_cuts is not None else (10 if args.quick else 50)
            power = run_power(root / "power", cuts, seed, say)
        drop_trials = args.drop_trials if args.drop_trials is not None else (2 if args.quick else 20)
        drops = None
        if drop_trials > 0:
            max_bytes = 2_600_000 if args.quick else 4_000_000
            drops = run_drop_trials(root / "drops", drop_trials, seed=seed, max_bytes=max_bytes, progress=say)
    print(format_report(matrix, outage, power, drops), flush=True)
    return 0 if _all_ok(matrix, outage, power, drops) else 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
