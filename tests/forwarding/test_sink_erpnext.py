"""ERPNext adapter against the ERPNext stand-in process: invoices, returns, voids, write-offs, retries."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from forwarding_support import events_for

from cloud_hub.events import SinkConfig
from cloud_hub.sinks import build_sink
from cloud_hub.sinks.erpnext import ErpNextSink
from storesync_harness.pos import Pos
from storesync_harness.standins import StandIn, start


@pytest.fixture
def site(tmp_path: Path) -> Iterator[StandIn]:
    s = start("erpnext", tmp_path, "--api-key", "k1", "--api-secret", "s1")
    try:
        yield s
    finally:
        s.stop()


def erp(url: str, **extra: Any) -> ErpNextSink:
    doc = {
        "name": "erp",
        "kind": "erpnext",
        "role": "erp",
        "ordering": "strict",
        "url": url,
        "api_key": "k1",
        "api_secret": "s1",
        "company": "StoreSync Retail",
        "warehouse": "Stores - SR",
        "tax_account": "VAT - SR",
        "timezone": "Europe/Berlin",
        "timeout_s": 5,
        **extra,
    }
    s = build_sink(SinkConfig.from_dict(doc))
    assert isinstance(s, ErpNextSink)
    return s


def invoices(site: StandIn) -> list[dict]:
    return site.get("/_standin/docs/Sales Invoice")["docs"]


def store_return(pos: Pos, sale: dict, disposition: str = "restock") -> dict:
    ret = pos.return_of(sale)
    ret["lines"][0]["disposition"] = disposition
    ret["original"] = {"channel": "store", "order_id": sale["txn_id"]}
    return ret


async def test_sale_return_void_and_writeoff_are_booked(site: StandIn) -> None:
    pos = Pos("R1", seed=3)
    sale, sale2 = pos.sale(), pos.sale()
    events = events_for(sale, 1) + events_for(sale2, 2)
    events += events_for(store_return(pos, sale, "damaged"), 3)
    events += events_for(pos.return_of(sale2, channel="amazon"), 4)
    events += events_for(pos.void_of(sale2), 5)
    async with erp(site.url) as s:
        outcomes = await s.deliver(events)
    assert all(o.done for o in outcomes), [o for o in outcomes if not o.done]
    docs = {d["storesync_event_id"]: d for d in invoices(site)}
    first = docs["S1:1:1"]
    assert first["is_pos"] == 1 and first["update_stock"] == 1 and first["docstatus"] == 1
    assert first["storesync_order_id"] == f"S1/{sale['txn_id']}"
    assert [i["item_code"] for i in first["items"]] == [ln["sku"] for ln in sale["lines"]]
    assert first["posting_date"] == "2026-11-22" and first["set_warehouse"] == "Stores - SR"
    ret = docs["S1:1:3"]
    assert ret["is_return"] == 1 and ret["return_against"] == first["name"] and ret["items"][0]["qty"] == -1
    amazon = docs["S1:1:4"]
    assert amazon["is_return"] == 1 and "return_against" not in amazon and "standalone" in amazon["remarks"]
    assert docs["S1:1:2"]["docstatus"] == 2  # voided → cancelled
    entries = site.get("/_standin/docs/Stock Entry")["docs"]
    writeoffs = [e["id"] for e in events if e["id"].endswith(":writeoff")]
    assert "S1:1:3:writeoff" in writeoffs
    assert [e["storesync_event_id"] for e in entries] == writeoffs
    assert {e["stock_entry_type"] for e in entries} == {"Material Issue"}
    inventory = [o for o in outcomes if o.event_id.endswith(":inventory")]
    assert inventory and all("skipped" in o.reason for o in inventory)
    auth = {r.get("path") for r in site.requests()}
    assert "/api/resource/Sales Invoice" in auth


async def test_unknown_outcome_then_retry_creates_exactly_one_invoice(site: StandIn) -> None:
    events = events_for(Pos("R1", seed=4).sale(), 1)[:1]
    site.faults(lose_responses=1, hang_s=3)  # the invoice is created, the answer comes too late
    async with erp(site.url, timeout_s=1) as s:
        first = await s.deliver(events)
        assert first[0].status == "transient" and "outcome unknown" in first[0].reason
        second = await s.deliver(events)
    assert second[0].done
    made = [d for d in invoices(site) if d["storesync_event_id"] == "S1:1:1"]
    assert len(made) == 1 and second[0].ref == made[0]["name"]
    posts = [r for r in site.requests() if r["method"] == "POST"]
    assert len(posts) == 1  # the retry looked the invoice up instead of posting again


async def test_failing_first_attempts_and_rate_limits_are_transient(tmp_path: Path) -> None:
    site = start("erpnext", tmp_path, "--api-key", "k1", "--api-secret", "s1", "--rate", "4")
    try:
        site.faults(fail_first=2, fail_status=503, retry_after=1)
        pos = Pos("R1", seed=5)
        events = [e for seq in range(1, 7) for e in events_for(pos.sale(), seq) if e["id"].count(":") == 2]
        statuses: list[str] = []
        todo = list(events)
        async with erp(site.url, ordering="none") as s:
            for _ in range(20):
                outcomes = await s.deliver(todo)
                statuses += [o.status for o in outcomes]
                for o in outcomes:
                    if not o.done:
                        assert o.status == "transient" and o.retry_after is not None
                todo = [e for e, o in zip(todo, outcomes, strict=True) if not o.done]
                if not todo:
                    break
                await asyncio.sleep(min(o.retry_after or 0.2 for o in outcomes if not o.done))
        assert not todo and "transient" in statuses
        codes = [r["status"] for r in site.requests()]
        assert codes[:2] == [503, 503] and 429 in codes
        ids = sorted(d["storesync_event_id"] for d in invoices(site))
        assert ids == sorted(e["id"] for e in events)  # each exactly once
    finally:
        site.stop()


async def test_validation_errors_and_bad_credentials_are_permanent(site: StandIn) -> None:
    sale = Pos("R1", seed=6).sale()
    sale["lines"][0]["sku"] = "NOT-IN-ERP"
    async with erp(site.url) as s:
        bad_item = await s.deliver(events_for(sale, 1)[:1])
    assert bad_item[0].status == "permanent" and "Could not find Item" in bad_item[0].reason
    async with erp(site.url, api_secret="nope") as s:
        denied = await s.deliver(events_for(Pos("R1").sale(), 2)[:1])
    assert denied[0].status == "permanent" and "401" in denied[0].reason
    cash_only = Pos("R1", seed=7).sale()
    cash_only["tenders"][0] = {"type": "voucher", "amount": cash_only["tenders"][0]["amount"]}
    async with erp(site.url) as s:
        no_mode = await s.deliver(events_for(cash_only, 3)[:1])
    assert no_mode[0].status == "permanent" and "voucher" in no_mode[0].reason
    assert invoices(site) == []
