"""Every burst rule of protocol.md §5, on a real SQLite file with really signed records."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

import pytest

from cloud_hub._exceptions import BurstRejected
from cloud_hub.ingest import ingest_burst
from cloud_hub.storage import LedgerRow, Storage, UnitOfWork, Writer
from sync_protocol import chain, keys
from sync_protocol.record import seal
from sync_protocol.wire import BurstRequest, BurstResponse, Receipt

from .helpers import NOW, Agent, enroll_agent


def send(storage: Storage, hub_key: keys.Ed25519PrivateKey, agent: Agent, burst: BurstRequest, **kw) -> BurstResponse:
    return ingest_burst(storage, burst, key_id=kw.pop("key_id", agent.key_id), hub_key=hub_key, now=NOW, **kw)


def rejected(
    storage: Storage, hub_key: keys.Ed25519PrivateKey, agent: Agent, burst: BurstRequest, **kw
) -> BurstRejected:
    with pytest.raises(BurstRejected) as info:
        send(storage, hub_key, agent, burst, **kw)
    return info.value


def ledger(storage: Storage, agent: Agent) -> list[LedgerRow]:
    with storage.snapshot() as tx:
        return tx.ledger_page(agent.store_id, agent.epoch, 0, 100_000)


def stream(storage: Storage, agent: Agent):
    with storage.snapshot() as tx:
        st = tx.get_stream(agent.store_id, agent.epoch)
    assert st is not None
    return st


@pytest.fixture
def agent(storage: Storage, hub_key: keys.Ed25519PrivateKey) -> Agent:
    return enroll_agent(storage, "S1", hub_key)


def test_in_order_records_are_stored_with_exact_bodies_and_a_valid_receipt(storage, hub_key, agent):
    recs = agent.make(5)
    answer = send(storage, hub_key, agent, agent.burst(recs))
    assert (answer.acked_through, answer.stored, answer.duplicates) == (5, 5, 0)
    assert answer.receipt is not None
    assert answer.receipt.valid(hub_key.public_key())
    assert answer.receipt.chain == recs[-1].chain.hex()
    assert answer.receipt.hub_key_id == keys.key_id(hub_key)
    rows = ledger(storage, agent)
    assert [(r.seq, r.body, r.chain, r.sig) for r in rows] == [(r.seq, r.body, r.chain, r.sig) for r in recs]
    assert all(r.body_hash == chain.body_hash(r.body) for r in rows)

    more = agent.make(3)
    answer = send(storage, hub_key, agent, agent.burst(more))
    assert (answer.acked_through, answer.stored) == (8, 3)
    assert stream(storage, agent).head_chain == more[-1].chain


def test_receipt_does_not_verify_with_another_key(storage, hub_key, agent):
    answer = send(storage, hub_key, agent, agent.burst(agent.make(2)))
    assert answer.receipt is not None
    assert not answer.receipt.valid(keys.generate().public_key())
    forged = answer.receipt.model_copy(update={"acked_through": 3})
    assert not forged.valid(hub_key.public_key())


def test_resent_records_are_counted_as_duplicates_and_change_nothing(storage, hub_key, agent):
    recs = agent.make(5)
    send(storage, hub_key, agent, agent.burst(recs))
    before = ledger(storage, agent)
    answer = send(storage, hub_key, agent, agent.burst(recs))
    assert (answer.acked_through, answer.stored, answer.duplicates) == (5, 0, 5)
    assert ledger(storage, agent) == before
    assert stream(storage, agent).duplicates == 5


def test_burst_overlapping_the_stored_range_stores_only_the_new_part(storage, hub_key, agent):
    send(storage, hub_key, agent, agent.burst(agent.make(5)))
    agent.make(3)
    answer = send(storage, hub_key, agent, agent.burst(agent.records(3, 8)))
    assert (answer.acked_through, answer.stored, answer.duplicates) == (8, 3, 3)
    assert [r.seq for r in ledger(storage, agent)] == list(range(1, 9))


def test_conflict_is_refused_recorded_and_nothing_after_it_is_stored(storage, hub_key, agent):
    recs = agent.make(5)
    send(storage, hub_key, agent, agent.burst(recs))
    other = seal(agent.key, recs[1].chain, 3, agent.body(3, n=999))
    tail = [
        seal(agent.key, other.chain, 4, agent.body(4)),
    ]
    tail.append(seal(agent.key, tail[0].chain, 5, agent.body(5)))
    tail.append(seal(agent.key, tail[1].chain, 6, agent.body(6)))
    burst = agent.burst([recs[0], recs[1], other, *tail])
    err = rejected(storage, hub_key, agent, burst)
    assert err.status == 409
    assert (err.error.error, err.error.seq, err.error.acked_through) == ("conflict", 3, 5)
    assert err.error.duplicates == 2
    assert [r.seq for r in ledger(storage, agent)] == [1, 2, 3, 4, 5]
    assert ledger(storage, agent)[2].body == recs[2].body
    with storage.snapshot() as tx:
        conflicts = tx.conflicts("S1")
    assert [(c.seq, c.stored_hash, c.received_hash) for c in conflicts] == [
        (3, chain.body_hash(recs[2].body), chain.body_hash(other.body))
    ]
    assert stream(storage, agent).acked_through == 5


def test_gap_answers_expected_seq_and_stores_nothing(storage, hub_key, agent):
    send(storage, hub_key, agent, agent.burst(agent.make(3)))
    agent.make(5)
    err = rejected(storage, hub_key, agent, agent.burst(agent.records(6, 8)))
    assert err.status == 409
    assert (err.error.error, err.error.expected_seq, err.error.acked_through) == ("gap", 4, 3)
    assert len(ledger(storage, agent)) == 3


@pytest.mark.parametrize("verify_all", [False, True])
def test_chain_broken_mid_burst_keeps_the_records_before_it(storage, hub_key, agent, verify_all):
    recs = agent.make(5)
    broken = seal(agent.key, b"\x00" * 32, 6, agent.body(6))
    after = seal(agent.key, broken.chain, 7, agent.body(7))
    err = rejected(storage, hub_key, agent, agent.burst([*recs, broken, after]), verify_all=verify_all)
    assert err.status == 422
    assert (err.error.error, err.error.seq, err.error.acked_through, err.error.stored) == ("record_refused", 6, 5, 5)
    assert "chain" in err.error.message
    assert err.error.receipt is not None and err.error.receipt.valid(hub_key.public_key())
    assert err.error.receipt.chain == recs[-1].chain.hex()
    assert [r.seq for r in ledger(storage, agent)] == [1, 2, 3, 4, 5]
    with storage.snapshot() as tx:
        assert [(r.seq, r.reason.split(":")[0]) for r in tx.refusals("S1")] == [(6, "chain_broken")]


def test_chain_broken_at_the_first_new_record_stores_nothing(storage, hub_key, agent):
    send(storage, hub_key, agent, agent.burst(agent.make(2)))
    broken = seal(agent.key, chain.genesis("S1", 1), 3, agent.body(3))
    err = rejected(storage, hub_key, agent, agent.burst([broken]))
    assert (err.status, err.error.seq, err.error.acked_through, err.error.stored) == (422, 3, 2, 0)


def test_bad_signature_on_the_last_record_is_refused_with_verify_last(storage, hub_key, agent):
    recs = agent.make(5)
    stranger = keys.generate()
    forged = replace(recs[4], sig=keys.sign(stranger, recs[4].chain))
    err = rejected(storage, hub_key, agent, agent.burst([*recs[:4], forged]))
    assert (err.status, err.error.seq, err.error.acked_through) == (422, 5, 4)
    assert "signature" in err.error.message
    assert [r.seq for r in ledger(storage, agent)] == [1, 2, 3, 4]


def test_bad_signature_on_a_middle_record_is_found_with_verify_all(storage, hub_key, agent):
    recs = agent.make(5)
    forged = replace(recs[2], sig=keys.sign(keys.generate(), recs[2].chain))
    burst = agent.burst([recs[0], recs[1], forged, recs[3], recs[4]])
    err = rejected(storage, hub_key, agent, burst, verify_all=True)
    assert (err.status, err.error.seq, err.error.acked_through) == (422, 3, 2)
    assert [r.seq for r in ledger(storage, agent)] == [1, 2]


def test_verify_last_trusts_the_last_signature_for_the_whole_chain(storage, hub_key, agent):
    # Documented behaviour (DESIGN §4): the last signature vouches for every record before it.
    recs = agent.make(5)
    forged = replace(recs[2], sig=keys.sign(keys.generate(), recs[2].chain))
    answer = send(storage, hub_key, agent, agent.burst([recs[0], recs[1], forged, recs[3], recs[4]]))
    assert answer.acked_through == 5


def test_verify_last_falls_back_to_every_signature_when_the_prefix_does_not_vouch(storage, hub_key, agent):
    recs = agent.make(6)
    bad_sig = replace(recs[5], sig=keys.sign(keys.generate(), recs[5].chain))
    broken = seal(agent.key, b"\x01" * 32, 7, agent.body(7))
    err = rejected(storage, hub_key, agent, agent.burst([*recs[:5], bad_sig, broken]))
    assert (err.error.seq, err.error.acked_through) == (6, 5)
    assert "signature" in err.error.message


@pytest.mark.parametrize(
    ("field", "kwargs", "needle"),
    [
        ("store_id", {"store_id": "S2"}, "store_id"),
        ("epoch", {"epoch": 7}, "epoch"),
        ("seq", {}, "seq"),
    ],
)
def test_body_naming_another_writer_or_seq_is_refused(storage, hub_key, agent, field, kwargs, needle):
    recs = agent.make(2)
    body = agent.body(9, **kwargs) if field == "seq" else agent.body(3, **kwargs)
    bad = seal(agent.key, recs[-1].chain, 3, body)
    err = rejected(storage, hub_key, agent, agent.burst([*recs, bad]))
    assert (err.status, err.error.seq, err.error.acked_through) == (422, 3, 2)
    assert needle in err.error.message


def test_body_that_is_not_json_is_refused(storage, hub_key, agent):
    bad = seal(agent.key, agent.head, 1, "not json at all")
    err = rejected(storage, hub_key, agent, agent.burst([bad], first_seq=1))
    assert (err.status, err.error.seq) == (422, 1)
    assert "JSON" in err.error.message


def test_body_with_a_duplicate_key_is_refused_naming_the_key(storage, hub_key, agent):
    """Two ``txn`` keys: JSON readers disagree on which wins, so the record is refused, not guessed."""
    good = agent.body(1)
    evil = good.replace(',"txn":', ',"txn":{"total":"0.00"},"txn":', 1)
    bad = seal(agent.key, agent.head, 1, evil)
    err = rejected(storage, hub_key, agent, agent.burst([bad], first_seq=1))
    assert (err.status, err.error.seq) == (422, 1)
    assert "'txn' appears twice" in err.error.message
    assert ledger(storage, agent) == []


def test_reported_backlog_is_kept_on_the_stream(storage, hub_key, agent):
    doc = agent.burst(agent.make(2)).model_dump()
    doc["backlog"] = {"pending": 40, "oldest_pending_age_s": 12.5}
    send(storage, hub_key, agent, BurstRequest.model_validate(doc))
    assert stream(storage, agent).backlog == {"pending": 40, "oldest_pending_age_s": 12.5}
    send(storage, hub_key, agent, agent.burst([]))  # an old agent reports none: the last report stays
    assert stream(storage, agent).backlog == {"pending": 40, "oldest_pending_age_s": 12.5}


def test_empty_burst_is_a_probe(storage, hub_key, agent):
    answer = send(storage, hub_key, agent, agent.burst([]))
    assert (answer.acked_through, answer.stored, answer.duplicates) == (0, 0, 0)
    assert answer.receipt is not None and answer.receipt.chain == chain.genesis("S1", 1).hex()
    assert answer.receipt.valid(hub_key.public_key())
    send(storage, hub_key, agent, agent.burst(agent.make(3)))
    answer = send(storage, hub_key, agent, agent.burst([], first_seq=4))
    assert answer.acked_through == 4 - 1
    err = rejected(storage, hub_key, agent, agent.burst([], first_seq=9))
    assert (err.error.error, err.error.expected_seq) == ("gap", 4)


def test_reported_clock_is_kept_on_the_stream(storage, hub_key, agent):
    clock = {"theta_ms": -1250.5, "delta_ms": 40.0, "sampled_at": "2026-11-22T09:15:00.000Z"}
    answer = send(storage, hub_key, agent, agent.burst(agent.make(1), clock=clock))
    assert answer.clock is not None and answer.clock.theta_ms == -1250.5
    st = stream(storage, agent)
    assert st.clock == clock
    assert st.last_seen_at == "2026-11-22T09:15:03.000Z"
    send(storage, hub_key, agent, agent.burst([]))
    assert stream(storage, agent).clock == clock


def test_key_of_a_superseded_epoch_is_revoked(storage, hub_key, agent):
    send(storage, hub_key, agent, agent.burst(agent.make(2)))
    new = enroll_agent(storage, "S1", hub_key)
    assert new.epoch == 2
    err = rejected(storage, hub_key, agent, agent.burst(agent.make(1)))
    assert (err.status, err.error.error) == (401, "key_revoked")
    assert len(ledger(storage, agent)) == 2
    answer = send(storage, hub_key, new, new.burst(new.make(1)))
    assert answer.acked_through == 1


def test_key_of_another_store_is_forbidden(storage, hub_key, agent):
    other = enroll_agent(storage, "S2", hub_key)
    burst = other.burst(other.make(1))
    err = rejected(storage, hub_key, agent, burst, key_id=agent.key_id)
    assert (err.status, err.error.error) == (403, "forbidden")
    err = rejected(storage, hub_key, agent, agent.burst(agent.make(1), epoch=2))
    assert (err.status, err.error.error) == (403, "forbidden")
    assert ledger(storage, other) == []


def test_unknown_key_is_unauthenticated(storage, hub_key, agent):
    err = rejected(storage, hub_key, agent, agent.burst(agent.make(1)), key_id="0123456789abcdef")
    assert (err.status, err.error.error) == (401, "unauthenticated")


def test_after_store_hooks_see_new_rows_inside_the_transaction(storage, hub_key, agent):
    seen: list[tuple[str, list[int]]] = []

    def hook(tx: UnitOfWork, writer: Writer, rows: Sequence[LedgerRow]) -> None:
        assert tx.get_stream(writer.store_id, writer.epoch) is not None
        seen.append((writer.store_id, [r.seq for r in rows]))

    recs = agent.make(4)
    send(storage, hub_key, agent, agent.burst(recs[:3]), after_store=[hook])
    send(storage, hub_key, agent, agent.burst(recs), after_store=[hook])
    assert seen == [("S1", [1, 2, 3]), ("S1", [4])]


def test_failing_hook_rolls_the_whole_burst_back(storage, hub_key, agent):
    def hook(tx: UnitOfWork, writer: Writer, rows: Sequence[LedgerRow]) -> None:
        raise RuntimeError("derivation failed")

    with pytest.raises(RuntimeError):
        send(storage, hub_key, agent, agent.burst(agent.make(3)), after_store=[hook])
    assert ledger(storage, agent) == []
    assert stream(storage, agent).acked_through == 0


def test_many_bursts_build_one_verifiable_chain(storage, hub_key, agent):
    for _ in range(5):
        send(storage, hub_key, agent, agent.burst(agent.make(40)), verify_all=True)
    rows = ledger(storage, agent)
    assert len(rows) == 200
    assert list(chain.walk(chain.genesis("S1", 1), [r.body for r in rows])) == [r.chain for r in rows]
    receipt = send(storage, hub_key, agent, agent.burst([])).receipt
    assert receipt == Receipt.issue(hub_key, "S1", 1, 200, rows[-1].chain)
