"""JSONL file sink: one CloudEvent per line, fsynced, never twice, torn lines repaired."""

from __future__ import annotations

import json
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
