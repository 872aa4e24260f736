"""What an ERP books, through real processes (POS/drop file → agent → hub → jsonl sink): the right
instant (fall-back folds, late franchise files) and the right stock (voids, lines that are not stock).

The agent's corrected capture time is placed in a fall-back hour with :class:`ClockShiftProxy`: the
hub's times in its answers are shifted, so the agent measures a clock offset θ and the hub corrects
the capture times by it (DESIGN §5), with real clocks and real processes.
"""

from __future__ import annotations

import csv
import json
import os
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest

from storesync_harness.clockshift import ClockShiftProxy
from storesync_harness.dropfiles import SHOPIFY_HEADER, shopify_order
from storesync_harness.processes import Agent, Hub, agent_cli

pytestmark = pytest.mark.slow


def wait_for(what: str, check: Callable[[], Any], timeout: float = 45.0, every: float = 0.25) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = check()
        if got:
            return got
        time.sleep(every)
    raise AssertionError(f"timed out waiting for {what}")


def sink_events(hub: Hub) -> list[dict[str, Any]]:
    path = hub.data_dir / "events.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def events_by_id(hub: Hub, ids: set[str]) -> dict[str, dict[str, Any]]:
    """Wait until the jsonl sink holds every event id in ``ids``; each exactly once."""

    def ready() -> dict[str, dict[str, Any]] | None:
        events = sink_events(hub)
        got = {e["id"]: e for e in events}
        return got if ids <= set(got) else None

    got = wait_for(f"events {sorted(ids)}", ready)
    counts: dict[str, int] = {}
    for e in sink_events(hub):
        counts[e["id"]] = counts.get(e["id"], 0) + 1
    assert all(n == 1 for n in counts.values()), "an event reached the sink twice"
    return got


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def sale(register: str, txn_id: str, occurred_at: str, lines: list[dict[str, str]] | None = None, **kw: Any) -> dict:
    lines = lines or [{"sku": "TEE-BLK-M", "qty": "2", "unit_price": "10.00", "tax": "0.00"}]
    total = sum(int(x["qty"]) * float(x["unit_price"]) for x in lines)
    amount = f"{total:.2f}"
    return {"txn_id": txn_id, "register_id": register, "kind": "sale", "occurred_at": occurred_at,
            "currency": "EUR", "lines": lines, "tenders": [{"type": "cash", "amount": amount}], "total": amount,
            **kw}  # fmt: skip


# ------------------------------------------------------------------------------------------ folds

FOLD_CASES = {
    # zone: (a wall time before the fold, the ambiguous wall time, its first and second instant, the shift)
    "Europe/Berlin": ("2026-10-25T01:50:00", "2026-10-25T02:30:00", "2026-10-25T00:30:00Z", "2026-10-25T01:30:00Z"),
    "Australia/Lord_Howe": (
        "2026-04-05T01:10:00", "2026-04-05T01:45:00", "2026-04-04T14:45:00Z", "2026-04-04T15:15:00Z"),
}  # fmt: skip


def _agent_via(proxy: ClockShiftProxy, hub: Hub, data_dir: Path, store: str, tz: str) -> Agent:
    data_dir.mkdir(parents=True, exist_ok=True)
    token = hub.add_store(store, tz)
    agent_cli("init", "--data-dir", str(data_dir))
    agent_cli("enroll", "--data-dir", str(data_dir), "--hub", proxy.url, "--token", token)
    return Agent.create(data_dir, None, "--sync-interval", "1")


def _wait_theta(agent: Agent, shift_s: float) -> None:
    def near() -> bool:
        clock = agent.status().get("clock") or {}
        return abs(float(clock.get("theta_ms", 0)) / 1000 - shift_s) < 30

    wait_for("the agent's clock estimate", near)


