"""JSONL file sink: one CloudEvent per line, fsynced, never twice, torn lines repaired."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

from cloudevents.v1.http import from_json
from forwarding_support import sample_events

from cloud_hub.events import SinkConfig
from cloud_hub.sinks import build_sink
from cloud_hub.sinks.jsonl import JsonlSink


def sink(path: Path) -> JsonlSink:
    s = build_sink(SinkConfig.from_dict({"name": "file", "kind": "jsonl", "role": "archive", "path": str(path)}))
    assert isinstance(s, JsonlSink)
    return s


def lines(path: Path) -> list[dict]:
    return [json.loads(x) for x in path.read_text(encoding="utf-8").splitlines()]


async def test_writes_each_event_once_and_every_line_parses_with_the_sdk(tmp_path: Path) -> None:
    path = tmp_path / "out" / "events.jsonl"
    events = sample_events(30)
    s = sink(path)
    first = await s.deliver(events[:20])
    assert [o.status for o in first] == ["ok"] * 20 and all(o.reason == "" for o in first)
    again = await s.deliver(events)  # 20 redelivered, the rest new
    assert all(o.done for o in again)
    assert [o.reason for o in again[:20]] == ["duplicate"] * 20
    written = lines(path)
    assert [e["id"] for e in written] == [e["id"] for e in events]
    for raw in path.read_text(encoding="utf-8").splitlines():
        assert from_json(raw)["specversion"] == "1.0"


async def test_a_restarted_sink_rebuilds_its_index_and_repairs_a_torn_line(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    events = sample_events(10)
    await sink(path).deliver(events[:5])
    with open(path, "a", encoding="utf-8") as f:
        f.write(json.dumps(events[5])[:40])  # a crash in the middle of a write
    restarted = sink(path)
    outcomes = await restarted.deliver(events)
    assert [o.reason for o in outcomes[:5]] == ["duplicate"] * 5
    assert [o.reason for o in outcomes[5:]] == [""] * (len(events) - 5)
    assert [e["id"] for e in lines(path)] == [e["id"] for e in events]


async def test_unwritable_path_is_transient_for_every_event(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    outcomes = await sink(blocker / "sub" / "events.jsonl").deliver(sample_events(2))
    assert outcomes and all(o.status == "transient" for o in outcomes)


WRITER = """
import asyncio, json, sys, time
from pathlib import Path
from cloud_hub.events import SinkConfig
from cloud_hub.sinks import build_sink

path, events_file, order, go, ready = sys.argv[1:6]
events = json.loads(Path(events_file).read_text())
if order == "reverse":
    events = events[::-1]

async def main():
    sink = build_sink(SinkConfig.from_dict({"name": "file", "kind": "jsonl", "role": "archive", "path": path}))
    await sink.open()
    Path(ready).touch()
    while not Path(go).exists():
        time.sleep(0.002)
    written = failed = 0
    for i in range(0, len(events), 7):
        for o in await sink.deliver(events[i : i + 7]):
            written += o.done and o.reason == ""
            failed += not o.done
        await asyncio.sleep(0.002)  # let the other writer in between batches, even on a busy machine
    print(json.dumps({"written": written, "failed": failed}))

asyncio.run(main())
"""


def test_two_delivery_processes_on_one_file_write_each_event_exactly_once(tmp_path: Path) -> None:
    """Two OS processes deliver the same events (as after a lease takeover) at once, in opposite orders."""
    path = tmp_path / "events.jsonl"
    events = sample_events(150)
    events_file = tmp_path / "events.json"
    events_file.write_text(json.dumps(events))
    go = tmp_path / "go"
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", WRITER, str(path), str(events_file), order, str(go), str(tmp_path / order)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for order in ("forward", "reverse")
    ]
    deadline = time.monotonic() + 60
    while not all((tmp_path / o).exists() for o in ("forward", "reverse")) and time.monotonic() < deadline:
        time.sleep(0.01)  # until both have opened the sink (and built their index from the empty file)
    go.touch()
    results = []
    for p in procs:
        out, err = p.communicate(timeout=120)
        assert p.returncode == 0, err
        results.append(json.loads(out))
    ids = [e["id"] for e in lines(path)]
    assert sorted(ids) == sorted(e["id"] for e in events)  # every event, none twice
    assert len(ids) == len(set(ids))
    assert sum(r["written"] for r in results) == len(events) and all(r["failed"] == 0 for r in results)
    assert all(r["written"] > 0 for r in results)  # both really wrote: the test exercised two writers
    by_id = {e["id"]: e for e in events}
    assert all(e == json.loads(json.dumps(by_id[e["id"]])) for e in lines(path))  # content as delivered
