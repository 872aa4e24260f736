"""Canonical CloudEvents from records, their stability, SDK validity, and routing (DESIGN §6)."""

from __future__ import annotations

import json
from decimal import Decimal

import pytest
from cloudevents.core.formats.json import JSONFormat
from cloudevents.v1.http import from_dict, from_http, from_json
from forwarding_support import body_for, events_for, sample_events
from hypothesis import given, settings
from hypothesis import strategies as st

from cloud_hub.events import (
    INVENTORY_TYPE,
    RetryPolicy,
    SinkConfig,
    derive_events,
    event_json,
    route,
)
from cloud_hub.sinks.webhook import encode_request
from cloud_hub.timenorm import normalize_times
from storesync_harness.pos import Pos

SALE = {
    "txn_id": "R2-000917",
    "register_id": "R2",
    "kind": "sale",
    "occurred_at": "2026-11-22T10:15:03",
    "currency": "EUR",
    "lines": [
        {"sku": "TEE-BLK-M", "qty": "2", "unit_price": "19.90", "discount": "0.00", "tax": "6.36"},
        {"sku": "CAP-RED", "qty": "1", "unit_price": "14.50", "tax": "2.76"},
        {"sku": "TEE-BLK-M", "qty": "1", "unit_price": "19.90", "tax": "3.18"},
    ],
    "tenders": [{"type": "card", "amount": "86.50", "card_last4": "4242"}],
    "total": "86.50",
}


def a_return(original: dict | None = None, dispositions=("restock", "damaged")) -> dict:
    lines = [
        {"sku": "TEE-BLK-M", "qty": "1", "unit_price": "19.90", "tax": "3.18", "disposition": dispositions[0]},
        {"sku": "CAP-RED", "qty": "1", "unit_price": "14.50", "tax": "2.76", "disposition": dispositions[1]},
    ]
    txn = {
        "txn_id": "R2-000950",
        "register_id": "R2",
        "kind": "return",
        "occurred_at": "2026-11-22T11:00:00",
        "currency": "EUR",
        "lines": lines,
        "tenders": [{"type": "cash", "amount": "40.34"}],
        "total": "40.34",
    }
    if original:
        txn["original"] = original
    return txn


def by_id(events: list[dict]) -> dict[str, dict]:
    return {e["id"]: e for e in events}


# ------------------------------------------------------------------------------------ derivation


def test_sale_gives_the_transaction_event_and_a_net_inventory_event() -> None:
    events = events_for(SALE, 17, "S1")
    assert [e["id"] for e in events] == ["S1:1:17", "S1:1:17:inventory"]
    sale, inv = events
    assert sale["type"] == "retail.pos.sale.v1" and sale["source"] == "urn:storesync:store:S1"
    assert sale["specversion"] == "1.0" and sale["datacontenttype"] == "application/json"
    assert sale["time"] == "2026-11-22T09:15:03.000Z" == sale["data"]["occurred_at_utc"]
    assert sale["subject"] == "R2/R2-000917"
    data = sale["data"]
    assert data["txn"]["occurred_at"] == "2026-11-22T10:15:03"  # original kept beside the normalized time
    assert {"captured_at_utc", "hub_received_at", "time_quality"} <= set(data)
    assert inv["type"] == INVENTORY_TYPE
    assert inv["data"]["adjustments"] == [{"sku": "CAP-RED", "delta": "-1"}, {"sku": "TEE-BLK-M", "delta": "-3"}]
    assert inv["data"]["caused_by"] == "S1:1:17" and inv["data"]["reason"] == "sale"
    assert "audience" not in inv


