"""Webhook sink against a real receiver process: signatures, idempotency keys, retries, modes."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cloudevents.v1.http import from_http
from forwarding_support import sample_events

from cloud_hub.events import SinkConfig
from cloud_hub.sinks import build_sink
from cloud_hub.sinks.base import Outcome
from cloud_hub.sinks.webhook import WebhookSink, sign
from storesync_harness.processes import free_port
from storesync_harness.standins import StandIn, start

SECRET = "whsec-test"


@pytest.fixture
def receiver(tmp_path: Path) -> Iterator[StandIn]:
    s = start("webhook_receiver", tmp_path, "--secret", SECRET)
    try:
        yield s
    finally:
        s.stop()


def hook(url: str, **options: Any) -> WebhookSink:
    doc = {"name": "hook", "kind": "webhook", "url": url, "secret": SECRET, "timeout_s": 5, **options}
    s = build_sink(SinkConfig.from_dict(doc))
    assert isinstance(s, WebhookSink)
    return s


async def deliver_until_done(s: WebhookSink, events: list[dict], rounds: int = 10) -> list[list[Outcome]]:
    history = []
    todo = list(events)
    for _ in range(rounds):
        outcomes = await s.deliver(todo)
        history.append(outcomes)
        done = {o.event_id for o in outcomes if o.done}
        todo = [e for e in todo if e["id"] not in done]
        if not todo:
            break
    assert not todo, history[-1]
    return history


async def test_structured_delivery_is_signed_keyed_and_received_once(receiver: StandIn) -> None:
    events = sample_events(8)
    async with hook(receiver.url + "/hooks/pos") as s:
        assert all(o.done for o in await s.deliver(events))
        again = await s.deliver(events[:3])  # a redelivery after an unknown outcome
        assert all(o.done for o in again)
    got = receiver.get("/_standin/events")["events"]
    assert sorted(e["id"] for e in got) == sorted(e["id"] for e in events)  # concurrent: any order
    reqs = receiver.requests()
    assert all(r["status"] == 200 for r in reqs) and len(reqs) == len(events) + 3
    for r in reqs:
        assert r["signature"] == sign(SECRET, r["body"].encode())
        assert r["content_type"].startswith("application/cloudevents+json")


async def test_receiver_failing_the_first_attempts_gets_every_event_exactly_once(receiver: StandIn) -> None:
    receiver.faults(fail_first=3, fail_status=503, retry_after=1)
    events = sample_events(6)
    async with hook(receiver.url + "/h", ordering="strict") as s:
        history = await deliver_until_done(s, events)
    first = history[0]
    assert first[0].status == "transient" and first[0].retry_after == 1.0
    assert all("not attempted" in o.reason for o in first[1:])  # a strict lane stops at the first failure
    assert len(history) == 4
    got = [e["id"] for e in receiver.get("/_standin/events")["events"]]
    assert got == [e["id"] for e in events]
    assert [r["status"] for r in receiver.requests()][:3] == [503, 503, 503]


async def test_4xx_is_permanent_and_other_events_still_flow(tmp_path: Path) -> None:
    events = sample_events(4)
    bad = events[1]["id"]
    r = start("webhook_receiver", tmp_path, "--secret", SECRET, "--bad-ids", bad)
    try:
        async with hook(r.url + "/h") as s:
            outcomes = await s.deliver(events)
        assert [o.status for o in outcomes] == ["ok", "permanent"] + ["ok"] * (len(events) - 2)
        assert "HTTP 400" in outcomes[1].reason
        async with hook(r.url + "/h", secret="wrong") as s:
            wrong = await s.deliver(events[2:3])
        assert wrong[0].status == "permanent" and "401" in wrong[0].reason
    finally:
        r.stop()


async def test_rate_limit_is_transient_with_retry_after(tmp_path: Path) -> None:
    r = start("webhook_receiver", tmp_path, "--rate", "2")
    try:
        events = sample_events(10)
        async with hook(r.url + "/h", concurrency=10) as s:
            outcomes = await s.deliver(events)
            limited = [o for o in outcomes if not o.done]
            assert limited and all(o.status == "transient" and (o.retry_after or 0) >= 1 for o in limited)
            assert all("429" in o.reason for o in limited)
    finally:
        r.stop()


async def test_binary_mode_parses_with_the_sdk(receiver: StandIn) -> None:
    events = sample_events(3)
    async with hook(receiver.url + "/b", mode="binary") as s:
        assert all(o.done for o in await s.deliver(events))
    by_key = {r["idempotency_key"]: r for r in receiver.requests()}
    assert len(by_key) == len(events)
    for event in events:
        req = by_key[event["id"]]
        headers = {f"ce-{k}": v for k, v in req["ce"].items()} | {"content-type": req["content_type"]}
        parsed = from_http(headers, req["body"])
        assert parsed["id"] == event["id"] and parsed.data == event["data"]
        assert req["idempotency_key"] == event["id"]


async def test_connection_refused_is_transient_unknown() -> None:
    async with hook(f"http://127.0.0.1:{free_port()}/h") as s:
        outcomes = await s.deliver(sample_events(1))
    assert outcomes[0].status == "transient" and "connection failed" in outcomes[0].reason


async def test_two_senders_of_the_same_events_reach_the_receiver_once_each(receiver: StandIn) -> None:
    """Two delivery processes (two sinks, two connections) racing on the same events: same key, one effect."""
    import asyncio

    events = sample_events(10)
    async with hook(receiver.url + "/h") as one, hook(receiver.url + "/h") as two:
        a, b = await asyncio.gather(one.deliver(events), two.deliver(events[::-1]))
    assert all(o.done for o in a + b)
    got = [e["id"] for e in receiver.get("/_standin/events")["events"]]
    assert sorted(got) == sorted(e["id"] for e in events)
    reqs = receiver.requests()
    assert len(reqs) == 2 * len(events) and all(r["idempotency_key"] for r in reqs)
