"""NATS JetStream sink against the real nats-server on 127.0.0.1:4222."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import nats
import pytest
from cloudevents.v1.http import from_json
from forwarding_support import require_nats, sample_events

from cloud_hub.events import SinkConfig
from cloud_hub.sinks import build_sink
from cloud_hub.sinks.nats import NatsSink, subject_for

pytestmark = pytest.mark.nats


@pytest.fixture
async def stream() -> AsyncIterator[dict[str, str]]:
    """A unique stream and subject prefix, deleted afterwards."""
    require_nats()
    tag = uuid.uuid4().hex[:12]
    names = {"stream": f"T_{tag}", "subject_prefix": f"t{tag}"}
    yield names
    nc = await nats.connect("nats://127.0.0.1:4222")
    try:
        await nc.jetstream().delete_stream(names["stream"])
    except Exception:  # noqa: BLE001 - it may never have been created
        pass
    await nc.close()


def make_sink(names: dict[str, str], **extra: Any) -> NatsSink:
    s = build_sink(SinkConfig.from_dict({"name": "bus", "kind": "nats", **names, **extra}))
    assert isinstance(s, NatsSink)
    return s


async def stored(names: dict[str, str]) -> list[Any]:
    nc = await nats.connect("nats://127.0.0.1:4222")
    try:
        js = nc.jetstream()
        info = await js.stream_info(names["stream"])
        msgs = [await js.get_msg(names["stream"], seq) for seq in range(1, info.state.messages + 1)]
    finally:
        await nc.close()
    return msgs


async def test_publishes_each_event_once_with_msg_id_dedup(stream: dict[str, str]) -> None:
    events = sample_events(20)
    async with make_sink(stream) as s:
        first = await s.deliver(events)
        assert all(o.done and o.reason == "" for o in first)
        again = await s.deliver(events[:7])  # the same event ids again
        assert [o.reason for o in again] == ["duplicate"] * 7
    msgs = await stored(stream)
    assert [m.headers["Nats-Msg-Id"] for m in msgs] == [e["id"] for e in events]
    for msg, event in zip(msgs, events, strict=True):
        assert msg.subject == subject_for(stream["subject_prefix"], event)
        assert msg.subject.startswith(f"{stream['subject_prefix']}.S1.retail.")
        assert from_json(msg.data)["id"] == event["id"]
        assert json.loads(msg.data) == event


async def test_without_a_stream_and_ensure_off_every_event_fails_transiently(stream: dict[str, str]) -> None:
    async with make_sink(stream, ensure_stream=False, timeout_s=2) as s:
        outcomes = await s.deliver(sample_events(2))
    assert outcomes and all(o.status == "transient" for o in outcomes)


async def test_unreachable_server_is_transient() -> None:
    from storesync_harness.processes import free_port

    cfg = {"servers": f"nats://127.0.0.1:{free_port()}", "timeout_s": 1, "stream": "X", "subject_prefix": "x"}
    s = make_sink(cfg)
    outcomes = await s.deliver(sample_events(1))
    await s.aclose()
    assert outcomes[0].status == "transient"


async def test_publish_throughput(stream: dict[str, str], capsys: pytest.CaptureFixture[str]) -> None:
    base = sample_events(200)
    events = [dict(e, id=f"{e['id']}#{i}") for i in range(50) for e in base][:10_000]
    async with make_sink(stream) as s:
        await s.deliver(events[:100])  # connect and create the stream outside the measurement
        t0 = time.perf_counter()
        for i in range(100, len(events), 1000):
            outcomes = await s.deliver(events[i : i + 1000])
            assert all(o.done for o in outcomes)
        rate = (len(events) - 100) / (time.perf_counter() - t0)
    with capsys.disabled():
        print(f"\nNATS JetStream publish: {rate:,.0f} events/s")
    assert rate > 2_000  # target is ≥ 10,000/s on 2 cores; this bound only catches a collapse


async def test_two_publishers_of_the_same_events_store_each_once(stream: dict[str, str]) -> None:
    """Two delivery processes (two connections) racing on the same events: ``Nats-Msg-Id`` dedups them."""
    import asyncio

    events = sample_events(15)
    async with make_sink(stream) as one, make_sink(stream) as two:
        a, b = await asyncio.gather(one.deliver(events), two.deliver(events[::-1]))
    assert all(o.done for o in a + b)
    assert sum(o.reason == "duplicate" for o in a + b) == len(events)
    msgs = await stored(stream)
    assert sorted(m.headers["Nats-Msg-Id"] for m in msgs) == sorted(e["id"] for e in events)