@pytest.mark.parametrize("tz", sorted(FOLD_CASES))
def test_second_occurrence_of_a_fall_back_time_gets_the_second_instant(tmp_path: Path, tz: str) -> None:
    """Two sales at the same wall time in the fall-back span: the second, captured one shift later and
    with the higher seq, is booked at the second instant (a tie with the previous record is no order)."""
    before, wall, first, second = FOLD_CASES[tz]
    shift = (utc(second) - utc(first)).total_seconds()  # 3600 in Berlin, 1800 on Lord Howe
    hub = Hub.create(tmp_path / "hub").start()
    offset = (utc(first) - timedelta(seconds=30) - datetime.now(UTC)).total_seconds()
    try:
        with ClockShiftProxy(hub.port, shift_s=offset) as proxy:
            agent = _agent_via(proxy, hub, tmp_path / "agent", "S1", tz).start()
            try:
                _wait_theta(agent, offset)
                for txn in (sale("R1", "R1-1", before), sale("R1", "R1-2", wall)):
                    assert agent.post(txn).status_code == 201
                agent.wait_synced()
                events_by_id(hub, {"S1:1:1", "S1:1:2"})
                agent.stop()
                # One shift later on the store's clock: the same wall time comes round again.
                proxy.shift_s = offset + shift
                agent.start()
                _wait_theta(agent, offset + shift)
                assert agent.post(sale("R1", "R1-3", wall)).status_code == 201
                agent.wait_synced()
            finally:
                agent.stop()
        got = events_by_id(hub, {"S1:1:1", "S1:1:2", "S1:1:3"})
    finally:
        hub.stop()
    one, two, three = (got[f"S1:1:{n}"] for n in (1, 2, 3))
    assert utc(two["time"]) == utc(first) and two["data"]["time_quality"]["method"] == "zone-fold-0"
    assert utc(three["time"]) == utc(second), three["data"]["time_quality"]
    q = three["data"]["time_quality"]
    assert q["method"] == "zone-fold-1" and {"dst_fold", "fold_by_capture_time"} <= set(q["flags"])
    assert utc(one["time"]) < utc(two["time"]) < utc(three["time"])
    # The signed POS values are untouched: the event carries what the register sent.
    assert three["data"]["txn"]["occurred_at"] == wall == two["data"]["txn"]["occurred_at"]


# ------------------------------------------------------------------------------ late franchise files


def _local(moment: datetime) -> str:
    return moment.astimezone().isoformat(timespec="seconds")


def test_a_late_franchise_file_keeps_its_sale_times(tmp_path: Path) -> None:
    """A file written two days ago and imported now: its sales keep their instants (their business day);
    a sale older than the file by more than the maximum age falls back to the file's time, visibly."""
    hub = Hub.create(tmp_path / "hub").start()
    drop = tmp_path / "drop"
    drop.mkdir()
    agent = Agent.enrolled(tmp_path / "agent", hub, "S1", "Europe/Berlin", "--sync-interval", "1")
    agent.env = {"EDGE_AGENT_DROP_DIR": str(drop)}
    now = datetime.now(UTC).replace(microsecond=0)
    written = now - timedelta(days=2)
    weekend = now - timedelta(days=3, hours=2)
    too_old = written - timedelta(days=40)
    naive_weekend = weekend.astimezone(ZoneInfo("Europe/Berlin")).strftime("%Y-%m-%dT%H:%M:%S")
    try:
        agent.start()
        staged = tmp_path / "weekend.jsonl"
        rows = [sale("F1", "F1-1", _local(weekend)), sale("F1", "F1-2", _local(too_old)),
                sale("F1", "F1-3", naive_weekend)]  # fmt: skip
        staged.write_text("".join(json.dumps(r) + "\n" for r in rows))
        os.utime(staged, (written.timestamp(), written.timestamp()))
        os.rename(staged, drop / "weekend.jsonl")  # keeps the modification time
        got = events_by_id(hub, {"S1:1:1", "S1:1:2", "S1:1:3"})
        headers = {"Authorization": f"Bearer {hub.admin_token}"}
        listed = httpx.get(hub.url + "/v1/admin/time-fallbacks?store=S1", headers=headers, timeout=10)
        metrics = httpx.get(hub.url + "/metrics", headers=headers, timeout=10).text  # per-store series need it
    finally:
        agent.stop()
        hub.stop()
    kept, old, naive = got["S1:1:1"], got["S1:1:2"], got["S1:1:3"]
    assert utc(kept["time"]) == weekend and kept["data"]["time_quality"]["method"] == "offset"
    assert "pos_time_implausible" not in kept["data"]["time_quality"]["flags"]
    assert kept["data"]["origin"] == "file:weekend.jsonl"
    # A naive time in a batch file is read in the store's zone, on its own day.
    assert naive["data"]["time_quality"]["method"] == "zone" and utc(naive["time"]) == weekend
    q = old["data"]["time_quality"]
    assert q["method"] == "file-fallback" and {"pos_time_implausible", "batch_time_too_old"} <= set(q["flags"])
    assert abs((utc(old["time"]) - written).total_seconds()) < 5  # the file's own time, not the import moment
    assert old["data"]["txn"]["occurred_at"] == _local(too_old)  # the original is kept
    assert listed.status_code == 200, listed.text
    fallbacks = listed.json()["fallbacks"]
    assert [(f["seq"], f["method"], f["pos_time"]) for f in fallbacks] == [(2, "file-fallback", _local(too_old))]
    assert 'storesync_time_fallbacks{store="S1"} 1.0' in metrics


