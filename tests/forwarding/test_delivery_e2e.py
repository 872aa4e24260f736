"""Delivery end to end with real processes: two stores → agents → hub → five sinks.

The remote systems are stand-ins (webhook receiver, ERPNext, Shopify); NATS is the real
nats-server on 127.0.0.1:4222. The hub is killed with SIGKILL while it delivers and restarted; every
receiver must then hold every expected event exactly once and nothing else.
"""

from __future__ import annotations

import asyncio
import json
import re
import sys
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import nats
import pytest
from cloudevents.v1.http import from_json
from forwarding_support import require_nats

from storesync_harness.invariants import PosJournal, check_stores
from storesync_harness.pos import Pos
from storesync_harness.processes import Agent, Hub, Service, free_port, hub_cli
from storesync_harness.standins import StandIn, start

pytestmark = [pytest.mark.slow]

SECRET = "whsec-e2e"
LOCATIONS = {"S1": "gid://shopify/Location/1", "S2": "gid://shopify/Location/2"}


def wait_for(what: str, check: Callable[[], bool], timeout: float = 60.0, every: float = 0.3) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(every)
    raise AssertionError(f"timed out waiting for {what}")


def sinks(hub: Hub) -> dict[str, dict[str, Any]]:
    return {s["name"]: s for s in hub.admin("/v1/admin/sinks")["sinks"]}


def all_settled(hub: Hub) -> bool:
    try:
        view = sinks(hub)
    except httpx.HTTPError:
        return False
    return all(s["pending"] == 0 and s["in_flight"] == 0 for s in view.values())


async def _delete_stream(name: str) -> None:
    nc = await nats.connect("nats://127.0.0.1:4222")
    try:
        await nc.jetstream().delete_stream(name)
    except Exception:  # noqa: BLE001 - it may never have been created
        pass
    await nc.close()


@pytest.fixture
def nats_stream() -> Iterator[dict[str, str]]:
    """A unique JetStream stream and subject prefix, deleted afterwards."""
    require_nats()
    tag = uuid.uuid4().hex[:12]
    names = {"stream": f"E2E_{tag}", "subject_prefix": f"e2e{tag}"}
    yield names
    asyncio.run(_delete_stream(names["stream"]))


async def nats_messages(names: dict[str, str]) -> list[Any]:
    nc = await nats.connect("nats://127.0.0.1:4222")
    try:
        js = nc.jetstream()
        info = await js.stream_info(names["stream"])
        return [await js.get_msg(names["stream"], seq) for seq in range(1, info.state.messages + 1)]
    finally:
        await nc.close()


def hub_toml(webhook: str, erp: str, shop: str, nats_names: dict[str, str]) -> str:
    locations = ", ".join(f'{k} = "{v}"' for k, v in LOCATIONS.items())
    return f"""
[delivery]
batch_size = 40
poll_s = 0.2
lease_s = 4

[[sinks]]
name = "archive"
kind = "jsonl"
role = "archive"
path = "events.jsonl"

[[sinks]]
name = "webshop"
kind = "webhook"
role = "channel"
channel = "webshop"
types = ["retail.pos.*"]
url = "{webhook}/hooks/pos"
secret_env = "E2E_WEBHOOK_SECRET"
retry = {{ base_s = 0.2, cap_s = 1.0, max_attempts = 30 }}

[[sinks]]
name = "bus"
kind = "nats"
role = "stream"
stream = "{nats_names["stream"]}"
subject_prefix = "{nats_names["subject_prefix"]}"

[[sinks]]
name = "erp"
kind = "erpnext"
role = "erp"
ordering = "strict"
url = "{erp}"
api_key = "k1"
api_secret_env = "E2E_ERP_SECRET"
company = "StoreSync Retail"
warehouse = "Stores - SR"
tax_account = "VAT - SR"
timezone = "Europe/Berlin"
timeout_s = 5
retry = {{ base_s = 0.2, cap_s = 1.0, max_attempts = 60 }}

[[sinks]]
name = "shopify"
kind = "shopify_inventory"
role = "channel"
channel = "shopify"
types = ["retail.inventory.*"]
shop_url = "{shop}"
access_token = "shpat_e2e"
window_s = 0.3
locations = {{ {locations} }}
retry = {{ base_s = 0.2, cap_s = 1.0, max_attempts = 60 }}
"""


