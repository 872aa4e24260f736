"""``bench/run.py --quick``: every benchmark still runs end to end and prints honest figures.

Speed is not checked here (speed claims come from ``make bench``); what is checked is the form the
issue asks of every figure: JSON lines, each with its target, its baseline measured in the same run,
and the load average, and that the work was really done (no errors, every record acknowledged).
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
ISSUE_FIGURES = {"capture", "catchup", "backlog", "drops"}


def require_nats() -> None:
    """Skip without NATS, or fail under STORESYNC_REQUIRE_SERVICES=1 (as tests/conftest.py does)."""
    try:
        with socket.create_connection(("127.0.0.1", 4222), timeout=1):
            return
    except OSError:
        pass
    if os.environ.get("STORESYNC_REQUIRE_SERVICES") == "1":
        pytest.fail("NATS is not reachable on 127.0.0.1:4222 and STORESYNC_REQUIRE_SERVICES=1", pytrace=False)
    pytest.skip("NATS is not reachable on 127.0.0.1:4222")


@pytest.mark.slow
@pytest.mark.nats
def test_quick_bench_prints_every_figure_with_target_baseline_and_load() -> None:
    require_nats()
    res = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "run.py"), "--quick"],
        capture_output=True,
        text=True,
        timeout=240,
        cwd=ROOT,
    )
    assert res.returncode == 0, res.stderr[-3000:]
    figures = [json.loads(line) for line in res.stdout.splitlines() if line.startswith("{")]
    by_bench: dict[str, list[dict]] = {}
    for f in figures:
        by_bench.setdefault(f["bench"], []).append(f)
    assert set(by_bench) >= ISSUE_FIGURES | {"ceiling", "delivery"}, sorted(by_bench)
    for f in figures:
        assert "load_avg_1m" in f, f
    for name in ISSUE_FIGURES:
        for f in by_bench[name]:
            assert any(k.startswith("target") for k in f), f
            assert f["baseline"], f
    assert {c["limit"] for c in by_bench["ceiling"]} == {"sqlite_fsync", "ed25519", "sha256", "http_loopback"}

    (capture,) = by_bench["capture"]
    assert capture["errors"] == 0 and capture["transactions"] == 200
    assert capture["baseline"]["peer_nats_jetstream_file"]["messages"] == 200
    assert capture["baseline"]["peer_nats_jetstream_file"]["errors"] == 0
    assert capture["ratio_vs_nats"] > 0 and capture["ratio_vs_fsync_commits"] > 0
    assert capture["rss_mb"]["agent"] > 0

    one, split = by_bench["catchup"]  # the hub as one process, then as serve + deliver
    assert "1 process" in one["hub"] and "2 processes" in split["hub"] and split["rss_mb"]["deliver"] > 0
    for catchup in (one, split):
        # events are derived after (or with) the acknowledgement, never before
        assert catchup["derived_seconds"] >= catchup["acked_seconds"] > 0
        assert catchup["baseline"]["records"] == 20 and catchup["baseline"]["derived_per_s"] > 0
        assert catchup["rss_mb"]["agent_sync"] > 0 and catchup["rss_mb"]["hub"] > 0

    (backlog,) = by_bench["backlog"]
    assert backlog["acked_through"] >= backlog["records"] == 1000
    assert backlog["errors"] == 0 and backlog["captured_while_syncing"] > 0
    assert backlog["agent_rss_max_mb"] > 0

    for f in by_bench["delivery"]:
        assert f["done"] == f["events"] and f["dead"] == 0 and f["baseline"], f
    for d in by_bench["drops"]:
        assert d["accepted"] == d["transactions"] and d["rss_all_processes_sampled_max_mb"] > 0
    fleet = {f["scenario"]: f for f in by_bench["fleet"]}  # the figures themselves: tests/fleet (--small)
    assert set(fleet) == {"sqlite", "pg", "pg2"}, sorted(fleet)
    for f in fleet.values():
        assert f["errors"] == 0 and f["records"] == f["records_planned"] > 0 and f["underived_left"] == 0, f
    (flood,) = by_bench["flood"]  # the ratio itself is a `make bench` figure; here: it ran and is honest
    assert flood["quiet_errors"] == 0 and flood["baseline"]["errors"] == 0 and flood["p99_ratio"] > 0
    assert flood["target_p99_ratio"] == 2.0 and flood["baseline"]["load_avg_1m"] >= 0
    assert "=== StoreSync benchmarks ===" in res.stdout
