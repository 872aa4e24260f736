"""The sync state machine in-process: a real outbox and Syncer, the hub played by ``httpx.MockTransport``.

The mock hub checks what it receives the way the real one does (seq order, chain links and the
agent's signatures, with ``verify_run``), keeps the bodies, and answers with real signed receipts; a
script of canned answers (413, 409 gap, 422 with a receipt, 503 with ``Retry-After``, a lying
receipt, a dead network) comes first. The process tests in ``test_sync.py`` run the same paths
against a real ``cloud-hub serve``; these run in milliseconds and reach the corners.
"""

from __future__ import annotations

import gzip
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest

from edge_agent.config import AgentConfig
from edge_agent.store import Outbox
from edge_agent.sync import Syncer
from sync_protocol import chain, keys, parse_transaction
from sync_protocol.record import SignedRecord, verify_run
from sync_protocol.wire import BURSTS_PATH, BurstResponse, ErrorBody, Receipt

from .conftest import init_data_dir, make_txn, write_identity

HUB_URL = "http://hub.test"
Answer = Callable[[dict[str, object]], httpx.Response | None]


@dataclass
class MockHub:
    """Stores verified records of one writer and answers bursts as the hub does (DESIGN §5-§7)."""

    hub_key: keys.Ed25519PrivateKey
    agent_key: keys.Ed25519PublicKey
    store_id: str = "S1"
    epoch: int = 1
    bodies: dict[int, str] = field(default_factory=dict)
    chains: dict[int, bytes] = field(default_factory=dict)
    script: list[Answer] = field(default_factory=list)
    bursts: list[dict[str, object]] = field(default_factory=list)
    lie_about_chain: bool = False

    def __call__(self, request: httpx.Request) -> httpx.Response:
        if request.url.path == "/healthz":
            return httpx.Response(200, json={"ok": True})
        assert request.url.path == BURSTS_PATH and request.headers.get("signature")
        raw = request.content
        if request.headers.get("content-encoding") == "gzip":
            raw = gzip.decompress(raw)
        doc = json.loads(raw)
        self.bursts.append(doc)
        if self.script:
            answer = self.script.pop(0)(doc)
            if answer is not None:
                return answer
        return self.store(doc)

    @property
    def acked(self) -> int:
        return max(self.bodies, default=0)

    def receipt(self, through: int) -> Receipt:
        value = self.chains.get(through, chain.genesis(self.store_id, self.epoch))
        if self.lie_about_chain:
            value = bytes(32)
        return Receipt.issue(self.hub_key, self.store_id, self.epoch, through, value)

    def store(self, doc: dict[str, object]) -> httpx.Response:
        records = doc["records"]
        assert isinstance(records, list)
        first = int(str(doc["first_seq"]))
        if first > self.acked + 1:
            return self.error(409, "gap", expected_seq=self.acked + 1)
        new = [r for r in records if int(r["seq"]) > self.acked]
        prev = self.chains.get(self.acked, chain.genesis(self.store_id, self.epoch))
        recs = [SignedRecord(r["seq"], r["body"], bytes.fromhex(r["chain"]), bytes.fromhex(r["sig"])) for r in new]
        for rec in verify_run(recs, prev_chain=prev, first_seq=self.acked + 1, public_key=self.agent_key):
            self.bodies[rec.seq], self.chains[rec.seq] = rec.body, rec.chain
        now = datetime.now(UTC).isoformat(timespec="milliseconds")
        answer = BurstResponse(
            acked_through=self.acked,
            stored=len(new),
            duplicates=len(records) - len(new),
            hub_received_at=now,
            hub_sent_at=now,
            receipt=self.receipt(self.acked) if self.acked else None,
        )
        return httpx.Response(200, content=answer.model_dump_json())

    def error(self, status: int, code: str, headers: dict[str, str] | None = None, **extra: object) -> httpx.Response:
        body = ErrorBody.model_validate({"error": code, "message": f"mock hub says {code}", **extra})
        return httpx.Response(status, content=body.model_dump_json(exclude_none=True), headers=headers)

    def txn_ids(self) -> list[str]:
        return [json.loads(self.bodies[s])["txn"]["txn_id"] for s in sorted(self.bodies)]