def drive(agent: Agent, store: str, return_channel: str, journal: PosJournal) -> list[tuple[int, dict[str, Any]]]:
    """Sales, a store return (restock), a return of another channel's order (damaged), a void."""
    pos = Pos(f"{store}R1", seed=5)
    txns: list[dict[str, Any]] = [pos.sale() for _ in range(22)]
    store_return = pos.return_of(txns[1])
    store_return["lines"][0]["disposition"] = "restock"
    other = pos.return_of(txns[2], channel=return_channel)
    other["lines"][0]["disposition"] = "damaged"
    txns += [store_return, other, pos.void_of(txns[4])]
    sent = []
    with httpx.Client(timeout=10) as client:
        for txn in txns:
            r = journal.post(client, agent.url, txn)
            assert r.status_code == 201, r.text
            sent.append((r.json()["seq"], txn))
    return sent


def expected_ids(store: str, sent: list[tuple[int, dict[str, Any]]]) -> dict[str, set[str]]:
    """Event ids per sink, worked out from the transactions (not from the hub)."""
    out: dict[str, set[str]] = {k: set() for k in ("archive", "webshop", "bus", "erp_docs", "writeoff")}
    for seq, txn in sent:
        base = f"{store}:1:{seq}"
        kind = txn["kind"]
        all_sinks = {base}
        if kind == "sale" or (kind == "return" and txn["lines"][0]["disposition"] == "restock"):
            all_sinks.add(base + ":inventory")
        if kind == "void":  # the voided sale's stock movement is reversed (protocol.md §7a)
            all_sinks.add(base + ":inventory")
        if kind == "return" and txn["lines"][0]["disposition"] == "damaged":
            out["writeoff"].add(base + ":writeoff")
        out["archive"] |= all_sinks
        out["bus"] |= all_sinks
        if kind != "return" or (txn.get("original") or {}).get("channel") == "webshop":
            out["webshop"].add(base)
        if kind in ("sale", "return"):
            out["erp_docs"].add(base)
    return out


def expected_levels(sent_by_store: dict[str, list[tuple[int, dict[str, Any]]]]) -> dict[tuple[str, str], int]:
    levels: dict[tuple[str, str], int] = {}
    for store, sent in sent_by_store.items():
        by_id = {txn["txn_id"]: txn for _, txn in sent}
        for _, txn in sent:
            if txn["kind"] == "void":  # puts the voided sale's goods back
                for line in by_id[txn["voided_txn_id"]]["lines"]:
                    key = (LOCATIONS[store], line["sku"])
                    levels[key] = levels.get(key, 100) + int(Decimal(line["qty"]))
            for line in txn["lines"]:
                sign = -1 if txn["kind"] == "sale" else (1 if line.get("disposition") == "restock" else 0)
                key = (LOCATIONS[store], line["sku"])
                levels[key] = levels.get(key, 100) + sign * int(Decimal(line["qty"]))
    return levels


