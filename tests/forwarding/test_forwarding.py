"""Forwarding on a real SQLite file: the ingest hook, deferred derivation, claims, leases, strict
lanes, replay/skip, the retry planner and hub.toml validation."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cloud_hub._exceptions import ConfigError
from cloud_hub.delivery import plan_updates
from cloud_hub.events import SinkConfig
from cloud_hub.forwarding import Forwarder, ForwardingConfig, load_config
from cloud_hub.ingest import ingest_burst
from cloud_hub.sinks import Outcome
from cloud_hub.storage import Delivery, DeliverySelector, DeliveryUpdate
from cloud_hub.storage.sqlite import SQLiteStorage
from hub.helpers import NOW, Agent, enroll_agent  # tests/ is on sys.path (tests/conftest.py)
from storesync_harness.pos import Pos
from sync_protocol import keys
from sync_protocol.record import make_body, seal
from sync_protocol.transaction import parse_transaction

SINKS = [
    SinkConfig.from_dict({"name": "all", "kind": "jsonl", "path": "x", "role": "archive"}),
    SinkConfig.from_dict({"name": "erp", "kind": "jsonl", "path": "y", "role": "erp", "ordering": "strict"}),
]


def mixed_agent(storage: SQLiteStorage, hub_key: keys.Ed25519PrivateKey, n: int) -> Agent:
    agent = enroll_agent(storage, "S1", hub_key)
    pos = Pos("R1", seed=4)
    for seq in range(1, n + 1):
        txn = parse_transaction(pos.mixed()).canonical()
        body = make_body(store_id="S1", epoch=1, seq=seq, kind=txn["kind"], captured_at="2026-11-22T10:15:04.120+01:00",
                         txn=txn)  # fmt: skip
        agent.outbox.append(seal(agent.key, agent.head, seq, body))
    return agent


def send(storage, hub_key, agent, first, last, fwd: Forwarder) -> None:
    clock = {"theta_ms": 5.0, "delta_ms": 20.0, "sampled_at": "2026-11-22T09:15:00.000+00:00"}
    burst = agent.burst(agent.records(first, last), clock=clock)
    ingest_burst(storage, burst, key_id=agent.key_id, hub_key=hub_key, now=NOW, after_store=[fwd])


def all_events(storage: SQLiteStorage) -> list[tuple[str, str]]:
    with storage.snapshot() as tx:
        rows = tx.list_deliveries(DeliverySelector(sink="all"), limit=10_000)
        claimed = tx.claim_deliveries("all", strict=False, now=1e12, lease_until=2e12, claim="t", limit=10_000)
    assert [r.event_id for r in rows] == [c.event_id for c in sorted(claimed, key=lambda c: c.id)]
    return [(c.event_id, c.event_json) for c in sorted(claimed, key=lambda c: c.id)]


def test_event_data_is_the_validated_transaction_and_bad_bodies_are_derive_errors(storage, hub_key) -> None:
    """A signed body with a float, an unknown schema or an invalid transaction derives nothing; a good
    body's event carries exactly its validated canonical transaction. (Two ``txn`` keys are refused
    at ingest already: tests/hub/test_ingest.py.)"""
    agent = enroll_agent(storage, "S1", hub_key)
    good = agent.body(1)
    txn_text = good[good.index(',"txn":') + 7 : -len(',"v":1}')]
    bad_bodies = [
        good.replace('"epoch":1', '"epoch":1,"weight":1.5', 1),
        good.replace('"kind":"sale"', '"kind":"void"', 1),
        good.replace('"register_id":"R2"', '"register_id":"R2","schema":"storesync.pos.v9"', 1),
        good.replace('"total":"', '"total":"1', 1),
    ]
    agent.outbox.append(seal(agent.key, agent.head, 1, good))
    for seq, body in enumerate(bad_bodies, 2):
        agent.outbox.append(seal(agent.key, agent.head, seq, body.replace('"seq":1', f'"seq":{seq}', 1)))
    send(storage, hub_key, agent, 1, 5, Forwarder(SINKS))
    with storage.snapshot() as tx:
        errors = tx.derive_errors("S1")
        claimed = tx.claim_deliveries("all", strict=False, now=1e12, lease_until=2e12, claim="t", limit=100)
    assert [(e.seq, e.code) for e in errors] == [
        (2, "bad_body"), (3, "bad_body"), (4, "unknown_schema"), (5, "invalid_transaction")]  # fmt: skip
    assert "float" in errors[0].reason and "differs from txn.kind" in errors[1].reason
    sale = json.loads(next(c.event_json for c in claimed if c.event_id == "S1:1:1"))
    assert sale["data"]["txn"] == parse_transaction(json.loads(txn_text)).canonical()
    assert {c.seq for c in claimed} == {1}


def test_inline_and_deferred_derivation_give_the_same_events_once(tmp_path: Path, hub_key) -> None:
    stores = []
    for inline_max in (10_000, 0):
        storage = SQLiteStorage(tmp_path / f"hub{inline_max}.db")
        agent = mixed_agent(storage, hub_key, 60)
        fwd = Forwarder(SINKS, inline_max=inline_max, now=lambda: 1000.0)
        send(storage, hub_key, agent, 1, 40, fwd)
        send(storage, hub_key, agent, 1, 60, fwd)  # overlaps: the first 40 are duplicates
        while fwd.catch_up(storage, limit=7):
            pass
        assert fwd.catch_up(storage) == 0
        stores.append(all_events(storage))
        with storage.snapshot() as tx:
            assert tx.forward_cursor("S1", 1) == 60 and tx.forward_lag() == []
            erp = tx.list_deliveries(DeliverySelector(sink="erp"), limit=10_000)
        assert any(d.event_id.endswith(":writeoff") for d in erp)
        storage.close()
    inline, deferred = stores
    assert inline == deferred
    ids = [i for i, _ in inline]
    assert len(ids) == len(set(ids)) and {i.split(":")[2] for i in ids} == {str(s) for s in range(1, 61)}
    assert not any(i.endswith(":writeoff") for i in ids)  # damaged goods go to the ERP only


def test_a_body_without_events_is_kept_and_reported(storage, hub_key) -> None:
    agent = enroll_agent(storage, "S1", hub_key)
    body = agent.body(1).replace('"kind":"sale"', '"kind":"layaway"')
    agent.outbox.append(seal(agent.key, agent.head, 1, body))
    agent.make(1)
    send(storage, hub_key, agent, 1, 2, Forwarder(SINKS))
    with storage.snapshot() as tx:
        errors = tx.derive_errors("S1")
        assert [(e.seq, e.code) for e in errors] == [(1, "invalid_transaction")]
        assert "txn.kind" in errors[0].reason
        assert tx.forward_cursor("S1", 1) == 2
        assert [d.seq for d in tx.list_deliveries(DeliverySelector(sink="all"))] == [2, 2]


def test_strict_lane_claims_fifo_parks_behind_dead_and_leases_expire(storage, hub_key) -> None:
    agent = enroll_agent(storage, "S1", hub_key)
    agent.make(4)
    send(storage, hub_key, agent, 1, 4, Forwarder(SINKS, now=lambda: 100.0))
    with storage.transaction() as tx:
        first = tx.claim_deliveries("erp", strict=True, now=100, lease_until=110, claim="a", limit=3)
        assert [d.seq for d in first] == [1, 1, 2]
        assert tx.claim_deliveries("erp", strict=True, now=105, lease_until=115, claim="b", limit=10) == []
        again = tx.claim_deliveries("erp", strict=True, now=111, lease_until=120, claim="c", limit=2)
        assert [d.id for d in again] == [d.id for d in first[:2]]  # the lease ran out: delivered again
        stale = tx.finish_deliveries("a", [DeliveryUpdate(first[0].id, "done", True, 111)], "t")
        assert stale == 0  # the first worker lost its claim
        tx.finish_deliveries("c", [DeliveryUpdate(again[0].id, "dead", True, 112, "HTTP 400"),
                                   DeliveryUpdate(again[1].id, "pending", False, 112)], "t")  # fmt: skip
        assert tx.claim_deliveries("erp", strict=True, now=1e9, lease_until=2e9, claim="d", limit=10) == []
        assert tx.replay_deliveries(DeliverySelector(sink="erp", state="dead"), 200, "t") == 1
        replayed = tx.claim_deliveries("erp", strict=True, now=200, lease_until=210, claim="e", limit=100)
        assert [d.event_id for d in replayed][:2] == [again[0].event_id, again[1].event_id]
        assert tx.skip_delivery("erp", again[0].event_id, "t") is False  # in flight: not skippable


def test_plan_updates_backoff_retry_after_give_up_and_lane_hold() -> None:
    cfg = SinkConfig.from_dict({"name": "w", "kind": "webhook", "url": "u", "ordering": "strict",
                                "retry": {"max_attempts": 3, "base_s": 1, "cap_s": 8}})  # fmt: skip

    def d(i: int, attempts: int = 0, lane: str = "S1") -> Delivery:
        return Delivery(i, f"e{i}", "w", lane, 1, i, lane, "in_flight", attempts, 0.0, None, "t", "t")

    batch = [d(1), d(2, attempts=2, lane="S2"), d(3), d(4), d(5, lane="S3")]
    outcomes = [
        Outcome.ok("e1"),
        Outcome.transient("e2", "503"),
        Outcome.transient("e3", "429", retry_after=30),
        Outcome.transient("e4", "not attempted: e3 failed first"),
        Outcome.permanent("e5", "HTTP 400"),
    ]
    ups = plan_updates(cfg, batch, outcomes, now=1000.0, rand=lambda: 0.5)
    assert [(u.state, u.attempted) for u in ups] == [
        ("done", True), ("dead", True), ("pending", True), ("pending", False), ("dead", True)]  # fmt: skip
    assert "gave up after 3 attempts" in (ups[1].last_error or "")
    assert ups[2].next_attempt_at == 1030.0 and ups[3].next_attempt_at == 1030.0


def test_config_errors_name_the_sink_and_field(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    default = load_config(None, tmp_path)
    assert [(s.name, s.kind, s.options["path"]) for s in default.sinks] == [
        ("events", "jsonl", str(tmp_path / "events.jsonl"))]  # fmt: skip
    two = '[[sinks]]\nname = "a"\nkind = "jsonl"\npath = "p"\n'
    cases = {
        '[[sinks]]\nname = "w"\nkind = "webhook"\n': "sink w: kind webhook needs 'url'",
        '[[sinks]]\nname = "q"\nkind = "kafka"\n': "sink q: kind must be one of",
        two + two: "'a' is used twice",
        '[[sinks]]\nname = "w"\nkind = "webhook"\nurl = "u"\nsecret_env = "NOPE_UNSET"\n': "names environment",
        "[delivery]\nbatchsize = 3\n": "unknown field 'batchsize'",
        '[[sinks]]\nname = "c"\nkind = "jsonl"\npath = "p"\nrole = "channel"\n': "sink c: a channel sink needs",
        "[[sinks]\n": "not valid TOML",
        "[time]\nmax_batch_age_days = -1\n": "[time] max_batch_age_days must be a number greater than 0",
        "[time]\nmax_age = 3\n": "[time] has unknown field 'max_age'",
        '[stock]\nnon_stock_skus = "GIFT-*"\n': "[stock] non_stock_skus must be a list",
    }
    for text, message in cases.items():
        path = tmp_path / "hub.toml"
        path.write_text(text)
        with pytest.raises(ConfigError) as info:
            load_config(path, tmp_path)
        assert message in info.value.message, (text, info.value.message)
    monkeypatch.setenv("HOOK_SECRET", "s3cret")
    doc = {"sinks": [{"name": "w", "kind": "webhook", "url": "u", "secret_env": "HOOK_SECRET"}]}
    cfg = ForwardingConfig.from_doc(doc, tmp_path)
    assert cfg.sinks[0].options["secret"] == "s3cret" and "secret_env" not in cfg.sinks[0].options
    assert cfg.time.max_batch_age_s == 35 * 86400 and cfg.stock.non_stock_skus == ()
    cfg = ForwardingConfig.from_doc(
        {"time": {"max_batch_age_days": 60}, "stock": {"non_stock_skus": ["GC-*"]}}, tmp_path
    )
    assert cfg.time.max_batch_age_s == 60 * 86400 and cfg.stock.moves_stock({"sku": "GC-50"}) is False


def test_rederive_after_the_cause_is_fixed_happens_exactly_once(storage, hub_key, monkeypatch) -> None:
    """A mapping that failed (here: a validator bug, fixed by 'upgrading' it) is re-derived once: its events
    and deliveries are written with the resolution in one transaction; a second request is refused."""
    import cloud_hub.forwarding as forwarding
    from cloud_hub._exceptions import AlreadyResolved, DeriveStillFails, NotFound
    from cloud_hub.records import DeriveFailure, validated_doc

    def broken(body: str, **kw) -> dict:
        if '"seq":2' in body:
            raise DeriveFailure("invalid_transaction", "txn.currency: this hub's mapping does not know EUR")
        return validated_doc(body, **kw)

    monkeypatch.setattr(forwarding, "validated_doc", broken)
    agent = enroll_agent(storage, "S1", hub_key)
    agent.make(3)
    fwd = Forwarder(SINKS, now=lambda: 100.0)
    send(storage, hub_key, agent, 1, 3, fwd)
    with storage.snapshot() as tx:
        (err,) = tx.derive_errors("S1")
    with pytest.raises(DeriveStillFails):
        fwd.rederive(storage, err.id)
    monkeypatch.setattr(forwarding, "validated_doc", validated_doc)  # the fix
    assert fwd.rederive(storage, err.id) == 2  # the sale and its inventory event
    with pytest.raises(AlreadyResolved):
        fwd.rederive(storage, err.id)
    with pytest.raises(NotFound):
        fwd.rederive(storage, 999_999)
    with storage.snapshot() as tx:
        assert tx.derive_errors("S1", open_only=True) == []
        assert tx.derive_error(err.id).resolved_at is not None  # type: ignore[union-attr]
        rows = tx.list_deliveries(DeliverySelector(sink="all"), limit=100)
        assert tx.forward_cursor("S1", 1) == 3
    ids = [d.event_id for d in rows]
    assert ids.count("S1:1:2") == 1 and ids.count("S1:1:2:inventory") == 1 and len(ids) == len(set(ids))
