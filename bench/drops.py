"""File-drop import benchmark: rows/s and peak memory of ``edge-agent import`` on large generated files.

Runs the real CLI (``python -m edge_agent import FILE --json``) in a child process against a fresh,
enrolled outbox and measures:

- ``rows_per_s``: data rows / wall seconds of the whole command (hashing, reading, validating,
  signing, storing, moving the file);
- ``main_max_rss_mb``: the importing process's peak RSS (its ``VmHWM``, sampled; not ``wait4``'s
  ``ru_maxrss``, into which Linux carries the RSS the parent had when it forked);
- ``reader_max_rss_mb``: the peak RSS of one reader worker process (reported by the workers);
- ``peak_rss_mb``: the sum of the peaks of every process of the import (main, forkserver, readers),
  an upper bound of the whole import's memory; ``rss_all_processes_sampled_max_mb``: the largest
  sum seen at one instant;
- ``cpu_us_per_row``: CPU of the importing process and the readers together, per row, which shows
  what the box itself allows when other work competes for its cores.

    python bench/drops.py [--rows 1000000] [--orders 200000] [--workers 2]
"""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from edge_agent.config import AgentConfig
from edge_agent.store import Identity, Outbox
from measure import parser, print_figure, sampled, scratch
from storesync_harness.dropfiles import write_jsonl, write_shopify_export
from sync_protocol import keys

SRC = Path(__file__).resolve().parents[1]


def _enrolled(data: Path) -> None:
    cfg = AgentConfig.load(data)
    data.mkdir(parents=True)
    key = keys.generate()
    keys.save_private_key(key, cfg.key_path)
    hub = keys.generate()
    with Outbox(cfg.db_path) as outbox:
        outbox.set_identity(
            Identity(
                "BENCH",
                1,
                keys.key_id(key),
                keys.public_hex(key),
                "http://127.0.0.1:9",
                keys.public_hex(hub),
                keys.key_id(hub),
                "Europe/Berlin",
            )  # fmt: skip
        )


def import_once(root: Path, name: str, write: Callable[[Path], Any], workers: int) -> dict[str, Any]:
    """Generate one file, import it with the CLI, and return the figure."""
    data, drop = root / f"{name}-agent", root / f"{name}-drop"
    _enrolled(data)
    src = root / name
    generated = write(src)
    size = src.stat().st_size
    floor = parse_floor(src, "jsonl" if name.endswith(".jsonl") else "csv")
    env = {**os.environ, "PYTHONPATH": str(SRC) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    cmd = [sys.executable, "-m", "edge_agent", "import", str(src), "--json", "--progress", "10",
           "--workers", str(workers), "--data-dir", str(data), "--drop-dir", str(drop)]  # fmt: skip
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, env=env)
    assert proc.stdout is not None
    with sampled(agent_import=proc.pid) as s:
        out = proc.stdout.read()
        _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    wall = time.perf_counter() - t0
    if proc.returncode not in (0, 1):
        raise RuntimeError(f"edge-agent import failed ({proc.returncode})")
    res = json.loads(out)
    with Outbox(AgentConfig.load(data).db_path) as outbox:
        stored = outbox.count()
    if stored != res["accepted"] or res["accepted"] != generated.valid:
        raise RuntimeError(f"stored {stored}, accepted {res['accepted']}, expected {generated.valid}")
    main_mb = s.hwm["agent_import"].get(proc.pid, 0.0)  # not ru_maxrss: Linux carries the parent's RSS into it
    reader_mb = res["reader_max_rss_kb"] / 1024
    cpu = usage.ru_utime + usage.ru_stime + res["reader_cpu_s"]
    return {
        "bench": "drops",
        "file": name,
        "format": res["format"],
        "bytes": size,
        "rows": res["rows"],
        "transactions": res["transactions"],
        "accepted": res["accepted"],
        "seconds": round(wall, 2),
        "rows_per_s": round(res["rows"] / wall),
        "transactions_per_s": round(res["transactions"] / wall),
        "workers": workers,
        "main_max_rss_mb": round(main_mb, 1),
        "reader_max_rss_mb": round(reader_mb, 1),
        "peak_rss_mb": s.peak_mb("agent_import"),
        "peak_rss_per_process_mb": sorted(s.hwm["agent_import"].values(), reverse=True),
        "rss_all_processes_sampled_max_mb": s.rss_max_mb().get("agent_import"),
        "target_rows_per_s": 20_000 if res["format"] == "jsonl" else 15_000,
        "target_rss_mb": 200,
        "baseline": {"what": "the same file only read and parsed, in one process", **floor},
        "ratio_vs_parse_only": round(res["rows"] / wall / floor["rows_per_s"], 3),
        "cpu_us_per_row": round(cpu / res["rows"] * 1e6, 1),
        "cpus": os.cpu_count(),
        "load_avg_1m": s.load_avg(),
    }


def parse_floor(src: Path, fmt: str) -> dict[str, Any]:
    """Rows/s of reading and parsing the file (JSON per line, or CSV rows): the floor of any import."""
    t0 = time.perf_counter()
    rows = 0
    with open(src, encoding="utf-8", newline="") as f:
        if fmt == "jsonl":
            for line in f:
                if line.strip():
                    try:
                        json.loads(line)
                    except ValueError:
                        pass
                    rows += 1
        else:
            reader = csv.reader(f)
            next(reader, None)
            for _ in reader:
                rows += 1
    wall = time.perf_counter() - t0
    return {"rows": rows, "rows_per_s": round(rows / wall)}


def bench_drops(root: Path, rows: int, orders: int, workers: int, emit: Callable[[dict[str, Any]], None]) -> None:
    """The JSONL and Shopify figures (``rows`` or ``orders`` 0 skips that file)."""
    if rows:
        emit(import_once(root, "day.jsonl", lambda p: write_jsonl(p, rows), workers))
    if orders:
        emit(import_once(root, "orders_export.csv", lambda p: write_shopify_export(p, orders), workers))


def table_line(f: dict[str, Any]) -> str:
    return (
        f"drops     {f['file']} ({f['format']}, {f['rows']} rows, {f['bytes'] / 1e6:.0f} MB): {f['rows_per_s']} rows/s "
        f"(target ≥ {f['target_rows_per_s']}; read+parse only {f['baseline']['rows_per_s']}); peak RSS "
        f"{f['peak_rss_mb']} MB (main {f['main_max_rss_mb']}, {f['workers']} readers of {f['reader_max_rss_mb']}), "
        f"sampled {f['rss_all_processes_sampled_max_mb']} (target ≤ {f['target_rss_mb']}); "
        f"{f['cpu_us_per_row']} µs CPU/row on {f['cpus']} cores, load {f['load_avg_1m']}"
    )


def main() -> int:
    ap = parser(__doc__)
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--orders", type=int, default=200_000)
    ap.add_argument("--workers", type=int, default=2)
    args = ap.parse_args()
    figures: list[dict[str, Any]] = []

    def emit(figure: dict[str, Any]) -> None:
        figures.append(figure)
        print_figure(figure)

    with scratch("storesync-bench-drops-") as root:
        bench_drops(root, args.rows, args.orders, args.workers, emit)
    for f in figures:
        print(table_line(f))
    return 0


if __name__ == "__main__":
    sys.exit(main())