def test_live_capture_keeps_its_window(tmp_path: Path, hub: Hub) -> None:
    """A register whose clock is three days off is not trusted (the live window is 24 hours)."""
    agent = Agent.enrolled(tmp_path / "agent", hub, "S1", "Europe/Berlin", "--sync-interval", "1").start()
    try:
        off = datetime.now(UTC) - timedelta(days=3)
        assert agent.post(sale("R1", "R1-1", _local(off))).status_code == 201
        got = events_by_id(hub, {"S1:1:1"})
    finally:
        agent.stop()
    q = got["S1:1:1"]["data"]["time_quality"]
    assert q["method"] == "capture-fallback" and "pos_time_implausible" in q["flags"]
    assert hub.admin("/v1/admin/time-fallbacks")["fallbacks"][0]["method"] == "capture-fallback"


# -------------------------------------------------------------------------------------------- stock


def inventory(events: dict[str, dict[str, Any]]) -> dict[str, list[tuple[str, str]]]:
    return {
        eid: [(a["sku"], a["delta"]) for a in e["data"]["adjustments"]]
        for eid, e in events.items()
        if e["type"] == "retail.inventory.adjusted.v1"
    }


def test_a_void_in_a_later_burst_undoes_its_sale_and_non_stock_lines_never_move_stock(tmp_path: Path) -> None:
    config = tmp_path / "hub.toml"
    config.write_text('[[sinks]]\nname = "events"\nkind = "jsonl"\nrole = "archive"\npath = "events.jsonl"\n'
                      '[stock]\nnon_stock_skus = ["GIFT-*"]\n')  # fmt: skip
    hub = Hub.create(tmp_path / "hub", None, "--config", str(config)).start()
    agent = Agent.enrolled(tmp_path / "agent", hub, "S1", "Europe/Berlin", "--sync-interval", "1").start()
    at = _local(datetime.now(UTC) - timedelta(minutes=5))
    try:
        first = sale("R1", "R1-1", at, [
            {"sku": "TEE-BLK-M", "qty": "2", "unit_price": "10.00"},
            {"sku": "GIFT-50", "qty": "1", "unit_price": "50.00"},  # a v1 gift card: the hub's SKU rule
        ])  # fmt: skip
        second = sale("R1", "R1-2", at, [
            {"sku": "JEANS-32", "qty": "1", "unit_price": "59.00", "type": "item"},
            {"sku": "ALTER", "qty": "1", "unit_price": "8.00", "type": "service"},
            {"sku": "TIP", "qty": "1", "unit_price": "2.00", "type": "tip"},
        ], schema="storesync.pos.v2")  # fmt: skip
        for txn in (first, second):
            assert agent.post(txn).status_code == 201, agent.post(txn).text
        agent.wait_synced()
        events_by_id(hub, {"S1:1:1:inventory", "S1:1:2:inventory"})
        void = {"txn_id": "R1-3", "register_id": "R1", "kind": "void", "occurred_at": at, "currency": "EUR",
                "lines": [], "tenders": [], "total": "0.00", "voided_txn_id": "R1-1"}  # fmt: skip
        assert agent.post(void).status_code == 201
        again = dict(void, txn_id="R1-4")  # voiding it twice must not put the goods back twice
        assert agent.post(again).status_code == 201
        agent.wait_synced()
        got = events_by_id(hub, {"S1:1:3", "S1:1:3:inventory", "S1:1:4"})
    finally:
        agent.stop()
        hub.stop()
    inv = inventory(got)
    assert inv == {
        "S1:1:1:inventory": [("TEE-BLK-M", "-2")],
        "S1:1:2:inventory": [("JEANS-32", "-1")],
        "S1:1:3:inventory": [("TEE-BLK-M", "2")],
    }
    assert got["S1:1:3:inventory"]["data"]["reverses"] == "S1:1:1:inventory"
    assert got["S1:1:3:inventory"]["data"]["reason"] == "void"
    # The transaction events still carry every line, with its type.
    assert [ln.get("type") for ln in got["S1:1:2"]["data"]["txn"]["lines"]] == ["item", "service", "tip"]
    assert got["S1:1:2"]["data"]["txn"]["schema"] == "storesync.pos.v2"


