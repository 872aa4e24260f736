"""The capture API of a real ``edge-agent run`` process."""

from __future__ import annotations

import json
import signal
from pathlib import Path

import apsw
import httpx

from edge_agent.config import AgentConfig

from .conftest import AgentProcess, init_data_dir, make_txn, run_cli

PAN = "4111 1111 1111 1111"


def test_single_duplicate_conflict(agent: AgentProcess) -> None:
    with httpx.Client(base_url=agent.url, timeout=10) as client:
        first = client.post("/v1/transactions", json=make_txn(1))
        assert (first.status_code, first.json()) == (201, {"seq": 1, "duplicate": False})
        second = client.post("/v1/transactions", json=make_txn(2))
        assert (second.status_code, second.json()) == (201, {"seq": 2, "duplicate": False})
        again = client.post("/v1/transactions", json=make_txn(1))
        assert (again.status_code, again.json()) == (200, {"seq": 1, "duplicate": True})
        clash = client.post("/v1/transactions", json=make_txn(1, price="25.00"))
        assert clash.status_code == 409
        body = clash.json()
        assert body["error"] == "conflict" and body["seq"] == 1 and "R1-000001" in body["message"]
        status = client.get("/v1/status").json()
        assert (status["last_seq"], status["pending"], status["enrolled"]) == (2, 2, True)
        assert client.get("/healthz").json() == {"ok": True}


def test_invalid_transaction_names_fields(agent: AgentProcess) -> None:
    bad = make_txn(1)
    bad["lines"][0]["qty"] = 2
    bad["total"] = "46.17"
    del bad["currency"]
    bad["colour"] = "red"
    r = httpx.post(f"{agent.url}/v1/transactions", json=bad, timeout=10)
    assert r.status_code == 422
    body = r.json()
    assert body["error"] == "invalid_transaction"
    fields = {e["field"] for e in body["errors"]}
    assert {"lines[0].qty", "currency", "colour"} <= fields
    assert all(e["reason"] for e in body["errors"])

    totals = make_txn(2, total="50.00")
    r = httpx.post(f"{agent.url}/v1/transactions", json=totals, timeout=10)
    assert r.status_code == 422
    assert [e["field"] for e in r.json()["errors"]] == ["total", "tenders"]

    json_type = {"Content-Type": "application/json"}
    r = httpx.post(f"{agent.url}/v1/transactions", content=b"{nope", headers=json_type, timeout=10)
    assert (r.status_code, r.json()["error"]) == (400, "bad_request")
    assert httpx.get(f"{agent.url}/v1/status", timeout=10).json()["last_seq"] == 0


def test_duplicate_json_keys_are_refused_naming_the_key(agent: AgentProcess) -> None:
    good = json.dumps(make_txn(1))
    twice = good.replace('"total":', '"total": "0.00", "total":', 1)
    r = httpx.post(f"{agent.url}/v1/transactions", content=twice, headers={"Content-Type": "application/json"})
    assert r.status_code == 422
    assert r.json()["errors"] == [
        {"field": "total", "reason": "the key 'total' appears twice in one object; send each field once"}]  # fmt: skip
    pan_key = '{"4111111111111111": 1, "4111111111111111": 2}'
    r = httpx.post(f"{agent.url}/v1/transactions", content=pan_key, headers={"Content-Type": "application/json"})
    assert r.status_code == 422 and "4111111111111111" not in r.text and "1111" in r.text
    assert httpx.get(f"{agent.url}/v1/status", timeout=10).json()["last_seq"] == 0


def test_full_card_number_refused_without_echo(agent: AgentProcess) -> None:
    txn = make_txn(1)
    txn["tenders"][0]["card_last4"] = "1111"
    txn["lines"][0]["name"] = f"paid with {PAN}"
    r = httpx.post(f"{agent.url}/v1/transactions", json=txn, timeout=10)
    assert r.status_code == 422
    assert [e["field"] for e in r.json()["errors"]] == ["lines[0].name"]
    digits = PAN.replace(" ", "")
    assert digits not in r.text and PAN not in r.text and "1111 1111" not in r.text
    assert httpx.get(f"{agent.url}/v1/status", timeout=10).json()["last_seq"] == 0


def test_array_with_one_bad_item(agent: AgentProcess) -> None:
    items = [make_txn(1), {**make_txn(2), "kind": "gift"}, make_txn(3), make_txn(1), make_txn(3, price="1.00")]
    r = httpx.post(f"{agent.url}/v1/transactions", json=items, timeout=10)
    assert r.status_code == 200
    results = r.json()["results"]
    assert [x["status"] for x in results] == [201, 422, 201, 200, 409]
    assert results[0] == {"status": 201, "seq": 1, "duplicate": False}
    assert results[1]["errors"][0]["field"] == "kind"
    assert results[2] == {"status": 201, "seq": 2, "duplicate": False}
    assert results[3] == {"status": 200, "seq": 1, "duplicate": True}
    assert results[4]["error"] == "conflict" and results[4]["seq"] == 2


def test_record_survives_kill_9_after_201(enrolled_dir) -> None:
    data, _ = enrolled_dir
    proc = AgentProcess(data)
    try:
        seqs = []
        with httpx.Client(base_url=proc.url, timeout=10) as client:
            for i in range(1, 21):
                r = client.post("/v1/transactions", json=make_txn(i))
                assert r.status_code == 201
                seqs.append(r.json()["seq"])
        proc.proc.send_signal(signal.SIGKILL)
    finally:
        assert proc.stop() == -signal.SIGKILL
    conn = apsw.Connection(str(AgentConfig.load(data).db_path))
    rows = conn.execute("SELECT seq, txn_id FROM outbox ORDER BY seq").fetchall()
    conn.close()
    assert [r[0] for r in rows] == seqs == list(range(1, 21))
    assert rows[-1][1] == "R1-000020"
    assert run_cli("verify", "--data-dir", str(data)).stdout.strip() == "chain OK: 20 records, seq 1..20"


def test_not_enrolled_answers_503_and_sigterm_is_clean(tmp_path: Path) -> None:
    data = tmp_path / "agent"
    init_data_dir(data)
    proc = AgentProcess(data)
    try:
        r = httpx.post(f"{proc.url}/v1/transactions", json=make_txn(1), timeout=10)
        assert r.status_code == 503
        assert r.json()["error"] == "not_enrolled"
        status = httpx.get(f"{proc.url}/v1/status", timeout=10).json()
        assert status["enrolled"] is False and status["last_seq"] == 0
    finally:
        assert proc.stop(signal.SIGTERM) == 0


def test_status_cli_json_keys(agent: AgentProcess, enrolled_dir) -> None:
    data, _ = enrolled_dir
    assert httpx.post(f"{agent.url}/v1/transactions", json=make_txn(1), timeout=10).status_code == 201
    result = run_cli("status", "--json", "--data-dir", str(data))
    assert result.returncode == 1, result.stderr  # 1: a record is pending (not in sync)
    status = json.loads(result.stdout)
    assert status["store_id"] == "S1" and status["pending"] == 1 and status["last_seq"] == 1
    assert status["agent_running"] is True
    assert status["oldest_pending_age_s"] is not None
    text = run_cli("status", "--data-dir", str(data)).stdout
    assert "records      last seq 1, acked through 0, pending 1" in text
