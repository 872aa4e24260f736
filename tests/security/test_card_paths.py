"""Card numbers on every path: live capture, every drop format, the hub, reports and logs (DESIGN §9)."""

from __future__ import annotations

import copy
import csv
import json
from pathlib import Path
from typing import Any

import httpx
import pytest

from agent.conftest import init_data_dir, make_txn, write_identity
from edge_agent.config import AgentConfig
from edge_agent.drops.csv_canonical import COLUMNS, rows_for
from edge_agent.drops.importer import DropFolders, Importer
from edge_agent.store import Outbox
from hub.helpers import txn as hub_txn
from storesync_harness.dropfiles import SHOPIFY_HEADER, sale, shopify_order
from storesync_harness.processes import Agent, Hub
from sync_protocol import chain, keys
from sync_protocol.httpsig import sign_request
from sync_protocol.record import make_body, seal
from sync_protocol.wire import BURSTS_PATH, EnrollResponse
from tui.drops_data import read_error_report

from .cards_support import shows_pan

PAN = "4111111111111111"
WRITTEN = ["4111.1111.1111.1111", "4111\u200b1111\u200b1111\u200b1111", "４１１１ １１１１ １１１１ １１１１"]


def no_pan_in(text: str) -> None:
    assert not shows_pan(text, PAN), text[:2000]


@pytest.mark.parametrize("written", WRITTEN)
def test_capture_refuses_a_written_card_number_in_a_value_and_in_a_key(agent: Agent, written: str) -> None:
    in_value = make_txn(1)
    in_value["lines"][0]["name"] = f"gift for card {written}"
    in_key = make_txn(2)
    in_key["tenders"][0][written] = "x"
    for body in (in_value, in_key):
        answer = agent.post(body)
        assert answer.status_code == 422, answer.text
        no_pan_in(answer.text)
        assert "card number" in answer.text
    batch = httpx.post(agent.url + "/v1/transactions", json=[in_value, make_txn(3), in_key], timeout=10)
    assert [r["status"] for r in batch.json()["results"]] == [422, 201, 422]
    no_pan_in(batch.text)
    assert agent.wait_synced()["last_seq"] == 1
    no_pan_in(agent.log_path.read_text())


def _enroll(hub: Hub, store_id: str) -> tuple[keys.Ed25519PrivateKey, int]:
    key = keys.generate()
    token = hub.add_store(store_id)
    answer = httpx.post(
        hub.url + "/v1/enroll", json={"token": token, "public_key": keys.public_hex(key), "hostname": "t"}, timeout=10
    )
    assert answer.status_code == 201, answer.text
    return key, EnrollResponse.model_validate(answer.json()).epoch


def test_hub_refuses_a_signed_record_holding_a_card_number_and_keeps_those_before(hub: Hub) -> None:
    """An old or compromised agent signs a record with a card number: 422 with its seq, nothing of it stored."""
    key, epoch = _enroll(hub, "SX")
    head = chain.genesis("SX", epoch)
    records = []
    for seq in range(1, 6):
        txn: dict[str, Any] = hub_txn(seq)
        if seq == 4:
            txn["lines"][0]["name"] = "4111\u200b1111\u200b1111\u200b1111"
            txn["lines"][0][PAN] = "1"
        body = make_body(
            store_id="SX", epoch=epoch, seq=seq, kind="sale", captured_at="2026-11-22T10:15:04+01:00", txn=txn
        )
        rec = seal(key, head, seq, body)
        head = rec.chain
        records.append(rec.wire())
    doc = {"store_id": "SX", "epoch": epoch, "first_seq": 1, "records": records, "sent_at": "2026-11-22T09:15:03Z"}
    raw = json.dumps(doc).encode()
    headers = sign_request("POST", BURSTS_PATH, raw, key, keys.key_id(key)) | {"Content-Type": "application/json"}
    answer = httpx.post(hub.url + BURSTS_PATH, content=raw, headers=headers, timeout=30)
    assert answer.status_code == 422, answer.text
    err = answer.json()
    assert (err["error"], err["seq"], err["acked_through"]) == ("record_refused", 4, 3)
    assert "card number" in err["message"]
    no_pan_in(answer.text)
    assert [r["seq"] for r in hub.ledger("SX", epoch)] == [1, 2, 3]
    no_pan_in(json.dumps(hub.ledger("SX", epoch)))
    no_pan_in(hub.log_path.read_text())


@pytest.fixture
def drop_env(tmp_path: Path) -> Any:
    data = tmp_path / "agent"
    key = init_data_dir(data)
    write_identity(data, key)
    folders = DropFolders(tmp_path / "drop").ensure()
    outbox = Outbox(AgentConfig.load(data).db_path, key=key)
    try:
        yield outbox, folders
    finally:
        outbox.close()


def _jsonl(path: Path) -> None:
    good = sale(1)
    value = copy.deepcopy(sale(2))
    value["lines"][0]["name"] = "4111.1111.1111.1111"
    key = copy.deepcopy(sale(3))
    key["lines"][0][PAN] = "x"
    escaped = json.dumps(sale(4)).replace('"total"', '"note": "4111\\u002e1111\\u002e1111\\u002e1111", "total"')
    path.write_text("\n".join([json.dumps(good), json.dumps(value), json.dumps(key), escaped]) + "\n")


def _canonical_csv(path: Path) -> None:
    with path.open("w", newline="") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(COLUMNS)
        w.writerows(rows_for(sale(1)))
        bad = rows_for(sale(2))
        bad[0][COLUMNS.index("name")] = "4111_1111_1111_1111"
        w.writerows(bad)


def _shopify(path: Path) -> None:
    with path.open("w", newline="") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(SHOPIFY_HEADER)
        w.writerows(shopify_order(1))
        bad = shopify_order(2)
        bad[0][SHOPIFY_HEADER.index("Lineitem name")] = "4111/1111/1111/1111"
        w.writerows(bad)


@pytest.mark.parametrize(("name", "write", "refused"), [("a.jsonl", _jsonl, 3), ("b.csv", _canonical_csv, 1),
                                                        ("orders_export.csv", _shopify, 1)])  # fmt: skip
def test_drop_rows_with_card_numbers_are_refused_and_masked_in_the_report(drop_env, name, write, refused) -> None:
    outbox, folders = drop_env
    src = folders.root / name
    write(src)
    summary = Importer(outbox, folders, workers=0).import_file(src)
    assert summary.rejected == refused and summary.accepted >= 1
    report = folders.rejected / f"{name}.errors.jsonl"
    text = report.read_text()
    no_pan_in(text)
    rows = [json.loads(line) for line in text.splitlines()]
    assert any("card number" in r["reason"] for r in rows)
    assert all("•••• 1111" in r["row"] for r in rows if "card number" in r["reason"])
    bodies = " ".join(b for (b,) in outbox.query("SELECT body FROM outbox"))
    no_pan_in(bodies)
    for result in folders.root.rglob("*.result.json"):
        no_pan_in(result.read_text())


def test_tui_masks_an_error_report_written_verbatim_by_an_older_agent(tmp_path: Path) -> None:
    report = tmp_path / "old.jsonl.errors.jsonl"
    row = json.dumps({"note": "4111 1111 1111 1111", PAN: 1})
    line = {"line": 1, "field": f"{PAN}", "reason": "holds a card number", "row": row}
    report.write_text(json.dumps(line) + "\nnot json 4111-1111-1111-1111\n")
    shown = read_error_report(report)
    no_pan_in(json.dumps(shown, ensure_ascii=False))
    assert len(shown) == 2
