"""Stores, enrollment tokens and epochs (protocol.md §4)."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from cloud_hub import registry
from cloud_hub._exceptions import InputError, InvalidToken
from sync_protocol import chain, keys
from sync_protocol.wire import EnrollRequest

from .helpers import NOW


def request(token: str, key: keys.Ed25519PrivateKey | None = None) -> EnrollRequest:
    return EnrollRequest(token=token, public_key=keys.public_hex(key or keys.generate()), hostname="till-1")


@pytest.mark.parametrize("store_id", ["", "S 1", "S/1", "x" * 65, "Ä1"])
def test_store_id_must_match_the_pattern(storage, store_id):
    with pytest.raises(InputError) as info:
        registry.add_store(storage, store_id, "UTC")
    assert info.value.field == "store_id"


@pytest.mark.parametrize("tz", ["", "Mars/Olympus", "Europe/Berlin ", "../etc/passwd"])
def test_tz_must_be_an_iana_zone(storage, tz):
    with pytest.raises(InputError) as info:
        registry.add_store(storage, "S1", tz)
    assert info.value.field == "tz"


def test_only_the_token_hash_is_stored(storage):
    issued = registry.add_store(storage, "S1", "Europe/Berlin", now=NOW)
    assert issued.new_store and issued.expires_at == "2026-11-29T09:15:03.000Z"
    with storage.snapshot() as tx:
        tok = tx.get_token(registry.token_hash(issued.token))
    assert tok is not None and tok.store_id == "S1"
    files = [Path(storage.path), Path(storage.path + "-wal")]
    raw = b"".join(f.read_bytes() for f in files if f.exists())
    assert registry.token_hash(issued.token) in raw
    assert issued.token.encode() not in raw


def test_enroll_opens_epoch_1_and_returns_the_hub_key(storage, hub_key):
    issued = registry.add_store(storage, "S1", "Europe/Berlin", now=NOW)
    key = keys.generate()
    answer = registry.enroll(storage, request(issued.token, key), hub_key=hub_key, now=NOW)
    assert (answer.store_id, answer.epoch, answer.tz) == ("S1", 1, "Europe/Berlin")
    assert answer.key_id == keys.key_id(key)
    assert answer.hub_public_key == keys.public_hex(hub_key)
    assert answer.hub_key_id == keys.key_id(hub_key)
    with storage.snapshot() as tx:
        st = tx.get_stream("S1", 1)
        writer = tx.writer_by_key(answer.key_id)
    assert st is not None and st.acked_through == 0 and st.head_chain == chain.genesis("S1", 1)
    assert writer is not None and writer.hostname == "till-1" and writer.superseded_at is None


def test_token_is_single_use(storage, hub_key):
    issued = registry.add_store(storage, "S1", "UTC", now=NOW)
    registry.enroll(storage, request(issued.token), hub_key=hub_key, now=NOW)
    with pytest.raises(InvalidToken):
        registry.enroll(storage, request(issued.token), hub_key=hub_key, now=NOW)


def test_token_expires_after_seven_days(storage, hub_key):
    issued = registry.add_store(storage, "S1", "UTC", now=NOW)
    with pytest.raises(InvalidToken):
        registry.enroll(storage, request(issued.token), hub_key=hub_key, now=NOW + timedelta(days=7, seconds=1))
    answer = registry.enroll(storage, request(issued.token), hub_key=hub_key, now=NOW + timedelta(days=6))
    assert answer.epoch == 1


def test_unknown_token_is_refused(storage, hub_key):
    registry.add_store(storage, "S1", "UTC", now=NOW)
    with pytest.raises(InvalidToken):
        registry.enroll(storage, request("x" * 43), hub_key=hub_key, now=NOW)


def test_reenrollment_opens_the_next_epoch_and_supersedes_the_old_key(storage, hub_key):
    first = registry.enroll(storage, request(registry.add_store(storage, "S1", "UTC").token), hub_key=hub_key)
    again = registry.add_store(storage, "S1", "UTC")
    assert not again.new_store
    second = registry.enroll(storage, request(again.token), hub_key=hub_key)
    assert (first.epoch, second.epoch) == (1, 2)
    with storage.snapshot() as tx:
        old = tx.writer_by_key(first.key_id)
        new = tx.writer_by_key(second.key_id)
    assert old is not None and old.superseded_at is not None
    assert new is not None and new.superseded_at is None


def test_existing_store_keeps_its_zone(storage):
    registry.add_store(storage, "S1", "Europe/Berlin")
    with pytest.raises(InputError) as info:
        registry.add_store(storage, "S1", "Europe/Paris")
    assert info.value.field == "tz"


def test_a_key_cannot_be_enrolled_twice_and_the_token_survives(storage, hub_key):
    key = keys.generate()
    registry.enroll(storage, request(registry.add_store(storage, "S1", "UTC").token, key), hub_key=hub_key)
    issued = registry.add_store(storage, "S2", "UTC")
    with pytest.raises(InputError) as info:
        registry.enroll(storage, request(issued.token, key), hub_key=hub_key)
    assert info.value.field == "public_key"
    answer = registry.enroll(storage, request(issued.token), hub_key=hub_key)
    assert (answer.store_id, answer.epoch) == ("S2", 1)


def test_list_stores_shows_the_newest_epoch(storage, hub_key):
    registry.add_store(storage, "S2", "UTC")
    registry.enroll(storage, request(registry.add_store(storage, "S1", "UTC").token), hub_key=hub_key)
    registry.enroll(storage, request(registry.add_store(storage, "S1", "UTC").token), hub_key=hub_key)
    summaries = registry.list_stores(storage)
    assert [(s.store_id, s.epoch, s.acked_through) for s in summaries] == [("S1", 2, 0), ("S2", None, 0)]


def test_tokens_never_look_like_a_command_line_option(storage):
    """A token starting with "-" would be read by argparse as an option in `edge-agent enroll --token`."""
    for i in range(200):
        issued = registry.add_store(storage, f"T{i}", "Europe/Berlin", now=NOW)
        assert issued.token.startswith("sse_")
