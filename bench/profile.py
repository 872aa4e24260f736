"""Where the CPU goes, per record, on each path: py-spy samples of the real processes, by category.

Paths (each a real process under a real workload):

- ``capture``: the agent while 4 POS clients post sales (``edge-agent run``);
- ``sync``: the agent sending a backlog (``edge-agent sync --until-synced``);
- ``ingest``: the hub receiving that backlog and deriving its events (``cloud-hub serve``);
- ``import``: ``edge-agent import`` of a JSONL drop file (the importer and its reader workers).

py-spy runs with ``--gil``: only the thread holding the GIL is sampled, so waits (fsync, epoll,
queues) are not counted and samples / rate = CPU seconds spent in Python (and in C code that keeps
the GIL, such as Ed25519 in ``cryptography``). Each sample's stack is put in the category of its
innermost frame that a rule names (validation, card scan, canonical JSON, JSON parse, hashing,
signing, SQLite, HTTP, event derivation, ...); divided by the records of the workload = µs per record.
Beside it, ``process_cpu_us_per_record`` is the process's own CPU time (``/proc``/``wait4``): the
difference is CPU outside the GIL — SQLite's C code (apsw releases the GIL), the kernel's share of
fsync, sockets and file reads.

    python bench/profile.py [capture] [sync] [import] [--records 20000] [--rate 200]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import catchup
from measure import python
from peers import run_clients
from storesync_harness.dropfiles import write_jsonl
from storesync_harness.processes import Agent, Hub

PYSPY = str(Path(sys.executable).with_name("py-spy"))

# (category, substrings of "function (file:line)"), checked innermost frame first, first rule wins.
RULES: list[tuple[str, tuple[str, ...]]] = [
    ("card scan", ("sync_protocol/cards.py",)),
    ("signing (Ed25519)", ("sign (sync_protocol/keys.py", "seal (sync_protocol/record.py")),
    ("verifying (Ed25519)", ("verify (sync_protocol/keys.py",)),
    ("request signature", ("sync_protocol/httpsig.py", "cloud_hub/auth.py")),
    ("hashing (SHA-256)", ("sync_protocol/chain.py", "txn_hash (", "_body_txn_hash (", "hashlib")),
    ("canonical JSON", ("sync_protocol/canonical.py", "json/encoder.py", "canonical (sync_protocol/transaction.py")),
    ("JSON parse", ("json/decoder.py", "json/__init__.py")),
    ("validation", ("pydantic", "sync_protocol/transaction.py", "sync_protocol/money.py", "sync_protocol/wire.py")),
    ("event derivation", ("cloud_hub/events.py", "cloud_hub/timenorm.py", "cloud_hub/forwarding.py")),
    ("delivery (sink)", ("cloud_hub/sinks/", "cloud_hub/delivery.py")),
    ("SQLite", ("cloud_hub/storage/", "edge_agent/outbox.py", "edge_agent/store", "apsw", "sqlite3")),
    ("file read / IPC", ("edge_agent/drops/", "multiprocessing", "pickle")),
    (
        "HTTP",
        (
            "uvicorn",
            "h11",
            "starlette",
            "fastapi",
            "httpx",
            "httpcore",
            "anyio",
            "edge_agent/api.py",
            "cloud_hub/app.py",
            "edge_agent/transport.py",
            "http/client.py",
            "socket.py",
        ),
    ),  # fmt: skip
    ("logging", ("logging/",)),
    ("asyncio / threads", ("asyncio/", "threading.py", "concurrent/futures", "selectors.py", "queue.py")),
    ("ingest logic", ("cloud_hub/ingest.py",)),
    ("capture / sync logic", ("edge_agent/capture.py", "edge_agent/sync.py", "edge_agent/")),
    ("start-up (imports)", ("importlib", "<module>")),
]


def categorize(stack: str) -> str:
    frames = stack.split(";")
    for frame in reversed(frames):
        for name, needles in RULES:
            if any(n in frame for n in needles):
                return name
    return "other"


def read_raw(path: Path) -> Counter[str]:
    out: Counter[str] = Counter()
    if not path.exists():
        return out
    for line in path.read_text(errors="replace").splitlines():
        stack, _, count = line.rpartition(" ")
        if stack and count.isdigit():
            out[categorize(stack)] += int(count)
    return out


def cpu_s(pid: int) -> float:
    """utime + stime of a live process, seconds."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def spy_argv(out: Path, rate: int) -> list[str]:
    return [PYSPY, "record", "--gil", "--format", "raw", "-r", str(rate), "--nonblocking", "-o", str(out)]


def spy_pid(pid: int, out: Path, rate: int, subprocesses: bool = False) -> subprocess.Popen[bytes]:
    argv = [*spy_argv(out, rate), "--pid", str(pid)]
    if subprocesses:
        argv.append("--subprocesses")
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(0.5)  # attached
    return proc


def stop_spy(proc: subprocess.Popen[bytes]) -> None:
    proc.send_signal(2)  # SIGINT: py-spy writes its file and exits
    proc.wait(30)