def _shopify_file(path: Path, created: str) -> None:
    rows = shopify_order(5, refund="partial") + shopify_order(7, voided=True)
    col_created, col_paid = SHOPIFY_HEADER.index("Created at"), SHOPIFY_HEADER.index("Paid at")
    for row in rows:
        if row[col_created]:
            row[col_created] = row[col_paid] = created
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(SHOPIFY_HEADER)
        writer.writerows(rows)


def test_shopify_shipping_and_refund_adjustment_lines_never_move_stock(tmp_path: Path, hub: Hub) -> None:
    drop = tmp_path / "drop"
    drop.mkdir()
    agent = Agent.enrolled(tmp_path / "agent", hub, "S1", "Europe/Berlin", "--sync-interval", "1")
    agent.env = {"EDGE_AGENT_DROP_DIR": str(drop)}
    created = (datetime.now(UTC) - timedelta(days=1)).astimezone().strftime("%Y-%m-%d %H:%M:%S %z")
    try:
        agent.start()
        staged = tmp_path / "orders_export.csv"
        _shopify_file(staged, created)
        os.rename(staged, drop / "orders_export.csv")
        # seq 1 sale #1006 (items + SHIPPING), 2 its partial refund (REFUND), 3 sale #1008, 4 its void.
        got = events_by_id(hub, {"S1:1:1", "S1:1:2", "S1:1:3", "S1:1:4", "S1:1:4:inventory"})
    finally:
        agent.stop()
    inv = inventory(got)
    skus = {sku for adj in inv.values() for sku, _ in adj}
    assert "SHIPPING" not in skus and "REFUND" not in skus
    assert "S1:1:2:inventory" not in inv  # a partial refund's adjustment line is money, not goods
    sale_lines = got["S1:1:1"]["data"]["txn"]["lines"]
    assert [ln["type"] for ln in sale_lines][-1] == "shipping"
    assert got["S1:1:2"]["data"]["txn"]["lines"][0]["type"] == "adjustment"
    assert inv["S1:1:4:inventory"] == [(s, d.lstrip("-")) for s, d in inv["S1:1:3:inventory"]]
    assert got["S1:1:1"]["data"]["time_quality"]["method"] == "offset"  # a day-old export keeps its time


def test_canonical_csv_line_type_column_keeps_shipping_and_gift_cards_out_of_stock(tmp_path: Path, hub: Hub) -> None:
    """A canonical CSV drop marks its non-stock lines with ``line_type``: only the goods move stock."""
    drop = tmp_path / "drop"
    drop.mkdir()
    agent = Agent.enrolled(tmp_path / "agent", hub, "S1", "Europe/Berlin", "--sync-interval", "1")
    agent.env = {"EDGE_AGENT_DROP_DIR": str(drop)}
    at = _local(datetime.now(UTC) - timedelta(minutes=5))
    text = (
        "txn_id,register_id,kind,occurred_at,currency,sku,name,qty,unit_price,tax,line_type,tender_type,tender_amount,total\n"
        f"R1-1,R1,sale,{at},EUR,TEE-BLK-M,Tee,2,19.90,0.00,,card,69.70,69.70\n"
        "R1-1,,,,,SHIP-STD,Shipping,1,4.90,0.00,shipping,,,\n"
        "R1-1,,,,,GC-25,Gift card,1,25.00,0.00,gift_card,,,\n"
        f"R1-2,R1,sale,{at},EUR,SOCKS-3P,Socks,1,9.95,0.00,,cash,9.95,9.95\n"
    )
    try:
        agent.start()
        staged = tmp_path / "day.csv"
        staged.write_text(text, encoding="utf-8")
        os.rename(staged, drop / "day.csv")
        got = events_by_id(hub, {"S1:1:1", "S1:1:1:inventory", "S1:1:2", "S1:1:2:inventory"})
    finally:
        agent.stop()
    assert inventory(got) == {"S1:1:1:inventory": [("TEE-BLK-M", "-2")], "S1:1:2:inventory": [("SOCKS-3P", "-1")]}
    assert [ln["type"] for ln in got["S1:1:1"]["data"]["txn"]["lines"]] == ["item", "shipping", "gift_card"]
    assert got["S1:1:1"]["data"]["txn"]["schema"] == "storesync.pos.v2"
    assert "type" not in got["S1:1:2"]["data"]["txn"]["lines"][0]  # no line type given: stays v1


