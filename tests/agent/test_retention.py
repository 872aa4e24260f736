"""Retention with a time-travelled clock: only old records covered by a valid hub receipt are pruned,
the chain anchor moves with them, and ``edge-agent verify`` still checks what remains."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from edge_agent.config import AgentConfig
from edge_agent.store import Outbox, prune
from sync_protocol import keys
from sync_protocol.transaction import parse_transaction
from sync_protocol.wire import Receipt

from .conftest import init_data_dir, make_txn, run_cli, write_identity

LATER = datetime.now(UTC) + timedelta(days=40)


def _setup(tmp_path: Path, n: int = 100) -> tuple[Path, keys.Ed25519PrivateKey]:
    data = tmp_path / "agent"
    key = init_data_dir(data)
    hub_key = write_identity(data, key)
    with Outbox(AgentConfig.load(data).db_path, key=key) as outbox:
        outbox.capture_batch([(parse_transaction(make_txn(i)), "api") for i in range(1, n + 1)])
    return data, hub_key


def _receipt(outbox: Outbox, hub_key: keys.Ed25519PrivateKey, seq: int) -> None:
    chain_value = outbox.chain_at(1, seq)
    assert chain_value is not None
    outbox.apply_receipt(Receipt.issue(hub_key, "S1", 1, seq, chain_value), hub_key.public_key())


def test_nothing_is_pruned_without_a_receipt_or_before_the_period(tmp_path: Path) -> None:
    data, hub_key = _setup(tmp_path)
    with Outbox(data / "outbox.db") as outbox:
        assert prune(outbox, retention_days=30, now=LATER).pruned == 0  # no receipt yet
        _receipt(outbox, hub_key, 60)
        assert prune(outbox, retention_days=30).pruned == 0  # receipted but young
        assert prune(outbox, retention_days=30, now=datetime.now(UTC) + timedelta(days=10)).pruned == 0
        assert outbox.count() == 100


def test_old_receipted_records_are_pruned_and_verify_still_passes(tmp_path: Path) -> None:
    data, hub_key = _setup(tmp_path)
    with Outbox(data / "outbox.db") as outbox:
        _receipt(outbox, hub_key, 60)
        result = prune(outbox, retention_days=30, now=LATER)
        assert (result.pruned, result.anchor_seq, result.limit_seq) == (60, 60, 60)
        assert outbox.count() == 40
        assert outbox.query("SELECT min(seq), max(seq) FROM outbox")[0] == (61, 100)
        assert prune(outbox, retention_days=30, now=LATER).pruned == 0  # idempotent
        report = outbox.verify()
        assert report.ok and (report.count, report.first_seq, report.last_seq) == (40, 61, 100)
        assert not outbox.rewind(30)  # pruned records cannot be resent
        assert outbox.rewind(61)
    out = run_cli("verify", "--data-dir", str(data))
    assert (out.returncode, out.stdout.strip()) == (0, "chain OK: 40 records, seq 61..100")


def test_a_rewound_acked_through_and_a_forged_receipt_limit_pruning(tmp_path: Path) -> None:
    data, hub_key = _setup(tmp_path)
    with Outbox(data / "outbox.db") as outbox:
        _receipt(outbox, hub_key, 80)
        assert outbox.rewind(21)  # the hub lost 21..80: keep them to resend
        result = prune(outbox, retention_days=30, now=LATER)
        assert (result.pruned, result.anchor_seq) == (20, 20)
        forged = dict(outbox.sync_state()["receipt"], acked_through=100)
        outbox.update_sync(receipt=forged, acked_through=100)
        result = prune(outbox, retention_days=30, now=LATER)
        assert result.pruned == 0 and "signature" in result.reason
        report = outbox.verify()  # verify checks the stored receipt too: the forgery is caught there as well
        assert not report.ok and "receipt" in report.reason


def test_pruning_everything_keeps_the_anchor_and_an_edit_is_still_caught(tmp_path: Path) -> None:
    data, hub_key = _setup(tmp_path, 10)
    with Outbox(data / "outbox.db") as outbox:
        _receipt(outbox, hub_key, 10)
        assert prune(outbox, retention_days=30, now=LATER).pruned == 10
        assert outbox.verify().ok and outbox.count() == 0
    key = AgentConfig.load(data).load_key()
    with Outbox(data / "outbox.db", key=key) as outbox:
        assert outbox.capture(parse_transaction(make_txn(11))).seq == 11
        outbox.conn.execute("UPDATE writers SET anchor_chain = zeroblob(32)")
        bad = outbox.verify()
        assert not bad.ok and bad.bad_seq == 11


def test_pruning_and_a_rewind_racing_never_lose_what_the_hub_asked_for(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Retention decides and deletes under one write lock, so a rewind in between is never undone.

    The prune is held in the middle of its second chunk's decision while another connection (a sync
    pass: the hub asked for seq 100 again) rewinds ``acked_through``. The rewind's answer must hold:
    True means every record from 100 on is still there afterwards (before the fix the prune went on
    to its old limit and deleted them); False means they were already pruned, and the gap is reported.
    """
    from edge_agent.store import retention

    data, hub_key = _setup(tmp_path, n=300)
    with Outbox(data / "outbox.db") as outbox:
        _receipt(outbox, hub_key, 300)
    monkeypatch.setattr(retention, "CHUNK", 20)
    go, done = threading.Event(), threading.Event()
    calls = 0
    aware = retention._aware

    def slow_aware(text: str) -> datetime:
        nonlocal calls
        calls += 1
        if calls == 30:  # inside the second chunk's decision
            go.set()
            done.wait(0.5)  # give the rewind a chance to slip in (it cannot, with the fix: it waits for the lock)
        return aware(text)

    monkeypatch.setattr(retention, "_aware", slow_aware)
    rewound: list[bool] = []

    def sync_pass() -> None:
        go.wait(10)
        with Outbox(data / "outbox.db", durable=False) as ob:
            rewound.append(ob.rewind(100))
        done.set()

    other = threading.Thread(target=sync_pass)
    other.start()
    with Outbox(data / "outbox.db") as outbox:
        result = prune(outbox, retention_days=30, now=LATER)
        other.join(15)
        assert len(rewound) == 1
        if rewound[0]:
            assert result.anchor_seq < 100, result
            first = outbox.pending(99, 1000)
            assert first and first[0].seq == 100 and len(first) == 201, (result, len(first))
            assert outbox.acked_through() == 99
        else:
            assert result.anchor_seq >= 100 and outbox.acked_through() == 300, result
        assert outbox.verify().ok
