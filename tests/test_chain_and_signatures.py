"""Record chain, Ed25519 signatures, receipts and HTTP message signatures."""

from __future__ import annotations

import hashlib
import os
import stat
from pathlib import Path

import pytest

from sync_protocol import chain, httpsig, keys
from sync_protocol._exceptions import AuthError, BadSignature, ChainBroken, KeyFileError, RecordInvalid
from sync_protocol.clock import better, estimate
from sync_protocol.record import SignedRecord, check_body, make_body, seal, verify_run
from sync_protocol.wire import BurstRequest, Receipt


def build(n: int, key: keys.Ed25519PrivateKey, store: str = "S1", epoch: int = 1) -> list[SignedRecord]:
    prev = chain.genesis(store, epoch)
    out = []
    for seq in range(1, n + 1):
        body = make_body(
            store_id=store,
            epoch=epoch,
            seq=seq,
            kind="sale",
            captured_at="2026-11-22T10:00:00.000+01:00",
            txn={"txn_id": f"T{seq}"},
        )
        rec = seal(key, prev, seq, body)
        out.append(rec)
        prev = rec.chain
    return out


def test_genesis_and_link_follow_the_design() -> None:
    assert chain.genesis("S1", 1) == hashlib.sha256(b"storesync/v1/S1/1").digest()
    prev = chain.genesis("S1", 1)
    expected = hashlib.sha256(prev + hashlib.sha256(b'{"a":1}').digest()).digest()
    assert chain.link(prev, '{"a":1}') == expected


def test_key_id_is_sha256_prefix() -> None:
    key = keys.generate()
    assert keys.key_id(key) == hashlib.sha256(keys.raw_public(key)).hexdigest()[:16]


def test_valid_run_verifies() -> None:
    key = keys.generate()
    recs = build(5, key)
    out = list(verify_run(recs, prev_chain=chain.genesis("S1", 1), first_seq=1, public_key=key.public_key()))
    assert [r.seq for r in out] == [1, 2, 3, 4, 5]


@pytest.mark.parametrize("verify_all", [True, False])
def test_edited_body_is_caught_with_its_seq(verify_all: bool) -> None:
    key = keys.generate()
    recs = build(5, key)
    recs[2] = SignedRecord(3, recs[2].body.replace("T3", "T9"), recs[2].chain, recs[2].sig)
    kept: list[int] = []
    with pytest.raises(ChainBroken) as info:
        for r in verify_run(
            recs,
            prev_chain=chain.genesis("S1", 1),
            first_seq=1,
            public_key=key.public_key(),
            verify_all=verify_all,
        ):
            kept.append(r.seq)
    assert info.value.seq == 3
    assert kept == ([1, 2] if verify_all else [])


def test_deleted_and_reordered_records_are_caught() -> None:
    key = keys.generate()
    recs = build(4, key)
    with pytest.raises(RecordInvalid, match="expected seq 2"):
        list(
            verify_run(
                [recs[0], recs[2]],
                prev_chain=chain.genesis("S1", 1),
                first_seq=1,
                public_key=key.public_key(),
            )
        )
    swapped = [recs[0], SignedRecord(2, recs[2].body, recs[2].chain, recs[2].sig)]
    with pytest.raises(ChainBroken):
        list(verify_run(swapped, prev_chain=chain.genesis("S1", 1), first_seq=1, public_key=key.public_key()))


def test_recomputed_chain_with_foreign_key_fails_signature() -> None:
    key, forger = keys.generate(), keys.generate()
    recs = build(3, forger)
    with pytest.raises(BadSignature) as info:
        list(
            verify_run(
                recs,
                prev_chain=chain.genesis("S1", 1),
                first_seq=1,
                public_key=key.public_key(),
                verify_all=False,
            )
        )
    assert info.value.seq == 3


def test_body_must_name_its_writer_and_seq() -> None:
    body = make_body(store_id="S1", epoch=1, seq=7, kind="sale", captured_at="x", txn={})
    assert check_body(body, store_id="S1", epoch=1, seq=7)["seq"] == 7
    with pytest.raises(RecordInvalid, match="body seq is 7, expected 8"):
        check_body(body, store_id="S1", epoch=1, seq=8)


