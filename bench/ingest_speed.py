"""Ingest speed of the hub core, in-process: ``ingest_burst`` over N records in 2,000-record bursts.

Measures the database transaction per burst (checks, ledger insert, ``after_store`` hooks), not
HTTP. ``--forwarding`` adds the hook that derives events and delivery rows, with the default sink
(``default``) or the five sinks of docs/sinks.md (``five``), so the cost of the hook shows.

    python bench/ingest_speed.py [--records 100000] [--forwarding none|default|five]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cloud_hub import registry
from cloud_hub.ingest import AfterStore, ingest_burst
from cloud_hub.storage.sqlite import SQLiteStorage
from storesync_harness.pos import Pos
from sync_protocol import chain, keys
from sync_protocol.record import make_body, seal
from sync_protocol.transaction import parse_transaction
from sync_protocol.wire import BurstRequest, EnrollRequest

FIVE = [
    {"name": "archive", "kind": "jsonl", "role": "archive", "path": "events.jsonl"},
    {"name": "hook", "kind": "webhook", "role": "channel", "channel": "webshop", "types": ["retail.pos.*"],
     "url": "http://127.0.0.1:9/h"},
    {"name": "bus", "kind": "nats", "role": "stream"},
    {"name": "erp", "kind": "erpnext", "role": "erp", "ordering": "strict", "url": "http://127.0.0.1:9",
     "api_key": "k", "api_secret": "s", "company": "C"},
    {"name": "shop", "kind": "shopify_inventory", "role": "channel", "channel": "shopify",
     "types": ["retail.inventory.*"], "shop_url": "http://127.0.0.1:9", "access_token": "t"},
]  # fmt: skip


INLINE_MAX = 100


def build_bursts(store: str, epoch: int, key: keys.Ed25519PrivateKey, n: int, size: int) -> list[BurstRequest]:
    regs = [Pos(f"R{i}", seed=3) for i in range(4)]
    head = chain.genesis(store, epoch)
    records = []
    for seq in range(1, n + 1):
        txn = parse_transaction(regs[seq % 4].mixed()).canonical()
        body = make_body(store_id=store, epoch=epoch, seq=seq, kind=txn["kind"],
                         captured_at="2026-11-22T10:15:04.120+01:00", txn=txn)  # fmt: skip
        rec = seal(key, head, seq, body)
        head = rec.chain
        records.append(rec)
    clock = {"theta_ms": 12.5, "delta_ms": 30.0, "sampled_at": "2026-11-22T09:15:00.000+00:00"}
    return [
        BurstRequest.model_validate(
            {
                "store_id": store,
                "epoch": epoch,
                "first_seq": records[i].seq,
                "records": [r.wire() for r in records[i : i + size]],
                "sent_at": "2026-11-22T09:15:03.000Z",
                "clock": clock,
            }
        )  # fmt: skip
        for i in range(0, n, size)
    ]


def hooks_for(mode: str, data_dir: Path) -> list[AfterStore]:
    if mode == "none":
        return []
    from cloud_hub.forwarding import Forwarder, ForwardingConfig, load_config

    config = load_config(None, data_dir) if mode == "default" else ForwardingConfig.from_doc({"sinks": FIVE}, data_dir)
    return [Forwarder(config.sinks, inline_max=INLINE_MAX)]


def run(records: int, size: int, mode: str) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="ingest-speed-") as tmp:
        storage = SQLiteStorage(Path(tmp) / "hub.db")
        hub_key = keys.generate()
        now = datetime(2026, 11, 22, 9, 15, 3, tzinfo=UTC)
        issued = registry.add_store(storage, "S1", "Europe/Berlin", now=now)
        key = keys.generate()
        registry.enroll(storage, EnrollRequest(token=issued.token, public_key=keys.public_hex(key), hostname="b"),
                        hub_key=hub_key, now=now)  # fmt: skip
        bursts = build_bursts("S1", 1, key, records, size)
        hooks = hooks_for(mode, Path(tmp))
        t0 = time.perf_counter()
        for burst in bursts:
            ingest_burst(storage, burst, key_id=keys.key_id(key), hub_key=hub_key, after_store=hooks)
        wall = time.perf_counter() - t0
        storage.close()
    return {"bench": "ingest_speed", "forwarding": mode, "records": records, "burst": size,
            "inline_max": INLINE_MAX, "seconds": round(wall, 2), "records_per_s": round(records / wall, 1)}  # fmt: skip


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--records", type=int, default=100_000)
    ap.add_argument("--burst", type=int, default=2_000)
    ap.add_argument("--forwarding", nargs="+", default=["none", "default"], choices=["none", "default", "five"])
    ap.add_argument("--inline-max", type=int, default=100, help="forwarding inline_max (10000: always inline)")
    args = ap.parse_args()
    global INLINE_MAX
    INLINE_MAX = args.inline_max
    for mode in args.forwarding:
        print(json.dumps(run(args.records, args.burst, mode)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
