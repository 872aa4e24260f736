"""Shopify inventory adapter against the Shopify GraphQL stand-in: coalescing, idempotency, throttling."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from forwarding_support import events_for

from cloud_hub.events import SinkConfig
from cloud_hub.sinks import build_sink
from cloud_hub.sinks.shopify_inventory import ShopifyInventorySink, idempotency_key
from storesync_harness.standins import StandIn, start

LOC = "gid://shopify/Location/1"


@pytest.fixture
def shop(tmp_path: Path) -> Iterator[StandIn]:
    s = start("shopify", tmp_path, "--token", "shpat_t")
    try:
        yield s
    finally:
        s.stop()


def channel(url: str, **extra: Any) -> ShopifyInventorySink:
    doc = {
        "name": "shopify",
        "kind": "shopify_inventory",
        "role": "channel",
        "channel": "shopify",
        "shop_url": url,
        "access_token": "shpat_t",
        "locations": {"S1": LOC},
        "timeout_s": 5,
        **extra,
    }
    s = build_sink(SinkConfig.from_dict(doc))
    assert isinstance(s, ShopifyInventorySink)
    return s


def sale(sku_qty: dict[str, int], n: int) -> dict:
    prices = {"TEE-BLK-M": "19.90", "JEANS-32": "59.00", "CAP-RED": "14.50", "NOT-ONLINE": "1.00"}
    lines = [{"sku": k, "qty": str(q), "unit_price": prices[k]} for k, q in sku_qty.items()]
    total = sum(float(prices[k]) * q for k, q in sku_qty.items())
    amount = f"{total:.2f}"
    return {
        "txn_id": f"R1-{n}",
        "register_id": "R1",
        "kind": "sale",
        "occurred_at": "2026-11-22T10:00:00",
        "currency": "EUR",
        "lines": lines,
        "tenders": [{"type": "cash", "amount": amount}],
        "total": amount,
    }


def level(shop: StandIn, sku: str, loc: str = LOC) -> int:
    rows = shop.get("/_standin/state")["levels"]
    return next(r["available"] for r in rows if r["sku"] == sku and r["locationId"] == loc)


def mutations(shop: StandIn) -> list[dict]:
    return [r for r in shop.requests() if "inventoryAdjustQuantities" in r["body"]]


def restock_return(sku: str, n: int) -> dict:
    ret = sale({sku: 1}, n)
    ret["kind"] = "return"
    ret["lines"][0]["disposition"] = "restock"
    return ret


async def test_deltas_are_coalesced_into_one_idempotent_mutation(shop: StandIn) -> None:
    events = events_for(sale({"TEE-BLK-M": 2, "CAP-RED": 1}, 1), 1)
    events += events_for(sale({"TEE-BLK-M": 1, "NOT-ONLINE": 3}, 2), 2)
    events += events_for(restock_return("TEE-BLK-M", 3), 3)
    async with channel(shop.url) as s:
        outcomes = await s.deliver(events)
        assert all(o.done for o in outcomes)
        assert level(shop, "TEE-BLK-M") == 100 - 2 - 1 + 1 and level(shop, "CAP-RED") == 99
        sent = mutations(shop)
        assert len(sent) == 1
        body = json.loads(sent[0]["body"])
        inv_ids = [e["id"] for e in events if e["id"].endswith(":inventory")]
        assert f'@idempotent(key: "{idempotency_key(inv_ids)}")' in body["query"]
        changes = body["variables"]["input"]["changes"]
        assert all(c["changeFromQuantity"] is None and c["locationId"] == LOC for c in changes)
        assert sorted(c["delta"] for c in changes) == [-2, -1]
        assert body["variables"]["input"]["name"] == "available"
        # the same batch again (a redelivery): same key, Shopify replays, stock unchanged
        assert all(o.done for o in await s.deliver(events))
    assert level(shop, "TEE-BLK-M") == 98 and len(mutations(shop)) == 2
    assert len(shop.get("/_standin/state")["groups"]) == 1
    skipped = [o for o in outcomes if "not an inventory event" in o.reason]
    assert len(skipped) == 3  # sale, sale, return events need no call


async def test_unknown_outcome_is_resent_with_the_same_key_whatever_the_next_batch(shop: StandIn) -> None:
    a = events_for(sale({"JEANS-32": 2}, 1), 1)
    b = events_for(sale({"JEANS-32": 1}, 2), 2)
    shop.faults(lose_responses=1, hang_s=3)
    items = {"JEANS-32": "gid://shopify/InventoryItem/1002"}  # no lookup query: the mutation is lost
    async with channel(shop.url, timeout_s=1, inventory_items=items) as s:
        first = await s.deliver(a + b)
        assert {o.status for o in first if o.event_id.endswith(":inventory")} == {"transient"}
        assert level(shop, "JEANS-32") == 97  # applied, but we could not know
        await asyncio.sleep(2.5)
        c = events_for(sale({"JEANS-32": 4}, 3), 3)
        second = await s.deliver(b + c)  # a different batch that holds one in-doubt event
        assert all(o.done for o in second)
        third = await s.deliver(a)  # settled by the resend: no call, no double count
        assert all(o.done for o in third)
    assert level(shop, "JEANS-32") == 100 - 3 - 4
    replies = [json.loads(r["response"]) for r in mutations(shop)]
    assert len(replies) == 3  # lost one, its resend (replayed by key), the new batch


async def test_throttling_is_transient_and_retried_after_the_refill(tmp_path: Path) -> None:
    shop = start("shopify", tmp_path, "--token", "shpat_t", "--bucket", "20", "--restore", "10")
    try:
        async with channel(shop.url, inventory_items={"CAP-RED": "gid://shopify/InventoryItem/1004"}) as s:
            outcomes = []
            for n in range(1, 5):
                outcomes += await s.deliver(events_for(sale({"CAP-RED": 1}, n), n))
            throttled = [o for o in outcomes if o.status == "transient"]
            assert throttled and all("THROTTLED" in o.reason and (o.retry_after or 0) > 0 for o in throttled)
            await asyncio.sleep(max(o.retry_after or 0 for o in throttled) + 0.2)
            retry = [e for n in range(1, 5) for e in events_for(sale({"CAP-RED": 1}, n), n)]
            retry = [e for e in retry if e["id"] in {o.event_id for o in throttled}]
            for _ in range(5):
                res = await s.deliver(retry)
                retry = [e for e, o in zip(retry, res, strict=True) if not o.done]
                if not retry:
                    break
                await asyncio.sleep(max(o.retry_after or 0.5 for o in res if not o.done))
            assert not retry
        assert level(shop, "CAP-RED") == 96
        bodies = [json.loads(r["response"]) for r in shop.requests() if r.get("response")]
        assert any(b.get("errors", [{}])[0].get("extensions", {}).get("code") == "THROTTLED" for b in bodies)
    finally:
        shop.stop()


async def test_user_errors_and_fractions_are_permanent(shop: StandIn) -> None:
    events = events_for(sale({"TEE-BLK-M": 1}, 1), 1)
    async with channel(shop.url, locations={"S1": "gid://shopify/Location/999"}) as s:
        bad = await s.deliver(events)
    inv = [o for o in bad if o.event_id.endswith(":inventory")][0]
    assert inv.status == "permanent" and "INVALID_LOCATION" in inv.reason
    frac = sale({"TEE-BLK-M": 1}, 2)
    frac["lines"][0]["qty"] = "0.5"
    frac["total"] = frac["tenders"][0]["amount"] = "9.95"
    async with channel(shop.url) as s:
        res = await s.deliver(events_for(frac, 2))
    assert [o.status for o in res] == ["ok", "permanent"] and "fractional" in res[1].reason
    async with channel(shop.url, access_token="wrong") as s:
        denied = await s.deliver(events_for(sale({"CAP-RED": 1}, 3), 3))
    assert denied[1].status == "permanent" and "401" in denied[1].reason