def test_two_stores_five_sinks_exactly_once_across_a_hub_kill(
    tmp_path: Path, nats_stream: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("E2E_WEBHOOK_SECRET", SECRET)
    monkeypatch.setenv("E2E_ERP_SECRET", "s1")
    receiver = start("webhook_receiver", tmp_path / "wh", "--secret", SECRET, "--fail-first", "3")
    erp = start("erpnext", tmp_path / "erp", "--api-key", "k1", "--api-secret", "s1", "--rate", "12")
    shop = start("shopify", tmp_path / "shop", "--token", "shpat_e2e")
    config = tmp_path / "hub.toml"
    config.write_text(hub_toml(receiver.url, erp.url, shop.url, nats_stream))
    hub = Hub.create(tmp_path / "hub", None, "--config", str(config))
    hub.start()
    agents: list[Agent] = []
    try:
        s1 = Agent.enrolled(tmp_path / "s1", hub, "S1", "Europe/Berlin", "--sync-interval", "1").start()
        agents.append(s1)
        s2 = Agent.enrolled(tmp_path / "s2", hub, "S2", "America/New_York", "--sync-interval", "1").start()
        agents.append(s2)
        erp.faults(answer_status=503)  # the ERP is down while the stores sell: its lanes back up
        journal = PosJournal()
        sent = {"S1": drive(s1, "S1", "webshop", journal), "S2": drive(s2, "S2", "amazon", journal)}
        for a in agents:
            a.wait_synced(timeout=60)
        erp.faults(answer_status=None)

        # Kill -9 while the ERP lanes (rate limited, strict) are being delivered.
        wait_for("ERP deliveries under way", lambda: sinks(hub)["erp"]["done"] >= 3, timeout=60, every=0.1)
        assert sinks(hub)["erp"]["pending"] + sinks(hub)["erp"]["in_flight"] > 0, "delivery finished too early"
        hub.kill()
        hub.start()
        wait_for("every sink settled", lambda: all_settled(hub), timeout=75)
        view = sinks(hub)
        assert all(s["dead"] == 0 for s in view.values()), view

        want = {k: set() for k in ("archive", "webshop", "bus", "erp_docs", "writeoff")}
        for store, items in sent.items():
            for k, v in expected_ids(store, items).items():
                want[k] |= v

        # jsonl: every line parses with the CloudEvents SDK, each expected event exactly once.
        lines = (hub.data_dir / "events.jsonl").read_text().splitlines()
        parsed = [from_json(line) for line in lines]
        ids = [e["id"] for e in parsed]
        assert len(ids) == len(set(ids)), [i for i, n in Counter(ids).items() if n > 1]
        assert set(ids) == want["archive"]
        assert all(e["source"] in ("urn:storesync:store:S1", "urn:storesync:store:S2") for e in parsed)

        # webhook: the receiver failed the first attempts; it holds each expected event once.
        got = [e["id"] for e in receiver.get("/_standin/events")["events"]]
        assert sorted(got) == sorted(want["webshop"])
        reqs = receiver.requests()
        assert [r["status"] for r in reqs[:3]] == [503, 503, 503]
        assert all(r["idempotency_key"] for r in reqs)

        # NATS: one message per event id, payload byte-identical to the jsonl line.
        msgs = asyncio.run(nats_messages(nats_stream))
        msg_ids = [m.headers["Nats-Msg-Id"] for m in msgs]
        assert len(msg_ids) == len(set(msg_ids)) and set(msg_ids) == want["bus"]
        by_id = {json.loads(line)["id"]: line for line in lines}
        assert all(m.data.decode() == by_id[m.headers["Nats-Msg-Id"]] for m in msgs)

        # The content checker: what each POS sent is what the ledger holds (signed, chained), and the
        # archive and the bus each carry exactly one event per record whose data is that transaction.
        verdict = check_stores(
            hub,
            journal,
            {"S1": s1.data_dir, "S2": s2.data_dir},
            sink_files={"archive": hub.data_dir / "events.jsonl"},
            sinks={"bus": [json.loads(m.data) for m in msgs]},
        )
        assert verdict.ok, (verdict.counts(), verdict.event_lines(), verdict.details)
        assert verdict.found == verdict.acknowledged == 50

        # ERPNext: one invoice per sale and return, one stock entry per write-off, the void cancelled.
        invoices = erp.get("/_standin/docs/Sales Invoice")["docs"]
        inv_ids = [d["storesync_event_id"] for d in invoices]
        assert len(inv_ids) == len(set(inv_ids)) and set(inv_ids) == want["erp_docs"]
        entries = [d["storesync_event_id"] for d in erp.get("/_standin/docs/Stock Entry")["docs"]]
        assert sorted(entries) == sorted(want["writeoff"])
        for store, items in sent.items():
            voided = next(t["voided_txn_id"] for _, t in items if t["kind"] == "void")
            seq = next(s for s, t in items if t["txn_id"] == voided)
            assert next(d for d in invoices if d["storesync_event_id"] == f"{store}:1:{seq}")["docstatus"] == 2

        # Shopify: quantities moved exactly once per inventory delta.
        levels = {(r["locationId"], r["sku"]): r["available"] for r in shop.get("/_standin/state")["levels"]}
        for key, qty in expected_levels(sent).items():
            assert levels[key] == qty, key

        admin = {"Authorization": f"Bearer {hub.admin_token}"}  # per-store series need the admin token
        metrics = httpx.get(hub.url + "/metrics", headers=admin, timeout=10).text
        assert 'storesync_deliveries{sink="erp",state="dead"} 0.0' in metrics
        assert "storesync_store_open_deliveries" in metrics
        assert httpx.get(hub.url + "/readyz", timeout=10).status_code == 200
    finally:
        for a in agents:
            a.stop()
        hub.stop()
        for s in (receiver, erp, shop):
            s.stop()


def sink_lag(hub: Hub, sink: str) -> float:
    """``storesync_sink_delivery_lag_seconds{sink}`` as the hub's ``/metrics`` shows it."""
    text = httpx.get(hub.url + "/metrics", timeout=10).text
    found = re.search(rf'^storesync_sink_delivery_lag_seconds\{{sink="{sink}"\}} (\S+)$', text, re.MULTILINE)
    assert found is not None, text
    return float(found.group(1))


def _receiver(folder: Path, port: int, *extra: str) -> StandIn:
    folder.mkdir(parents=True, exist_ok=True)
    record = folder / "webhook_receiver.requests.jsonl"
    argv = [sys.executable, "-m", "storesync_harness.standins.webhook_receiver", "--port", str(port)]
    service = Service("webhook_receiver", [*argv, "--record", str(record), *extra], folder, port, folder / "wh.log")
    return StandIn(service.start(), record)


def test_strict_lane_parks_behind_a_dead_letter_and_replay_delivers_in_order(tmp_path: Path) -> None:
    port = free_port()
    bad = "S1:1:3"
    first = _receiver(tmp_path / "wh1", port, "--bad-ids", bad)
    config = tmp_path / "hub.toml"
    config.write_text(f"""
[delivery]
batch_size = 10
poll_s = 0.2

[[sinks]]
name = "hook"
kind = "webhook"
ordering = "strict"
types = ["retail.pos.*"]
url = "http://127.0.0.1:{port}/h"
retry = {{ base_s = 0.2, cap_s = 0.5, max_attempts = 3 }}
""")
    hub = Hub.create(tmp_path / "hub", None, "--config", str(config)).start()
    agents: list[Agent] = []
    second: StandIn | None = None
    try:
        for store in ("S1", "S2"):
            agents.append(Agent.enrolled(tmp_path / store, hub, store, "Europe/Berlin", "--sync-interval", "1").start())
        with httpx.Client(timeout=10) as client:
            for store, agent in zip(("S1", "S2"), agents, strict=True):
                pos = Pos(f"{store}R", seed=9)
                for _ in range(6):
                    assert agent.post(pos.sale(), client).status_code == 201
        for a in agents:
            a.wait_synced(timeout=60)

        s2_ids = [f"S2:1:{i}" for i in range(1, 7)]
        wait_for("S2 delivered", lambda: {e["id"] for e in first.get("/_standin/events")["events"]} >= set(s2_ids))
        wait_for("S1 dead letter", lambda: bool(hub.admin("/v1/admin/deliveries?sink=hook&state=dead")["deliveries"]))
        dead = hub.admin("/v1/admin/deliveries?sink=hook&state=dead")["deliveries"]
        assert [d["event_id"] for d in dead] == [bad] and "HTTP 400" in dead[0]["last_error"]
        time.sleep(1.0)  # the parked lane must stay parked
        got = [e["id"] for e in first.get("/_standin/events")["events"]]
        assert [i for i in got if i.startswith("S1:")] == ["S1:1:1", "S1:1:2"]
        assert [i for i in got if i.startswith("S2:")] == s2_ids  # the other store's lane kept flowing, in order
        pending = hub.admin("/v1/admin/deliveries?sink=hook&store=S1&state=pending")["deliveries"]
        assert [d["seq"] for d in pending] == [4, 5, 6]
        assert sink_lag(hub, "hook") >= 1.0  # the parked events have waited at least the second above
        listed = hub_cli("deliveries", "list", "--state", "dead", "--data-dir", str(hub.data_dir)).stdout
        assert bad in listed and "HTTP 400" in listed

        # The receiver is fixed; the operator replays the dead letter and the lane drains in order.
        first.stop()
        second = _receiver(tmp_path / "wh2", port)
        out = hub_cli("deliveries", "replay", "--sink", "hook", "--dead", "--data-dir", str(hub.data_dir)).stdout
        assert "1 deliveries pending again" in out
        want = ["S1:1:3", "S1:1:4", "S1:1:5", "S1:1:6"]
        wait_for("S1 drained", lambda: [e["id"] for e in second.get("/_standin/events")["events"]] == want)
        assert all_settled(hub) and sinks(hub)["hook"]["dead"] == 0
        assert sink_lag(hub, "hook") == 0.0

        # A range replay through the admin API sends done events again (the new receiver takes them).
        auth = {"Authorization": f"Bearer {hub.admin_token}"}
        replay = {"sink": "hook", "store_id": "S2", "from_seq": 1, "to_seq": 2}
        r = httpx.post(hub.url + "/v1/admin/deliveries/replay", json=replay, headers=auth, timeout=10)
        assert r.status_code == 200 and r.json() == {"replayed": 2}, r.text
        wait_for("S2 range replayed", lambda: len(second.get("/_standin/events")["events"]) == len(want) + 2)
        assert [e["id"] for e in second.get("/_standin/events")["events"]][-2:] == ["S2:1:1", "S2:1:2"]
        r = httpx.post(hub.url + "/v1/admin/deliveries/replay", json={"sink": "hook"}, headers=auth, timeout=10)
        assert r.status_code == 400 and "store_id" in r.json()["message"]
        # Nothing is dead or pending any more, so there is nothing to skip.
        r = httpx.post(
            hub.url + "/v1/admin/deliveries/skip", json={"event_id": bad, "sink": "hook"}, headers=auth, timeout=10
        )
        assert r.status_code == 404
    finally:
        for a in agents:
            a.stop()
        hub.stop()
        first.stop()
        if second is not None:
            second.stop()
