"""The lease of a claim counts from its sink call, not from when it was claimed ahead of time.

Three delivery engines (three hub processes' workers) on one database, a sink whose calls take most of
the lease: two engines claim a batch each plus their next batch ahead of time, the third finds nothing
and keeps polling. If a prefetched batch's lease counted from its claim, it would run out during its own
call and the idle engine would deliver the same events again. Checked by what the sink received: every
event exactly once.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from cloud_hub.delivery import DeliveryEngine
from cloud_hub.events import SinkConfig
from cloud_hub.forwarding import DeliverySettings, Forwarder, ForwardingConfig
from cloud_hub.sinks import Outcome, Sink
from cloud_hub.storage import NewDelivery, NewEvent
from cloud_hub.storage.sqlite import SQLiteStorage

LEASE_S = 2.0
CALL_S = 1.3  # under the lease from the call's start, over it from a claim made one call earlier
EVENTS = 8


class SlowSink(Sink):
    """Takes ``CALL_S`` per call and confirms every event; records who delivered what."""

    received: Counter[str]
    guard = threading.Lock()

    def __init__(self, config: SinkConfig, received: Counter[str]) -> None:
        super().__init__(config)
        self.received = received

    async def deliver(self, events: Sequence[Mapping[str, Any]]) -> list[Outcome]:
        await asyncio.sleep(CALL_S)
        with self.guard:
            self.received.update(e["id"] for e in events)
        return [Outcome.ok(e["id"]) for e in events]


def test_a_prefetched_claim_is_not_taken_over_during_its_own_call(tmp_path: Path):
    cfg = SinkConfig.from_dict({"name": "slow", "kind": "jsonl", "path": str(tmp_path / "unused.jsonl")})
    seeded = SQLiteStorage(tmp_path / "hub.db")
    events = [NewEvent("urn:t", f"S1:1:{i}", "S1", 1, i, "t", f'{{"id":"S1:1:{i}"}}', "2026-11-22T09:00:00.000Z")
              for i in range(1, EVENTS + 1)]  # fmt: skip
    with seeded.transaction() as tx:
        tx.insert_events(events, [NewDelivery(i, "slow", "S1", 0.0) for i in range(EVENTS)])
    received: Counter[str] = Counter()
    config = ForwardingConfig((cfg,), DeliverySettings(batch_size=2, poll_s=0.05, lease_s=LEASE_S))
    stores = [SQLiteStorage(tmp_path / "hub.db") for _ in range(3)]
    engines = [DeliveryEngine(s, config, Forwarder([]), sink_factory=lambda c: SlowSink(c, received)) for s in stores]
    for engine in engines:
        engine.start()
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            with seeded.snapshot() as tx:
                counts = {c.sink: c.counts for c in tx.sink_counts()}
            if counts == {"slow": {"done": EVENTS}}:
                break
            time.sleep(0.1)
    finally:
        for engine in engines:
            engine.stop()
        for s in (*stores, seeded):
            s.close()
    assert counts == {"slow": {"done": EVENTS}}
    assert received == Counter({e.id: 1 for e in events}), "an event was delivered twice"