@pytest.fixture
def rig(tmp_path: Path) -> Iterator[tuple[Outbox, MockHub, Callable[..., Syncer]]]:
    data = tmp_path / "agent"
    key = init_data_dir(data)
    hub_key = write_identity(data, key, hub_url=HUB_URL)
    hub = MockHub(hub_key, key.public_key())
    config = AgentConfig.load(
        data, burst_records=8, backoff_base=1.0, backoff_cap=60.0, blocked_retry=300.0, insecure_http=True
    )  # the mock hub is http://hub.test, not loopback
    outbox = Outbox(config.db_path, key=key)
    made: list[Syncer] = []

    def syncer(**kw: object) -> Syncer:
        s = Syncer(config, Outbox(config.db_path, key=key, durable=False), key, rng=lambda: 0.5,
                   transport=httpx.MockTransport(hub), **kw)  # type: ignore[arg-type]  # fmt: skip
        made.append(s)
        return s

    try:
        yield outbox, hub, syncer
    finally:
        for s in made:
            s.close()
            s.outbox.close()
        outbox.close()


def capture(outbox: Outbox, n: int, start: int = 1) -> list[str]:
    ids = []
    for i in range(start, start + n):
        txn = parse_transaction(make_txn(i))
        outbox.capture(txn)
        ids.append(txn.txn_id)
    return ids


def test_bursts_carry_every_record_and_receipts_move_acked_through(rig) -> None:
    outbox, hub, syncer = rig
    ids = capture(outbox, 20)
    result = syncer().run_pass()
    assert (result.result, result.sent, result.acked_through, result.pending) == ("ok", 20, 20, 0)
    assert hub.txn_ids() == ids  # what was captured is what the hub holds, in order
    assert [len(b["records"]) for b in hub.bursts] == [8, 8, 4]  # type: ignore[arg-type]
    state = outbox.sync_state()
    assert state["acked_through"] == 20 and state["last_sync_result"] == "ok"
    assert Receipt.model_validate(state["receipt"]).valid(hub.hub_key.public_key())


def test_413_halves_the_burst_then_a_full_burst_doubles_it_again(rig) -> None:
    outbox, hub, syncer = rig
    ids = capture(outbox, 12)
    hub.script.append(lambda doc: hub.error(413, "too_large"))
    s = syncer()
    result = s.run_pass()
    assert (result.result, result.acked_through) == ("ok", 12)
    assert [len(b["records"]) for b in hub.bursts] == [8, 4, 8]  # type: ignore[arg-type]
    assert s.burst_size == 8 and outbox.sync_state()["burst_size"] == 8
    assert hub.txn_ids() == ids


def test_gap_rewinds_to_what_the_hub_lost_and_resends_it(rig) -> None:
    outbox, hub, syncer = rig
    ids = capture(outbox, 6)
    assert syncer().run_pass().acked_through == 6
    for seq in (4, 5, 6):  # the hub was restored from a backup that ends at seq 3
        del hub.bodies[seq], hub.chains[seq]
    ids += capture(outbox, 2, start=7)
    result = syncer().run_pass()
    assert (result.result, result.acked_through) == ("ok", 8)
    assert hub.txn_ids() == ids
    assert int(hub.bursts[-2]["first_seq"]) == 7 and int(hub.bursts[-1]["first_seq"]) == 4  # type: ignore[arg-type]