def test_return_restocks_and_writes_off_damaged_lines_for_the_erp_only() -> None:
    events = by_id(events_for(a_return(), 20))
    assert set(events) == {"S1:1:20", "S1:1:20:inventory", "S1:1:20:writeoff"}
    assert events["S1:1:20"]["type"] == "retail.pos.return.v1"
    assert events["S1:1:20:inventory"]["data"]["adjustments"] == [{"sku": "TEE-BLK-M", "delta": "1"}]
    wo = events["S1:1:20:writeoff"]
    assert wo["audience"] == "erp" and wo["data"]["reason"] == "damaged"
    assert wo["data"]["adjustments"] == [{"sku": "CAP-RED", "delta": "-1"}]


def test_all_damaged_return_has_no_sellable_stock_change() -> None:
    ids = [e["id"] for e in events_for(a_return(dispositions=("damaged", "damaged")), 21)]
    assert ids == ["S1:1:21", "S1:1:21:writeoff"]


def test_void_gives_one_event() -> None:
    void = Pos("R2").void_of(SALE)
    events = events_for(void, 22)
    assert [(e["id"], e["type"]) for e in events] == [("S1:1:22", "retail.pos.void.v1")]
    assert events[0]["data"]["txn"]["voided_txn_id"] == "R2-000917"


def test_unknown_kind_is_refused() -> None:
    body = json.loads(body_for(SALE, 1))
    body["kind"] = "refund"
    norm = {"occurred_at_utc": "x", "captured_at_utc": "x", "hub_received_at": "x", "time_quality": {}}
    with pytest.raises(ValueError):
        derive_events(body, norm)


# ------------------------------------------------------------------------------- SDK validation


def test_every_event_is_a_valid_cloudevent_for_the_official_sdk() -> None:
    events = sample_events(60) + events_for(a_return({"channel": "amazon", "order_id": "302-1"}), 99)
    assert len({e["id"] for e in events}) == len(events)
    fmt = JSONFormat()
    for event in events:
        text = event_json(event)
        parsed = from_json(text)
        assert parsed["id"] == event["id"] and parsed["type"] == event["type"]
        assert parsed["source"] == event["source"] and parsed.data == event["data"]
        assert from_dict(event)["time"] == event["time"]
        strict = fmt.read(None, text.encode())  # the 2.x core validates every attribute
        assert strict.get_id() == event["id"] and strict.get_time() is not None
        headers, body = encode_request(event, "binary")
        binary = from_http({k.lower(): v for k, v in headers.items()}, body)
        assert binary["id"] == event["id"] and binary.data == event["data"]


# ------------------------------------------------------------------------------------- stability

money = st.decimals(min_value=Decimal("0.01"), max_value=Decimal("500"), places=2)
line = st.fixed_dictionaries(
    {"sku": st.sampled_from(["A-1", "B-2", "C-3"]), "qty": st.integers(1, 5), "unit_price": money}
)


