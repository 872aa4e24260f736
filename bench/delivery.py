"""Delivery throughput: the hub's delivery workers sending N stored events to one sink.

The events are written into a fresh hub database first (as ingest would), then a
:class:`~cloud_hub.delivery.DeliveryEngine` with that one sink runs until every delivery is done:
claims, sink calls and "done" marks all count. Targets: NATS JetStream on 127.0.0.1:4222 (the real
server; target ≥ 10,000 events/s on 2 cores) and the webhook receiver stand-in as a process.

    python bench/delivery.py [--events 100000] [--sinks nats webhook]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from cloud_hub import registry
from cloud_hub.delivery import DeliveryEngine
from cloud_hub.events import SinkConfig, derive_events, event_json, route
from cloud_hub.forwarding import DeliverySettings, Forwarder, ForwardingConfig
from cloud_hub.storage import NewDelivery, NewEvent
from cloud_hub.storage.sqlite import SQLiteStorage
from cloud_hub.timenorm import normalize_times
from storesync_harness.pos import Pos
from storesync_harness.standins import start
from sync_protocol.record import make_body
from sync_protocol.transaction import parse_transaction


def seed(storage: SQLiteStorage, cfg: SinkConfig, n: int) -> int:
    """Store ``n`` events (distinct ids, realistic bodies) with one pending delivery each."""
    registry.add_store(storage, "BENCH", "Europe/Berlin")
    pos = Pos("R1", seed=8)
    samples: list[tuple[dict[str, Any], str]] = []
    for seq in range(1, 301):
        txn = parse_transaction(pos.mixed()).canonical()
        body = make_body(store_id="BENCH", epoch=1, seq=seq, kind=txn["kind"],
                         captured_at="2026-11-22T10:00:00.000+01:00", txn=txn)  # fmt: skip
        norm = normalize_times(json.loads(body), tz="Europe/Berlin", clock=None, hub_received_at="2026-11-22T09:00:01Z")
        events = derive_events(body, norm)
        samples += [(e, event_json(e)) for e in events if route([cfg], e)]
    made = 0
    chunk = 5_000
    while made < n:
        events: list[NewEvent] = []
        deliveries: list[NewDelivery] = []
        for i in range(made, min(n, made + chunk)):
            event, text = samples[i % len(samples)]
            eid = f"BENCH:1:{i + 1}"
            text = text.replace(f'"id":"{event["id"]}"', f'"id":"{eid}"', 1)
            events.append(
                NewEvent(event["source"], eid, "BENCH", 1, i + 1, event["type"], text, "2026-11-22T09:00:01Z")
            )
            deliveries.append(NewDelivery(len(events) - 1, cfg.name, "BENCH", 0.0))
        with storage.transaction() as tx:
            tx.insert_events(events, deliveries)
        made += len(events)
    return made


def run_sink(cfg: SinkConfig, n: int, batch: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="bench-delivery-") as tmp:
        storage = SQLiteStorage(Path(tmp) / "hub.db")
        seed(storage, cfg, n)
        config = ForwardingConfig((cfg,), DeliverySettings(batch_size=batch, poll_s=0.05, lease_s=120))
        engine = DeliveryEngine(storage, config, Forwarder([]))
        t0 = time.perf_counter()
        load0 = os.getloadavg()[0]
        engine.start()
        counts: dict[str, int] = {}
        while time.perf_counter() - t0 < 900:
            time.sleep(0.1)
            with storage.snapshot() as tx:  # open rows only (partial index): cheap next to the workers
                counts = next((c.counts for c in tx.sink_counts(include_done=False) if c.sink == cfg.name), {})
            if counts.get("pending", 0) + counts.get("in_flight", 0) == 0:
                break
        wall = time.perf_counter() - t0
        engine.stop()
        with storage.snapshot() as tx:
            counts = next((c.counts for c in tx.sink_counts() if c.sink == cfg.name), {})
        done = counts.get("done", 0)
        storage.close()
    return {
        "bench": "delivery", "sink": cfg.kind, "events": n, "done": done, "dead": counts.get("dead", 0),
        "batch": batch, "seconds": round(wall, 2), "events_per_s": round(done / wall, 1),
        "target_events_per_s": 10_000 if cfg.kind == "nats" else None,
        "load_avg_1m": {"start": round(load0, 2), "end": round(os.getloadavg()[0], 2)},
    }  # fmt: skip


async def _raw_post_rate(url: str, n: int, concurrency: int) -> float:
    """Requests/s the receiver takes from a bare client: the ceiling any sender can reach."""
    import httpx

    sem = asyncio.Semaphore(concurrency)
    async with httpx.AsyncClient(timeout=30) as client:

        async def one(i: int) -> None:
            body = json.dumps({"specversion": "1.0", "id": f"raw-{i}", "source": "urn:bench", "type": "bench"})
            async with sem:
                await client.post(
                    url,
                    content=body,
                    headers={"Idempotency-Key": f"raw-{i}", "Content-Type": "application/cloudevents+json"},
                )

        t0 = time.perf_counter()
        await asyncio.gather(*(one(i) for i in range(n)))
        return n / (time.perf_counter() - t0)


async def _raw_publish_rate(stream: str, subject: str, n: int) -> float:
    """Messages/s a bare client gets acked by a fresh JetStream file stream: what any sender can reach."""
    import nats
    from nats.js.api import StorageType, StreamConfig

    nc = await nats.connect("nats://127.0.0.1:4222")
    try:
        js = nc.jetstream()
        await js.add_stream(StreamConfig(name=stream, subjects=[f"{subject}.>"], storage=StorageType.FILE))
        body = json.dumps({"specversion": "1.0", "id": "x", "source": "urn:bench", "type": "bench"}).encode()
        t0 = time.perf_counter()
        for start in range(0, n, 500):
            acks = [await js.publish_async(f"{subject}.e", body) for _ in range(min(500, n - start))]
            await asyncio.gather(*acks)
        return n / (time.perf_counter() - t0)
    finally:
        await nc.close()


async def _delete_stream(name: str) -> None:
    import nats

    nc = await nats.connect("nats://127.0.0.1:4222")
    try:
        await nc.jetstream().delete_stream(name)
    except Exception:  # noqa: BLE001 - may not exist
        pass
    await nc.close()


def bench_delivery(root: Path, events: int, which: list[str], emit: Any = None) -> list[dict[str, Any]]:
    """Run the delivery benchmark for each sink kind in ``which``; emit each figure."""
    out: list[dict[str, Any]] = []
    emit = emit or (lambda f: print(json.dumps(f), flush=True))
    if "nats" in which:
        tag = uuid.uuid4().hex[:10]
        cfg = SinkConfig.from_dict(
            {"name": "bus", "kind": "nats", "stream": f"BENCH_{tag}", "subject_prefix": f"b{tag}"}
        )
        try:
            figure = run_sink(cfg, events, batch=2_000)
        finally:
            asyncio.run(_delete_stream(f"BENCH_{tag}"))
        raw_tag = uuid.uuid4().hex[:10]
        try:
            raw = asyncio.run(_raw_publish_rate(f"BENCHRAW_{raw_tag}", f"braw{raw_tag}", min(events, 20_000)))
        finally:
            asyncio.run(_delete_stream(f"BENCHRAW_{raw_tag}"))
        figure["baseline"] = {"what": "bare JetStream publishes, 500 in flight, one client", "msg_per_s": round(raw, 1)}
        emit(figure)
        out.append(figure)
    if "webhook" in which:
        receiver = start("webhook_receiver", root / "receiver")
        try:
            raw = asyncio.run(_raw_post_rate(receiver.url + "/raw", 2_000, 8))
            cfg = SinkConfig.from_dict({"name": "hook", "kind": "webhook", "url": receiver.url + "/h"})
            figure = run_sink(cfg, events, batch=1_000)
            figure["receiver_raw_per_s"] = round(raw, 1)  # the stand-in's own ceiling, same concurrency
            figure["baseline"] = {"what": "bare POSTs to the receiver, 8 concurrent", "requests_per_s": round(raw, 1)}
        finally:
            receiver.stop()

        emit(figure)
        out.append(figure)
    return out


def table_line(f: dict[str, Any]) -> str:
    target = f" (target ≥ {f['target_events_per_s']})" if f.get("target_events_per_s") else ""
    if f.get("receiver_raw_per_s"):
        target += f" (the receiver stand-in alone takes {f['receiver_raw_per_s']} requests/s)"
    elif f.get("baseline"):
        target += f" (bare publishes to JetStream: {f['baseline']['msg_per_s']} msg/s)"
    return (
        f"delivery  {f['events']} events to {f['sink']}: {f['events_per_s']} events/s{target}, "
        f"{f['seconds']} s, done {f['done']}, dead {f['dead']}"
    )


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--events", type=int, default=100_000)
    ap.add_argument("--sinks", nargs="+", default=["nats", "webhook"], choices=["nats", "webhook"])
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-delivery-") as tmp:
        figures = bench_delivery(Path(tmp), args.events, args.sinks)
    for f in figures:
        print(table_line(f))
    return 0


if __name__ == "__main__":
    sys.exit(main())
