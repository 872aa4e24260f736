"""``cloud-hub storage copy``: a SQLite hub with real signed records, events, deliveries in every state,
conflicts and refusals moved into PostgreSQL, compared table by table, verified, and usable afterwards;
a non-empty target refused; a corrupt source refused with the target left empty."""

from __future__ import annotations

from pathlib import Path

import apsw
import pytest

from cloud_hub import cli
from cloud_hub._exceptions import BurstRejected
from cloud_hub.events import SinkConfig
from cloud_hub.forwarding import Forwarder
from cloud_hub.ingest import ingest_burst
from cloud_hub.storage import DeliveryUpdate, Storage, sqlite_url
from cloud_hub.storage.copy import TABLES
from cloud_hub.storage.postgres import PostgresStorage
from cloud_hub.storage.sqlite import SQLiteStorage
from hub.helpers import NOW, Agent, enroll_agent  # tests/ is on sys.path (tests/conftest.py)
from storesync_harness.pos import Pos
from sync_protocol import keys
from sync_protocol.record import make_body, seal
from sync_protocol.transaction import parse_transaction

pytestmark = pytest.mark.postgres
SINKS = [
    SinkConfig.from_dict({"name": "all", "kind": "jsonl", "path": "x", "role": "archive"}),
    SinkConfig.from_dict({"name": "erp", "kind": "jsonl", "path": "y", "role": "erp", "ordering": "strict"}),
]


def sales(agent: Agent, n: int, seed: int) -> None:
    pos = Pos(f"{agent.store_id}-R1", seed=seed)
    for _ in range(n):
        seq = len(agent.outbox) + 1
        txn = parse_transaction(pos.mixed()).canonical()
        body = make_body(
            store_id=agent.store_id, epoch=agent.epoch, seq=seq, kind=txn["kind"],
            captured_at="2026-11-22T10:15:04.120+01:00", txn=txn,
        )  # fmt: skip
        agent.outbox.append(seal(agent.key, agent.head, seq, body))


def send(storage: Storage, hub_key: keys.Ed25519PrivateKey, agent: Agent, first: int, last: int) -> None:
    fwd = Forwarder(SINKS, inline_max=10_000, now=lambda: 1000.0)
    burst = agent.burst(agent.records(first, last))
    ingest_burst(storage, burst, key_id=agent.key_id, hub_key=hub_key, now=NOW, after_store=[fwd])


def build_source(path: Path, hub_key: keys.Ed25519PrivateKey) -> list[Agent]:
    db = SQLiteStorage(path)
    try:
        a1 = enroll_agent(db, "S1", hub_key)
        sales(a1, 60, seed=1)
        send(db, hub_key, a1, 1, 40)
        send(db, hub_key, a1, 30, 60)  # overlapping: duplicates counted
        a2 = enroll_agent(db, "S2", hub_key, tz="America/New_York")
        sales(a2, 25, seed=2)
        send(db, hub_key, a2, 1, 25)
        a1b = enroll_agent(db, "S1", hub_key)  # a re-enrolled store: epoch 2, epoch 1's key superseded
        sales(a1b, 5, seed=3)
        send(db, hub_key, a1b, 1, 5)
        other = enroll_agent(db, "S3", hub_key)
        sales(other, 3, seed=4)
        send(db, hub_key, other, 1, 3)
        forged = Agent("S3", 1, other.key, list(other.outbox[:2]))
        sales(forged, 1, seed=9)  # seq 3 again, with another body: a conflict
        with pytest.raises(BurstRejected):
            send(db, hub_key, forged, 3, 3)
        with db.transaction() as tx:  # deliveries in several states
            got = tx.claim_deliveries("all", strict=False, now=2000.0, lease_until=2030.0, claim="c1", limit=30)
            ups = [DeliveryUpdate(d.id, "done", True, 2000.0) for d in got[:20]]
            ups += [DeliveryUpdate(d.id, "dead", True, 2000.0, "HTTP 400") for d in got[20:25]]
            tx.finish_deliveries("c1", ups, "2026-11-22T11:00:00.000Z")  # 5 stay in flight
            tx.record_refusal("S2", 1, 26, "bad_signature: test", "2026-11-22T11:00:00.000Z")
            tx.record_derive_error("S2", 1, 3, "ValueError: test", "2026-11-22T11:00:00.000Z")
    finally:
        db.close()
    return [a1, a2, a1b, other]