def test_private_key_file_mode_and_refusal(tmp_path: Path) -> None:
    path = tmp_path / "agent.key"
    key = keys.generate()
    keys.save_private_key(key, path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert keys.key_id(keys.load_private_key(path)) == keys.key_id(key)
    with pytest.raises(KeyFileError, match="refusing to overwrite"):
        keys.save_private_key(keys.generate(), path)
    os.chmod(path, 0o644)
    with pytest.raises(KeyFileError, match="chmod 600"):
        keys.load_private_key(path)


def test_receipt_signs_the_head() -> None:
    hub = keys.generate()
    r = Receipt.issue(hub, "S1", 1, 42, b"\x01" * 32)
    assert r.valid(hub.public_key())
    forged = r.model_copy(update={"acked_through": 43})
    assert not forged.valid(hub.public_key())


def test_http_signature_round_trip_and_tamper() -> None:
    key = keys.generate()
    kid = keys.key_id(key)
    body = b'{"hello":"world"}'
    headers = {k.lower(): v for k, v in httpsig.sign_request("POST", "/v1/bursts", body, key, kid, 1700000000).items()}
    lookup = {kid: key.public_key()}.get
    v = httpsig.verify_request("POST", "/v1/bursts", headers, body, lookup)
    assert (v.keyid, v.created) == (kid, 1700000000)
    with pytest.raises(AuthError, match="Content-Digest"):
        httpsig.verify_request("POST", "/v1/bursts", headers, body + b" ", lookup)
    with pytest.raises(AuthError, match="does not verify"):
        httpsig.verify_request("POST", "/v1/other", headers, body, lookup)
    with pytest.raises(AuthError, match="unknown key"):
        httpsig.verify_request("POST", "/v1/bursts", headers, body, {}.get)
    with pytest.raises(AuthError, match="not signed"):
        httpsig.verify_request("POST", "/v1/bursts", {}, body, lookup)


def test_burst_records_must_be_consecutive() -> None:
    key = keys.generate()
    recs = [r.wire() for r in build(3, key)]
    BurstRequest(store_id="S1", epoch=1, first_seq=1, records=recs, sent_at="2026-11-22T10:00:00.000+00:00")
    with pytest.raises(ValueError, match=r"records\[1\].seq is 3, expected 2"):
        BurstRequest(store_id="S1", epoch=1, first_seq=1, records=[recs[0], recs[2]], sent_at="x")


def test_clock_estimate_ntp() -> None:
    from datetime import UTC, datetime, timedelta

    t1 = datetime(2026, 1, 1, tzinfo=UTC)
    # Agent clock 3 h fast: hub times are 3 h behind agent times; 100 ms each way, 10 ms on the hub.
    offset = timedelta(hours=-3)
    t2 = t1 + timedelta(milliseconds=100) + offset
    t3 = t2 + timedelta(milliseconds=10)
    t4 = t1 + timedelta(milliseconds=210)
    s = estimate(t1, t2, t3, t4)
    assert s.theta_ms == pytest.approx(-3 * 3600 * 1000)
    assert s.delta_ms == pytest.approx(200)
    worse = estimate(t1, t2, t3, t4 + timedelta(seconds=1))
    assert better(s, worse) is s


def test_body_writer_makes_make_body_bytes_and_body_txn_text_finds_the_txn() -> None:
    from sync_protocol.canonical import canonical_dumps
    from sync_protocol.record import BodyWriter, body_txn_text

    txn = {"txn_id": 'T"1', "register_id": "Kasse ü", "total": "12.50", "lines": [{"sku": 'a,"txn":b'}]}
    writer = BodyWriter('Laden "Süd"', 3)
    for seq, origin in ((1, "api"), (2, "file:é.jsonl"), (3, "cli")):
        body = writer.body(seq=seq, kind="sale", captured_at="2026-05-21T09:00:00.000+02:00", origin=origin,
                           txn_json=canonical_dumps(txn))  # fmt: skip
        assert body == make_body(
            store_id='Laden "Süd"', epoch=3, seq=seq, kind="sale", captured_at="2026-05-21T09:00:00.000+02:00",
            txn=txn, origin=origin,
        )  # fmt: skip
        assert body_txn_text(body) == canonical_dumps(txn)
    assert body_txn_text('{"txn":{}}') is None
