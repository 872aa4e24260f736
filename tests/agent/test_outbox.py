"""The outbox on real SQLite files: sequencing, idempotency, conflicts, tamper detection, key files."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import apsw
import pytest

from edge_agent._exceptions import BadReceipt, CaptureConflict, ConfigError, NotEnrolled
from edge_agent.config import AgentConfig
from edge_agent.store import CaptureResult, Outbox
from sync_protocol import chain, keys, parse_transaction
from sync_protocol.record import verify_run
from sync_protocol.wire import Receipt

from .conftest import init_data_dir, make_txn, run_cli, write_identity


@pytest.fixture
def setup(tmp_path: Path) -> tuple[Path, keys.Ed25519PrivateKey, keys.Ed25519PrivateKey]:
    data = tmp_path / "agent"
    key = init_data_dir(data)
    hub_key = write_identity(data, key)
    return data, key, hub_key


def _open(data: Path, key: keys.Ed25519PrivateKey | None) -> Outbox:
    return Outbox(AgentConfig.load(data).db_path, key=key)


def _capture(outbox: Outbox, n: int, register: str = "R1") -> list[int]:
    return [outbox.capture(parse_transaction(make_txn(i, register))).seq for i in range(1, n + 1)]


def _sql(data: Path, sql: str, args: tuple[object, ...] = ()) -> None:
    conn = apsw.Connection(str(AgentConfig.load(data).db_path))
    conn.execute(sql, args)
    conn.close()


def test_seqs_are_consecutive_and_chain_verifies(setup) -> None:
    data, key, _ = setup
    with _open(data, key) as outbox:
        seqs = _capture(outbox, 25) + _capture(outbox, 5, register="R2")
        assert seqs == list(range(1, 31))
        records = outbox.pending(0, 100)
        assert [r.seq for r in records] == list(range(1, 31))
        checked = list(verify_run(records, prev_chain=chain.genesis("S1", 1), first_seq=1, public_key=key.public_key()))
        assert len(checked) == 30
        report = outbox.verify()
        assert (report.ok, report.count, report.first_seq, report.last_seq) == (True, 30, 1, 30)


def test_body_is_canonical_and_carries_writer_and_offset_time(setup) -> None:
    import json

    data, key, _ = setup
    with _open(data, key) as outbox:
        _capture(outbox, 1)
        body = outbox.pending(0, 1)[0].body
    doc = json.loads(body)
    assert (doc["store_id"], doc["epoch"], doc["seq"], doc["kind"], doc["origin"]) == ("S1", 1, 1, "sale", "api")
    assert doc["txn"]["total"] == "46.16"
    captured = doc["captured_at"]
    assert "." in captured and (captured[-6] in "+-"), captured  # milliseconds and an offset
    assert json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False) == body


def test_idempotent_retry_returns_same_seq(setup) -> None:
    data, key, _ = setup
    with _open(data, key) as outbox:
        _capture(outbox, 3)
        again = outbox.capture(parse_transaction(make_txn(2)))
        assert again == CaptureResult(2, True)
        # Same content written differently (amount formatting) is still the same transaction.
        same = make_txn(3)
        same["lines"][0]["qty"] = "2.000"
        assert outbox.capture(parse_transaction(same)) == CaptureResult(3, True)
        assert outbox.count() == 3


def test_same_key_different_content_is_a_conflict_and_stores_nothing(setup) -> None:
    data, key, _ = setup
    with _open(data, key) as outbox:
        _capture(outbox, 2)
        changed = parse_transaction(make_txn(1, price="20.00"))
        with pytest.raises(CaptureConflict) as err:
            outbox.capture(changed)
        assert err.value.seq == 1
        assert outbox.count() == 2
        assert outbox.head()[0] == 2
        # One conflict in a batch does not cost the others.
        results = outbox.capture_batch([(changed, "api"), (parse_transaction(make_txn(9)), "api")])
        assert isinstance(results[0], CaptureConflict)
        assert results[1] == CaptureResult(3, False)


def test_duplicate_inside_one_batch(setup) -> None:
    data, key, _ = setup
    with _open(data, key) as outbox:
        txn = parse_transaction(make_txn(1))
        assert outbox.capture_batch([(txn, "api"), (txn, "api")]) == [CaptureResult(1, False), CaptureResult(1, True)]


def test_not_enrolled_capture_is_refused(tmp_path: Path) -> None:
    data = tmp_path / "agent"
    key = init_data_dir(data)
    with _open(data, key) as outbox:
        with pytest.raises(NotEnrolled):
            outbox.capture(parse_transaction(make_txn(1)))
        assert outbox.count() == 0


def test_records_survive_reopening(setup) -> None:
    data, key, _ = setup
    with _open(data, key) as outbox:
        _capture(outbox, 10)
    with _open(data, key) as outbox:
        assert outbox.head()[0] == 10
        assert outbox.capture(parse_transaction(make_txn(11))).seq == 11
        assert outbox.verify().ok
        assert outbox.schema_version() == 2  # 2: the drop imports table


def test_concurrent_writers_never_share_a_seq(setup) -> None:
    data, key, _ = setup
    errors: list[BaseException] = []

    def worker(register: str) -> None:
        try:
            with _open(data, key) as outbox:
                _capture(outbox, 40, register=register)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(f"R{i}",)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    with _open(data, key) as outbox:
        assert [r.seq for r in outbox.pending(0, 1000)] == list(range(1, 161))
        assert outbox.verify().ok


@pytest.mark.parametrize(
    ("tamper", "bad_seq", "reason"),
    [
        ("UPDATE outbox SET body = replace(body, '46.16', '6.16') WHERE seq = 4", 4, "chain"),
        ("DELETE FROM outbox WHERE seq = 3", 3, "missing"),
        ("DELETE FROM outbox WHERE seq = 6", 6, "missing"),
        ("UPDATE outbox SET sig = zeroblob(64) WHERE seq = 5", 5, "signature"),
        ("UPDATE outbox SET register_id = 'R9' WHERE seq = 2", 2, "columns"),
    ],
)
def test_verify_names_the_tampered_seq(setup, tamper: str, bad_seq: int, reason: str) -> None:
    data, key, _ = setup
    with _open(data, key) as outbox:
        _capture(outbox, 6)
    _sql(data, tamper)
    with _open(data, None) as outbox:
        report = outbox.verify()
    assert not report.ok
    assert report.bad_seq == bad_seq
    assert reason in (report.reason or "")


def test_verify_detects_swapped_bodies_and_inserted_rows(setup) -> None:
    data, key, _ = setup
    with _open(data, key) as outbox:
        _capture(outbox, 6)
    db = AgentConfig.load(data).db_path
    conn = apsw.Connection(str(db))
    b2 = conn.execute("SELECT body FROM outbox WHERE seq = 2").fetchone()[0]
    b3 = conn.execute("SELECT body FROM outbox WHERE seq = 3").fetchone()[0]
    conn.execute("UPDATE outbox SET body = ? WHERE seq = 2", (b3,))
    conn.execute("UPDATE outbox SET body = ? WHERE seq = 3", (b2,))
    conn.close()
    with _open(data, None) as outbox:
        report = outbox.verify()
    assert (report.ok, report.bad_seq) == (False, 2)

    # Reordering the rows themselves (renumbering seqs) is caught as well.
    conn = apsw.Connection(str(db))
    conn.execute("UPDATE outbox SET body = ? WHERE seq = 2", (b2,))
    conn.execute("UPDATE outbox SET body = ? WHERE seq = 3", (b3,))
    conn.execute("UPDATE outbox SET seq = 100 WHERE seq = 4")
    conn.execute("UPDATE outbox SET seq = 4 WHERE seq = 5")
    conn.execute("UPDATE outbox SET seq = 5 WHERE seq = 100")
    conn.close()
    with _open(data, None) as outbox:
        assert outbox.verify().bad_seq == 4

    # An inserted row (a copy of seq 5 filed as seq 7) breaks the head.
    conn = apsw.Connection(str(db))
    conn.execute("UPDATE outbox SET seq = 100 WHERE seq = 4")
    conn.execute("UPDATE outbox SET seq = 4 WHERE seq = 5")
    conn.execute("UPDATE outbox SET seq = 5 WHERE seq = 100")
    conn.execute(
        "INSERT INTO outbox SELECT epoch, 7, register_id, 'X', kind, captured_at, origin, body, txn_hash, chain, sig "
        "FROM outbox WHERE seq = 6"
    )
    conn.close()
    with _open(data, None) as outbox:
        assert outbox.verify().bad_seq == 7


def test_verify_cli_reports_ok_and_bad_seq(setup) -> None:
    data, key, _ = setup
    with _open(data, key) as outbox:
        _capture(outbox, 5)
    ok = run_cli("verify", "--data-dir", str(data))
    assert (ok.returncode, ok.stdout.strip()) == (0, "chain OK: 5 records, seq 1..5")
    _sql(data, "UPDATE outbox SET body = replace(body, 'TEE-BLK-M', 'TEE-RED-M') WHERE seq = 3")
    bad = run_cli("verify", "--data-dir", str(data))
    assert bad.returncode == 1
    assert bad.stdout.startswith("seq 3: ")


def test_key_file_readable_by_others_is_refused(setup) -> None:
    data, _, _ = setup
    cfg = AgentConfig.load(data)
    assert cfg.key_path.stat().st_mode & 0o777 == 0o600
    cfg.load_key()
    os.chmod(cfg.key_path, 0o644)
    with pytest.raises(ConfigError, match="chmod 600"):
        cfg.load_key()
    result = run_cli("run", "--data-dir", str(data), "--port", "0")
    assert result.returncode == 2
    assert "accessible by group or others" in result.stderr
    assert "listening" not in result.stdout


def test_init_refuses_to_overwrite_the_key(tmp_path: Path) -> None:
    data = tmp_path / "agent"
    first = run_cli("init", "--data-dir", str(data))
    assert first.returncode == 0, first.stderr
    key_before = (data / "agent.key").read_bytes()
    kid = keys.key_id(AgentConfig.load(data).load_key())
    assert first.stdout.strip() == f"initialised {data.resolve()}: key_id {kid}"
    second = run_cli("init", "--data-dir", str(data))
    assert second.returncode == 2
    assert "refusing to overwrite" in second.stderr
    assert (data / "agent.key").read_bytes() == key_before


def test_receipts_advance_acked_through_only_when_valid(setup) -> None:
    data, key, hub_key = setup
    with _open(data, key) as outbox:
        _capture(outbox, 5)
        head3 = outbox.chain_at(1, 3)
        assert head3 is not None
        good = Receipt.issue(hub_key, "S1", 1, 3, head3)
        forged = Receipt.issue(keys.generate(), "S1", 1, 3, head3)
        wrong_chain = Receipt.issue(hub_key, "S1", 1, 3, b"\x00" * 32)
        beyond = Receipt.issue(hub_key, "S1", 1, 9, head3)
        for bad in (forged, wrong_chain, beyond):
            with pytest.raises(BadReceipt):
                outbox.apply_receipt(bad, hub_key.public_key())
            assert outbox.acked_through() == 0
        assert outbox.apply_receipt(good, hub_key.public_key()) == 3
        assert [r.seq for r in outbox.pending(outbox.acked_through(), 10)] == [4, 5]
        # Rewind (the hub lost records) works only while the records are here.
        assert outbox.rewind(2)
        assert outbox.acked_through() == 1
        assert not outbox.rewind(9)
        _sql(data, "DELETE FROM outbox WHERE seq = 1")
        assert not outbox.rewind(1)
        assert outbox.acked_through() == 1


def test_capture_cli_reports_each_item(setup, tmp_path: Path) -> None:
    import json

    data, _, _ = setup
    lines = [
        json.dumps(make_txn(1)),
        json.dumps(make_txn(2)),
        "",
        json.dumps(make_txn(1)),
        json.dumps(make_txn(2, price="1.00")),
        json.dumps({**make_txn(3), "total": "1.00"}),
        "{not json",
    ]
    path = tmp_path / "txns.jsonl"
    path.write_text("\n".join(lines) + "\n")
    result = run_cli("capture", "--data-dir", str(data), str(path))
    out = result.stdout.splitlines()
    assert result.returncode == 1
    assert out[:3] == ["line 1: stored as seq 1", "line 2: stored as seq 2", "line 4: duplicate of seq 1"]
    assert out[3].startswith("line 5: refused (conflict)")
    assert out[4].startswith("line 6: refused: total: lines 39.80")
    assert out[5].startswith("line 7: refused: not valid JSON")
    assert len(out) == 6
    ok = run_cli("capture", "--data-dir", str(data), "-", input=json.dumps([make_txn(1), make_txn(4)]))
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert ok.stdout.splitlines() == ["item 1: duplicate of seq 1", "item 2: stored as seq 3"]


def test_capture_connections_flush_every_commit_bookkeeping_ones_do_not(tmp_path: Path) -> None:
    """The POS's acknowledgement is a FULL commit; sync bookkeeping must not fsync on the POS's path."""
    with Outbox(tmp_path / "outbox.db") as durable, Outbox(tmp_path / "outbox.db", durable=False) as light:
        assert durable.conn.execute("PRAGMA synchronous").fetchall() == [(2,)]  # FULL
        assert light.conn.execute("PRAGMA synchronous").fetchall() == [(1,)]  # NORMAL
        assert durable.conn.execute("PRAGMA journal_mode").fetchall() == [("wal",)]