def test_422_keeps_the_good_records_by_its_receipt_and_blocks(rig) -> None:
    outbox, hub, syncer = rig
    capture(outbox, 5)

    def refuse_seq_4(doc: dict[str, object]) -> httpx.Response:
        ok = hub.store({**doc, "records": doc["records"][:3]})  # type: ignore[index]
        assert ok.status_code == 200
        return hub.error(422, "record_refused", seq=4, receipt=json.loads(hub.receipt(3).model_dump_json()))

    hub.script.append(refuse_seq_4)
    result = syncer().run_pass()
    assert (result.result, result.acked_through, result.pending) == ("blocked", 3, 2)
    state = outbox.sync_state()
    assert state["blocked"]["code"] == "record_refused" and state["blocked"]["seq"] == 4
    assert state["blocked"]["http_status"] == 422
    assert result.retry_in == 300.0


def test_503_with_retry_after_waits_exactly_that_long(rig) -> None:
    outbox, hub, syncer = rig
    capture(outbox, 3)
    hub.script.append(lambda doc: hub.error(503, "busy", headers={"Retry-After": "7"}))
    s = syncer()
    result = s.run_pass()
    assert (result.result, result.retry_in, result.acked_through) == ("offline", 7.0, 0)
    assert s.run_pass().result == "waiting"  # the backoff holds without force
    assert s.probe_tick() is None  # and a Retry-After is never cut short by the probe
    forced = s.run_pass(force=True)
    assert (forced.result, forced.acked_through) == ("ok", 3)


def test_network_errors_back_off_exponentially_with_jitter(rig) -> None:
    outbox, hub, syncer = rig
    capture(outbox, 2)

    def down(doc: dict[str, object]) -> httpx.Response:
        raise httpx.ConnectError("connection refused")

    hub.script.extend([down, down, down])
    s = syncer()
    delays = []
    for _ in range(3):
        result = s.run_pass(force=True)
        assert result.result == "offline"
        delays.append(result.retry_in)
    assert delays == [0.5, 1.0, 2.0]  # rng 0.5 x base 1 s x 2^(failures-1)
    assert outbox.sync_state()["failures"] == 3
    assert s.run_pass(force=True).acked_through == 2
    assert outbox.sync_state()["failures"] == 0


def test_a_receipt_with_another_chain_blocks_and_moves_nothing(rig) -> None:
    outbox, hub, syncer = rig
    capture(outbox, 4)
    hub.lie_about_chain = True
    result = syncer().run_pass()
    assert (result.result, result.acked_through) == ("blocked", 0)
    assert outbox.sync_state()["blocked"]["code"] == "bad_receipt"


def test_a_clock_stepped_back_does_not_stall_the_backoff(rig, monkeypatch: pytest.MonkeyPatch) -> None:
    """A backoff this process set is timed on the monotonic clock; one inherited from before a restart
    (wall-clock ``next_attempt_at``) is capped at the longest delay the agent ever sets."""
    import time as time_module
    from datetime import timedelta

    outbox, hub, syncer = rig
    capture(outbox, 3)
    # Inherited: "next attempt in 5 hours" (the clock was 5 hours ahead when it was written).
    outbox.update_sync(next_attempt_at=(datetime.now(UTC) + timedelta(hours=5)).isoformat(), last_sync_result="offline")
    s = syncer()
    waiting = s.run_pass()
    assert waiting.result == "waiting" and waiting.retry_in is not None
    assert waiting.retry_in <= 300.0  # max(backoff_cap 60, blocked_retry 300), not 18,000 s
    # Set by this process: monotonic. Moving the wall clock does not change when it is due.
    s2 = syncer()
    s2._due_mono = time_module.monotonic() + 30.0
    outbox.update_sync(next_attempt_at=(datetime.now(UTC) + timedelta(hours=5)).isoformat())
    assert 0 < (s2.run_pass().retry_in or 0) <= 30.0
    s2._due_mono = time_module.monotonic() - 0.001  # due now, whatever next_attempt_at says
    done = s2.run_pass()
    assert done.result == "ok" and hub.acked == 3, done
