"""The spine end to end: POS → agent outbox → bursts → hub ledger, with real processes."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import httpx
import pytest

from storesync_harness.invariants import PosJournal, check_stores
from storesync_harness.pos import Pos
from storesync_harness.processes import Agent, Hub, agent_cli
from sync_protocol import chain, keys
from sync_protocol.httpsig import sign_request
from sync_protocol.record import SignedRecord, verify_run

pytestmark = pytest.mark.slow


def assert_ledger_exact(hub: Hub, agent: Agent, journal: PosJournal, store_id: str = "S1") -> list[dict]:
    """The content checker: every acknowledged transaction once, with the content sent, signed, chained,
    its event in the hub's jsonl sink once; the ledger holds seqs 1..N with nothing else."""
    verdict = check_stores(hub, journal, {store_id: agent.data_dir})
    assert verdict.ok, (verdict.counts(), verdict.event_lines(), verdict.details)
    assert verdict.found == verdict.acknowledged == len(journal.acknowledged) > 0
    ledger = hub.ledger(store_id)
    assert [r["seq"] for r in ledger] == list(range(1, len(ledger) + 1)), "ledger seqs must be 1..N with no gap"
    assert len(ledger) == len(journal.attempted), "the ledger holds something the POS did not send"
    return ledger


def test_thousand_captured_offline_then_caught_up(tmp_path: Path) -> None:
    hub = Hub.create(tmp_path / "hub").start()
    agent = Agent.enrolled(tmp_path / "agent", hub, "S1", "Europe/Berlin", "--sync-interval", "1").start()
    try:
        hub.stop()
        pos = [Pos(f"R{i}", seed=1) for i in (1, 2)]
        sent = []
        journal = PosJournal()
        with httpx.Client(timeout=10) as client:
            for i in range(1000):
                txn = pos[i % 2].mixed()
                r = journal.post(client, agent.url, txn)
                assert r.status_code == 201, r.text
                assert r.json() == {"seq": i + 1, "duplicate": False}
                sent.append(txn)
            # A POS retry while offline gets the original seq back.
            r = journal.post(client, agent.url, sent[10])
            assert (r.status_code, r.json()) == (200, {"seq": 11, "duplicate": True})
        st = agent.status()
        assert st["pending"] == 1000 and st["acked_through"] == 0
        hub.start()
        st = agent.wait_synced(timeout=90)
        assert st["acked_through"] == 1000
        assert_ledger_exact(hub, agent, journal)
        stream = hub.admin("/v1/admin/stores/S1")
        assert stream["streams"][0]["acked_through"] == 1000
        assert stream["streams"][0]["conflicts"] == []
    finally:
        agent.stop()
        hub.stop()


def _outbox_records(db: Path, first: int, last: int) -> list[SignedRecord]:
    con = sqlite3.connect(db)
    try:
        rows = con.execute(
            "SELECT seq, body, chain, sig FROM outbox WHERE seq BETWEEN ? AND ? ORDER BY seq", (first, last)
        ).fetchall()
    finally:
        con.close()
    return [SignedRecord(s, b, bytes(c), bytes(g)) for s, b, c, g in rows]


def _post_burst(hub: Hub, agent_dir: Path, records: list[SignedRecord], epoch: int = 1) -> httpx.Response:
    key = keys.load_private_key(agent_dir / "agent.key")
    payload = {
        "store_id": "S1", "epoch": epoch, "first_seq": records[0].seq, "records": [r.wire() for r in records],
        "sent_at": "2026-11-22T10:00:00.000+00:00",
    }  # fmt: skip
    body = json.dumps(payload).encode()
    headers = sign_request("POST", "/v1/bursts", body, key, keys.key_id(key))
    headers["Content-Type"] = "application/json"
    return httpx.post(hub.url + "/v1/bursts", content=body, headers=headers, timeout=30)


def test_resending_an_old_burst_changes_nothing(hub: Hub, agent: Agent) -> None:
    pos = Pos("R1", seed=2)
    journal = PosJournal()
    with httpx.Client(timeout=10) as client:
        for _ in range(50):
            assert journal.post(client, agent.url, pos.mixed()).status_code == 201
    agent.wait_synced()
    before = hub.ledger("S1")
    old = _outbox_records(agent.data_dir / "outbox.db", 10, 30)
    r = _post_burst(hub, agent.data_dir, old)
    assert r.status_code == 200, r.text
    assert r.json()["stored"] == 0 and r.json()["duplicates"] == 21 and r.json()["acked_through"] == 50
    assert hub.ledger("S1") == before
    assert_ledger_exact(hub, agent, journal)


def test_tampered_outbox_row_is_refused_by_verify_and_hub(tmp_path: Path, hub: Hub) -> None:
    agent = Agent.enrolled(tmp_path / "agent", hub, "S1")  # not running: the POS posts via the CLI
    pos = Pos("R1", seed=3)
    sent = [pos.sale() for _ in range(20)]
    agent_cli("capture", "--data-dir", str(agent.data_dir), "-", input="\n".join(json.dumps(t) for t in sent))
    assert "chain OK" in agent_cli("verify", "--data-dir", str(agent.data_dir)).stdout

    db = agent.data_dir / "outbox.db"
    con = sqlite3.connect(db)
    body = con.execute("SELECT body FROM outbox WHERE seq = 7").fetchone()[0]
    con.execute("UPDATE outbox SET body = ? WHERE seq = 7", (body.replace('"kind":"sale"', '"kind":"void"'),))
    con.commit()
    con.close()
    res = agent_cli("verify", "--data-dir", str(agent.data_dir), check=False)
    assert res.returncode == 1
    assert "seq 7" in (res.stdout + res.stderr)

    # The hub refuses the tampered record with its seq and keeps the six before it.
    r = _post_burst(hub, agent.data_dir, _outbox_records(db, 1, 20))
    assert r.status_code == 422, r.text
    assert r.json()["seq"] == 7 and r.json()["acked_through"] == 6
    assert [x["seq"] for x in hub.ledger("S1")] == [1, 2, 3, 4, 5, 6]


def test_tamper_that_recomputes_the_chain_is_caught_by_signature(tmp_path: Path, hub: Hub) -> None:
    """An attacker who edits a body and recomputes every chain value still cannot sign."""
    agent = Agent.enrolled(tmp_path / "agent", hub, "S1")
    pos = Pos("R1", seed=4)
    agent_cli(
        "capture",
        "--data-dir",
        str(agent.data_dir),
        "-",
        input="\n".join(json.dumps(pos.sale()) for _ in range(5)),
    )
    db = agent.data_dir / "outbox.db"
    recs = _outbox_records(db, 1, 5)
    forged = [recs[0], recs[1]]
    prev = recs[1].chain
    for r in recs[2:]:
        body = r.body.replace("EUR", "USD") if r.seq == 3 else r.body
        prev = chain.link(prev, body)
        forged.append(SignedRecord(r.seq, body, prev, r.sig))
    key = keys.load_private_key(agent.data_dir / "agent.key")
    with pytest.raises(Exception, match="signature"):
        list(verify_run(forged, prev_chain=chain.genesis("S1", 1), first_seq=1, public_key=key.public_key()))
    r = _post_burst(hub, agent.data_dir, forged)
    assert r.status_code == 422
    assert r.json()["error"] == "record_refused"
    # Records 1 and 2 are genuine and vouched for by their own signatures; the forgery starts at 3.
    assert r.json()["seq"] == 3 and r.json()["acked_through"] == 2
    assert [x["seq"] for x in hub.ledger("S1")] == [1, 2]