def dump(storage: Storage) -> dict[str, list[tuple]]:
    with storage.snapshot() as tx:
        return {t: list(tx.table_rows(t, cols, order)) for t, cols, order, _ in TABLES}


def test_a_sqlite_hub_is_copied_to_postgresql_verified_and_usable(tmp_path: Path, postgres_url: str, capsys):
    hub_key = keys.generate()
    key_file = tmp_path / "hub.key"
    keys.save_private_key(hub_key, key_file)
    agents = build_source(tmp_path / "hub.db", hub_key)
    source = SQLiteStorage(tmp_path / "hub.db")
    before = dump(source)
    assert all(before[t] for t in ("ledger", "events", "deliveries", "conflicts", "refusals", "derive_errors"))
    assert {r[8] for r in before["deliveries"]} == {"pending", "in_flight", "done", "dead"}

    code = cli.main(
        [
            "storage",
            "copy",
            "--from",
            sqlite_url(tmp_path / "hub.db"),
            "--to",
            postgres_url,
            "--hub-key-file",
            str(key_file),
        ]
    )
    out = capsys.readouterr().out
    assert code == 0, out
    records = sum(len(a.outbox) for a in agents)  # S1/1, S2/1, S1/2, S3/1 (S3 keeps the honest seq 3)
    assert f"copied and verified: 4 streams, {records} records (chains and signatures), 4 receipts" in out

    target = PostgresStorage(postgres_url)
    try:
        assert dump(target) == before  # every row of every table, ids and states included
        assert dump(source) == before  # the source is untouched
        # The new hub carries on where the old one stopped: next seqs, ids after the copied ones.
        a2 = agents[1]
        sales(a2, 5, seed=5)
        send(target, hub_key, a2, 26, 30)
        with target.snapshot() as tx:
            st = tx.get_stream("S2", 1)
            ids = [r[0] for r in tx.table_rows("deliveries", ("id",), "id")]
        assert st is not None and st.acked_through == 30 and st.head_chain == a2.outbox[-1].chain
        assert len(set(ids)) == len(ids) and max(ids) > max(r[0] for r in before["deliveries"])
    finally:
        target.close()
        source.close()

    # A second copy into the now non-empty database is refused, and changes nothing.
    code = cli.main(["storage", "copy", "--from", sqlite_url(tmp_path / "hub.db"), "--to", postgres_url])
    err = capsys.readouterr().err
    assert code == 2 and "the target database is not empty" in err
    target = PostgresStorage(postgres_url)
    try:
        with target.snapshot() as tx:
            assert tx.row_count("ledger") == len(before["ledger"]) + 5
    finally:
        target.close()


def test_a_corrupt_source_is_refused_and_the_target_stays_empty(tmp_path: Path, postgres_url: str, capsys):
    hub_key = keys.generate()
    build_source(tmp_path / "hub.db", hub_key)
    conn = apsw.Connection(str(tmp_path / "hub.db"))
    conn.execute("DROP TRIGGER ledger_no_update")
    conn.execute("UPDATE ledger SET body = replace(body, 'S2-R1', 'S2-R9') WHERE store_id = 'S2' AND seq = 7")
    assert conn.changes() == 1
    conn.close()
    code = cli.main(["storage", "copy", "--from", sqlite_url(tmp_path / "hub.db"), "--to", postgres_url])
    err = capsys.readouterr().err
    assert code == 1 and "S2/1: seq 7: body hash does not match the body" in err
    target = PostgresStorage(postgres_url)
    try:
        with target.snapshot() as tx:
            assert all(tx.row_count(t) == 0 for t, *_ in TABLES)
    finally:
        target.close()


def test_copy_names_a_missing_source(tmp_path: Path, capsys):
    code = cli.main(["storage", "copy", "--from", sqlite_url(tmp_path / "nope.db"), "--to", "postgresql://h/db"])
    assert code == 2 and "--from: no SQLite database at" in capsys.readouterr().err