# --------------------------------------------------------------------------- failed mappings, lag


def _signed_burst(
    hub: Hub, agent_dir: Path, bodies: list[str], store: str = "S1", edit: Callable[[str], str] = lambda t: t
) -> httpx.Response:
    """Sign and send records the way a (newer) agent would: its own key, its own chain.

    ``edit`` rewrites the burst's JSON text before it is signed (a sender that writes what it likes).
    """
    from sync_protocol import chain, keys
    from sync_protocol.httpsig import sign_request
    from sync_protocol.record import seal

    key = keys.load_private_key(agent_dir / "agent.key")
    prev, records = chain.genesis(store, 1), []
    for seq, body in enumerate(bodies, 1):
        rec = seal(key, prev, seq, body)
        records.append(rec.wire())
        prev = rec.chain
    payload = {"store_id": store, "epoch": 1, "first_seq": 1, "records": records,
               "sent_at": datetime.now(UTC).isoformat(timespec="milliseconds")}  # fmt: skip
    raw = edit(json.dumps(payload)).encode()
    headers = sign_request("POST", "/v1/bursts", raw, key, keys.key_id(key))
    headers["Content-Type"] = "application/json"
    return httpx.post(hub.url + "/v1/bursts", content=raw, headers=headers, timeout=30)


def test_failed_mappings_are_listed_counted_and_rederived_at_most_once(tmp_path: Path, hub: Hub) -> None:
    """A record from a newer agent (schema v9) is stored but derives nothing: the hub lists it, counts it
    by store and reason, refuses to re-derive it while the cause remains, and keeps the store flowing."""
    from sync_protocol.record import make_body

    agent = Agent.enrolled(tmp_path / "agent", hub, "S1")  # enrolled, never started: we sign ourselves
    at = _local(datetime.now(UTC))
    good = sale("R1", "R1-1", at)
    good["schema"] = "storesync.pos.v1"
    future = dict(sale("R1", "R1-2", at), schema="storesync.pos.v9")
    bodies = [make_body(store_id="S1", epoch=1, seq=n, kind="sale", captured_at=at, txn=t)
              for n, t in ((1, good), (2, future), (3, dict(good, txn_id="R1-3")))]  # fmt: skip
    r = _signed_burst(hub, agent.data_dir, bodies)
    assert r.status_code == 200 and r.json()["acked_through"] == 3, r.text
    got = events_by_id(hub, {"S1:1:1", "S1:1:3"})  # the store keeps flowing around the bad record
    assert "S1:1:2" not in {e["id"] for e in sink_events(hub)}
    (err,) = hub.admin("/v1/admin/derive-errors?store=S1")["derive_errors"]
    assert (err["seq"], err["code"], err["resolved_at"]) == (2, "unknown_schema", None)
    assert "storesync.pos.v9" in err["reason"]
    admin = {"Authorization": f"Bearer {hub.admin_token}"}  # per-store series need the admin token
    metrics = httpx.get(hub.url + "/metrics", headers=admin, timeout=10).text
    assert 'storesync_derive_errors{reason="unknown_schema",store="S1"} 1.0' in metrics
    assert hub.admin("/v1/admin/stores")["stores"][0]["derive_errors"] == 1
    auth = {"Authorization": f"Bearer {hub.admin_token}"}
    again = httpx.post(f"{hub.url}/v1/admin/derive-errors/{err['id']}/rederive", headers=auth, timeout=10)
    assert again.status_code == 422 and again.json()["error"] == "derive_failed"
    assert hub.admin("/v1/admin/derive-errors?store=S1&open=1")["derive_errors"][0]["id"] == err["id"]
    missing = httpx.post(f"{hub.url}/v1/admin/derive-errors/999999/rederive", headers=auth, timeout=10)
    assert missing.status_code == 404
    assert got["S1:1:3"]["data"]["txn"]["txn_id"] == "R1-3"