def report(path_name: str, counts: Counter[str], rate: int, records: int, process_cpu: float) -> dict[str, Any]:
    total = sum(counts.values())
    per = {k: round(v / rate / records * 1e6, 1) for k, v in counts.most_common()}
    return {
        "bench": "profile", "path": path_name, "records": records, "samples": total, "rate_hz": rate,
        "gil_us_per_record": round(total / rate / records * 1e6, 1), "us_per_record": per,
        "process_cpu_us_per_record": round(process_cpu / records * 1e6, 1),
        "load_avg_1m": round(os.getloadavg()[0], 2),
        "share": {k: round(v / total, 3) for k, v in counts.most_common()} if total else {},
    }  # fmt: skip


def profile_capture(root: Path, txns: int, rate: int) -> dict[str, Any]:
    from run import _pos_client

    hub = Hub.create(root / "hub-cap").start()
    try:
        agent = Agent.enrolled(root / "cap-agent", hub, "PCAP").start()
    finally:
        hub.stop()
    try:
        assert agent.proc is not None
        spy = spy_pid(agent.proc.pid, root / "capture.txt", rate)
        c0 = cpu_s(agent.proc.pid)
        lat, errors, _ = run_clients(_pos_client, [(agent.port, f"B{i}", txns // 4) for i in range(4)])
        used = cpu_s(agent.proc.pid) - c0
        stop_spy(spy)
    finally:
        agent.stop()
    assert errors == 0
    return report("capture", read_raw(root / "capture.txt"), rate, len(lat), used)


def profile_sync_ingest(root: Path, records: int, rate: int) -> list[dict[str, Any]]:
    hub = Hub.create(root / "hub-ing").start()
    try:
        agent = Agent.enrolled(root / "sync-agent", hub, "PSYNC")
        catchup.backlog(agent, records)
        assert hub.proc is not None
        hub_spy = spy_pid(hub.proc.pid, root / "ingest.txt", rate)
        h0 = cpu_s(hub.proc.pid)
        t0 = time.perf_counter()
        watch = catchup.DerivedWatch(hub, "PSYNC", records, t0)
        argv = python("edge_agent", "sync", "--data-dir", str(agent.data_dir), "--until-synced", "--timeout", "900")
        proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL)
        sync_spy = spy_pid(proc.pid, root / "sync.txt", rate)
        _, status, usage = os.wait4(proc.pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
        stop_spy(sync_spy)
        watch.seconds()
        hub_used = cpu_s(hub.proc.pid) - h0
        stop_spy(hub_spy)
    finally:
        hub.stop()
    return [
        report("sync (agent)", read_raw(root / "sync.txt"), rate, records, usage.ru_utime + usage.ru_stime),
        report("ingest + derivation (hub)", read_raw(root / "ingest.txt"), rate, records, hub_used),
    ]


def profile_import(root: Path, rows: int, rate: int) -> dict[str, Any]:
    from drops import _enrolled

    data = root / "imp-agent"
    _enrolled(data)
    src = root / "day.jsonl"
    write_jsonl(src, rows)
    argv = python("edge_agent", "import", str(src), "--json", "--workers", "2", "--data-dir", str(data),
                  "--drop-dir", str(root / "imp-drop"))  # fmt: skip
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE)
    spy = spy_pid(proc.pid, root / "import.txt", rate, subprocesses=True)
    assert proc.stdout is not None
    res = json.loads(proc.stdout.read())
    _, status, usage = os.wait4(proc.pid, 0)
    stop_spy(spy)
    used = usage.ru_utime + usage.ru_stime + res["reader_cpu_s"]
    return report("import (agent + readers)", read_raw(root / "import.txt"), rate, rows, used)


def table_line(f: dict[str, Any]) -> str:
    parts = ", ".join(f"{k} {v}" for k, v in f["us_per_record"].items())
    return (
        f"profile   {f['path']}: process CPU {f['process_cpu_us_per_record']} µs/record, under the GIL "
        f"{f['gil_us_per_record']} µs = {parts}"
    )


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("which", nargs="*", default=["capture", "sync", "import"])
    ap.add_argument("--records", type=int, default=20_000)
    ap.add_argument("--capture-txns", type=int, default=4_000)
    ap.add_argument("--rate", type=int, default=200)
    ap.add_argument("--keep", action="store_true", help="keep the raw py-spy files")
    args = ap.parse_args()
    root = Path(tempfile.mkdtemp(prefix="storesync-profile-"))
    figures: list[dict[str, Any]] = []
    try:
        if "capture" in args.which:
            figures.append(profile_capture(root, args.capture_txns, args.rate))
        if "sync" in args.which:
            figures.extend(profile_sync_ingest(root, args.records, args.rate))
        if "import" in args.which:
            figures.append(profile_import(root, args.records, args.rate))
    finally:
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)
    for f in figures:
        print(json.dumps(f))
    for f in figures:
        print(table_line(f))
    return 0


if __name__ == "__main__":
    sys.exit(main())