@settings(max_examples=60, deadline=None)
@given(lines=st.lists(line, min_size=1, max_size=4), seq=st.integers(1, 10**6), theta=st.floats(-1e7, 1e7))
def test_the_same_record_always_gives_byte_identical_events(lines: list[dict], seq: int, theta: float) -> None:
    raw = [{"sku": x["sku"], "qty": str(x["qty"]), "unit_price": str(x["unit_price"])} for x in lines]
    total = sum(Decimal(x["qty"]) * Decimal(x["unit_price"]) for x in raw)
    txn = {
        "txn_id": f"T{seq}",
        "register_id": "R9",
        "kind": "sale",
        "occurred_at": "2026-10-25T02:30:00",
        "currency": "EUR",
        "lines": raw,
        "tenders": [{"type": "cash", "amount": str(total)}],
        "total": str(total),
    }
    body = body_for(txn, seq, "S7")

    def derive(b):
        doc = json.loads(b)
        norm = normalize_times(
            doc, tz="Europe/Berlin", clock={"theta_ms": theta, "delta_ms": 9.0}, hub_received_at="2026-10-25T03:00:00Z"
        )
        return [event_json(e) for e in derive_events(b, norm)]

    first, again = derive(body), derive(body)
    assert first == again
    reparsed = json.dumps(json.loads(body), sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    assert derive(reparsed) == first
    ids = [json.loads(t)["id"] for t in first]
    assert ids[0] == f"S7:1:{seq}" and len(set(ids)) == len(ids)


# ---------------------------------------------------------------------------------------- router

SINKS = [
    SinkConfig.from_dict(
        {"name": "erp", "kind": "erpnext", "role": "erp", "types": ["retail.*"], "ordering": "strict"}
    ),
    SinkConfig.from_dict(
        {
            "name": "webshop",
            "kind": "webhook",
            "role": "channel",
            "channel": "webshop",
            "types": ["retail.inventory.*", "retail.pos.return.v1"],
        }
    ),
    SinkConfig.from_dict(
        {
            "name": "amazon",
            "kind": "webhook",
            "role": "channel",
            "channel": "amazon",
            "types": ["retail.inventory.*", "retail.pos.return.v1"],
        }
    ),
    SinkConfig.from_dict(
        {"name": "shopify", "kind": "shopify_inventory", "role": "channel", "channel": "shopify", "types": ["*"]}
    ),
    SinkConfig.from_dict({"name": "bus", "kind": "nats", "role": "stream"}),
    SinkConfig.from_dict({"name": "file", "kind": "jsonl", "role": "archive", "path": "/tmp/x.jsonl"}),
]


def test_sale_and_its_inventory_routing() -> None:
    sale, inv = events_for(SALE, 1)
    assert route(SINKS, sale) == ["erp", "shopify", "bus", "file"]
    assert route(SINKS, inv) == ["erp", "webshop", "amazon", "shopify", "bus", "file"]


def test_marketplace_return_goes_to_the_erp_and_that_channel_only() -> None:
    events = by_id(events_for(a_return({"channel": "amazon", "order_id": "302-1234567-1234567"}), 5))
    assert route(SINKS, events["S1:1:5"]) == ["erp", "amazon", "bus", "file"]
    assert route(SINKS, events["S1:1:5:writeoff"]) == ["erp"]
    # the restocked unit is store stock again: every inventory subscriber learns of it
    assert route(SINKS, events["S1:1:5:inventory"]) == ["erp", "webshop", "amazon", "shopify", "bus", "file"]


@pytest.mark.parametrize("original", [None, {"channel": "store", "order_id": "R2-000917"}])
def test_store_return_of_a_store_sale_goes_to_no_channel_sink(original: dict | None) -> None:
    ret = events_for(a_return(original), 6)[0]
    assert route(SINKS, ret) == ["erp", "bus", "file"]


def test_sink_config_from_toml_table() -> None:
    cfg = SinkConfig.from_dict(
        {
            "name": "hook",
            "kind": "webhook",
            "url": "http://x",
            "secret": "s",
            "types": "retail.pos.*",
            "retry": {"max_attempts": 3, "base_s": 0.5, "cap_s": 10},
        }
    )
    assert cfg.types == ("retail.pos.*",) and cfg.role == "stream" and cfg.ordering == "none"
    assert dict(cfg.options) == {"url": "http://x", "secret": "s"}
    assert cfg.retry == RetryPolicy(3, 0.5, 10.0)
    for bad in (
        {"kind": "jsonl"},
        {"name": "a", "kind": "jsonl", "role": "sales"},
        {"name": "a", "kind": "webhook", "role": "channel"},
        {"name": "a", "kind": "webhook", "ordering": "fifo"},
        {"name": "a", "kind": "webhook", "retry": {"max_attempts": 0}},
    ):
        with pytest.raises(ValueError):
            SinkConfig.from_dict(bad)


def test_backoff_is_full_jitter_and_capped() -> None:
    policy = RetryPolicy(max_attempts=5, base_s=1.0, cap_s=30.0)
    assert policy.backoff(1, 0.999) < 1.0 and policy.backoff(3, 0.5) == 2.0
    assert policy.backoff(20, 0.999) <= 30.0 and policy.backoff(4, 0.0) == 0.0