def _twice_records(text: str) -> str:
    """The good records, then ``records`` again as an empty list (a parser keeping the last sees a probe)."""
    return text[:-1] + ', "records": []}'


def _twice_body(text: str) -> str:
    """The first record names ``body`` twice, the same signed text both times."""
    doc = json.loads(text)
    body = json.dumps(doc["records"][0]["body"])
    return text.replace('"body": ' + body, '"body": ' + body + ', "body": ' + body, 1)


def _twice_card(text: str) -> str:
    """A key that is a card number, twice: refused, and the number is never echoed."""
    return text[:-1] + ', "4111 1111 1111 1111": 1, "4111 1111 1111 1111": 2}'


@pytest.mark.parametrize(
    ("edit", "key"), [(_twice_records, "'records'"), (_twice_body, "'body'"), (_twice_card, "1111'")]
)
def test_a_burst_naming_a_key_twice_is_refused_and_stores_nothing(
    tmp_path: Path, hub: Hub, edit: Callable[[str], str], key: str
) -> None:
    """Duplicate keys in the burst JSON itself (not only in a record body) are a 400 naming the key."""
    from sync_protocol.record import make_body

    agent = Agent.enrolled(tmp_path / "agent", hub, "S1")
    at = _local(datetime.now(UTC))
    bodies = [make_body(store_id="S1", epoch=1, seq=n, kind="sale", captured_at=at, txn=sale("R1", f"R1-{n}", at))
              for n in (1, 2)]  # fmt: skip
    r = _signed_burst(hub, agent.data_dir, bodies, edit=edit)
    assert r.status_code == 400, r.text
    assert r.json()["error"] == "bad_request"
    assert f"{key} appears twice" in r.json()["message"]  # a card number only by its last four
    assert "4111 1111" not in r.text and "1111111111" not in r.text
    assert hub.ledger("S1") == []
    ok = _signed_burst(hub, agent.data_dir, bodies)  # the same records, sent once each: stored
    assert r.status_code == 400 and ok.status_code == 200 and ok.json()["acked_through"] == 2, ok.text
    assert [rec["seq"] for rec in hub.ledger("S1")] == [1, 2]


def test_backlog_and_sync_lag_reach_the_hub(tmp_path: Path) -> None:
    """Every burst carries the agent's backlog beyond it: after one burst of 5 of 12 records the hub is
    cut off, and it shows the 7 still waiting and a growing sync lag, per store and in /metrics."""
    from storesync_harness.faultproxy import FaultProxy

    hub = Hub.create(tmp_path / "hub").start()
    data = tmp_path / "agent"
    data.mkdir()
    try:
        with FaultProxy(upstream_port=hub.port) as proxy:
            token = hub.add_store("S1", "Europe/Berlin")
            agent_cli("init", "--data-dir", str(data))
            agent_cli("enroll", "--data-dir", str(data), "--hub", proxy.url, "--token", token)
            agent = Agent.create(data, None, "--sync-interval", "1")
            agent.env = {"EDGE_AGENT_BURST_RECORDS": "5"}
            at = _local(datetime.now(UTC))
            lines = "\n".join(json.dumps(sale("R1", f"R1-{n}", at)) for n in range(1, 13))
            agent_cli("capture", "--data-dir", str(data), "-", input=lines)
            proxy.set_mode("http_5xx_storm", skip=1, path_prefix="/v1/bursts", retry_after=None)
            agent.start()
            try:

                def reported() -> dict[str, Any] | None:
                    store = hub.admin("/v1/admin/stores")["stores"][0]
                    return store if store.get("backlog") is not None else None

                store = wait_for("the agent's backlog report", reported)
                time.sleep(1.5)
                later = hub.admin("/v1/admin/stores")["stores"][0]
                admin = {"Authorization": f"Bearer {hub.admin_token}"}  # per-store series need the admin token
                metrics = httpx.get(hub.url + "/metrics", headers=admin, timeout=10).text
            finally:
                agent.stop()
    finally:
        hub.stop()
    assert (store["acked_through"], store["backlog"]) == (5, 7), store
    assert store["oldest_pending_age_s"] is not None and store["oldest_pending_age_s"] >= 0
    assert later["sync_lag_s"] > store["sync_lag_s"] > 0  # the hub has not heard from it since: it grows
    assert 'storesync_store_backlog_records{store="S1"} 7.0' in metrics
    assert 'storesync_store_sync_lag_seconds{store="S1"}' in metrics
