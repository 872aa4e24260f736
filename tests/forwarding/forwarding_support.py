"""Builders shared by the forwarding tests: real record bodies, normalized, turned into events."""

from __future__ import annotations

import json
import os
import socket
from typing import Any

import pytest

from cloud_hub.events import derive_events
from cloud_hub.timenorm import normalize_times
from storesync_harness.pos import Pos
from sync_protocol.record import make_body
from sync_protocol.transaction import parse_transaction

CAPTURED = "2026-11-22T10:16:00.000+01:00"
RECEIVED = "2026-11-22T09:16:01.000Z"


def body_for(raw_txn: dict[str, Any], seq: int, store: str = "S1", captured: str = CAPTURED) -> str:
    """The canonical record body of a raw POS transaction."""
    txn = parse_transaction(raw_txn).canonical()
    return make_body(store_id=store, epoch=1, seq=seq, kind=txn["kind"], captured_at=captured, txn=txn)


def events_for(raw_txn: dict[str, Any], seq: int, store: str = "S1") -> list[dict[str, Any]]:
    """Every event of one transaction, as the hub would derive them."""
    body = body_for(raw_txn, seq, store)
    norm = normalize_times(
        json.loads(body), tz="Europe/Berlin", clock={"theta_ms": 12.0, "delta_ms": 30.0}, hub_received_at=RECEIVED
    )
    return derive_events(body, norm)


def sample_events(n_txns: int, store: str = "S1", seed: int = 1) -> list[dict[str, Any]]:
    """Events of ``n_txns`` mixed transactions of one register, in seq order."""
    pos = Pos("R1", seed=seed)
    out: list[dict[str, Any]] = []
    for seq in range(1, n_txns + 1):
        out.extend(events_for(pos.mixed(), seq, store))
    return out


def require_nats(host: str = "127.0.0.1", port: int = 4222) -> None:
    """Skip without NATS, or fail under STORESYNC_REQUIRE_SERVICES=1 (as tests/conftest.py does)."""
    try:
        with socket.create_connection((host, port), timeout=1):
            return
    except OSError:
        pass
    reason = f"NATS is not reachable on {host}:{port}"
    if os.environ.get("STORESYNC_REQUIRE_SERVICES") == "1":
        pytest.fail(f"{reason} and STORESYNC_REQUIRE_SERVICES=1", pytrace=False)
    pytest.skip(reason)
