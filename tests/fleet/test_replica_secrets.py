"""Replicas share the receipt key and the admin token from files or env, and sign identical receipts."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from cryptography.hazmat.primitives import serialization

from storesync_harness.processes import Hub, hub_cli
from storesync_harness.simstore import SimStore
from sync_protocol import keys
from sync_protocol.wire import BURSTS_PATH, BurstResponse

TOKEN = "fleet-admin-token-0123456789abcdef"


def _seed_hex(key: keys.Ed25519PrivateKey) -> str:
    raw = key.private_bytes(serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption())
    return raw.hex()


@pytest.fixture
def shared(tmp_path: Path) -> tuple[keys.Ed25519PrivateKey, Path, Path]:
    key = keys.generate()
    key_file = tmp_path / "secrets" / "hub.key"
    keys.save_private_key(key, key_file)
    token_file = tmp_path / "secrets" / "admin.token"
    fd = os.open(token_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(TOKEN + "\n")
    return key, key_file, token_file


@pytest.fixture
def two_hubs(tmp_path: Path, shared: tuple[keys.Ed25519PrivateKey, Path, Path]) -> Iterator[tuple[Hub, Hub]]:
    key, key_file, token_file = shared
    # Replica A reads both secrets from files given on the command line.
    a = Hub.create(tmp_path / "a", None, "--hub-key-file", str(key_file), "--admin-token-file", str(token_file))
    # Replica B gets them from the environment: the key as a hex seed, the token only as its SHA-256.
    b = Hub.create(tmp_path / "b")
    b.env = {
        "CLOUD_HUB_KEY": _seed_hex(key),
        "CLOUD_HUB_ADMIN_TOKEN_SHA256": hashlib.sha256(TOKEN.encode()).hexdigest(),
    }
    a.start()
    try:
        b.start()
        try:
            yield a, b
        finally:
            b.stop()
    finally:
        a.stop()


def _token(hub: Hub, store_id: str) -> str:
    res = hub_cli("store", "add", store_id, "--tz", "Europe/Berlin", "--data-dir", str(hub.data_dir), "--json")
    return str(json.loads(res.stdout)["token"])


def test_two_replicas_sign_byte_identical_receipts(two_hubs: tuple[Hub, Hub], shared: tuple) -> None:
    a, b = two_hubs
    hub_key = shared[0]
    store = SimStore("S7")
    store.enroll(a.url, _token(a, "S7"))
    first_hub_key = store.hub_public_key
    store.enroll(b.url, _token(b, "S7"))  # same store key, enrolled at B too (own database, epoch 1 as well)
    assert store.hub_public_key == first_hub_key == keys.public_hex(hub_key)
    store.seal(30)
    burst = store.prepare(1, 30)
    answers = []
    for hub in (a, b, a):  # the third send is a duplicate: the same receipt again
        r = httpx.post(hub.url + BURSTS_PATH, content=burst.content, headers=burst.headers, timeout=30)
        assert r.status_code == 200, r.text
        store.check_answer(r.content, 30)
        answers.append(BurstResponse.model_validate_json(r.content))
    sigs = {ans.receipt.sig for ans in answers if ans.receipt is not None}
    assert len(sigs) == 1, sigs
    assert answers[0].receipt == answers[1].receipt == answers[2].receipt
    assert answers[2].duplicates == 30


def test_both_replicas_accept_the_shared_admin_token(two_hubs: tuple[Hub, Hub]) -> None:
    for hub in two_hubs:
        ok = httpx.get(hub.url + "/v1/admin/stores", headers={"Authorization": f"Bearer {TOKEN}"}, timeout=10)
        assert ok.status_code == 200, ok.text
        bad = httpx.get(hub.url + "/v1/admin/stores", headers={"Authorization": f"Bearer {TOKEN}x"}, timeout=10)
        assert bad.status_code == 401
        log = hub.log_path.read_text()
        assert TOKEN not in log and hashlib.sha256(TOKEN.encode()).hexdigest() not in log


def _serve(tmp_path: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("CLOUD_HUB_")}
    if not (tmp_path / "d").exists():
        init = [sys.executable, "-m", "cloud_hub", "init", "--data-dir", str(tmp_path / "d")]
        subprocess.run(init, capture_output=True, timeout=60, env=clean, check=True)
    return subprocess.run(
        [sys.executable, "-m", "cloud_hub", "serve", "--data-dir", str(tmp_path / "d"), "--port", "0", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={**clean, **(env or {})},
    )


def test_bad_shared_secrets_are_refused_by_name(tmp_path: Path, shared: tuple) -> None:
    _, key_file, token_file = shared
    key_file.chmod(0o644)
    res = _serve(tmp_path, "--hub-key-file", str(key_file))
    assert res.returncode == 2 and f"hub key file {key_file}" in res.stderr and "chmod 600" in res.stderr
    assert "Traceback" not in res.stderr
    res = _serve(tmp_path, env={"CLOUD_HUB_ADMIN_TOKEN_SHA256": "not-a-digest"})
    assert res.returncode == 2 and "CLOUD_HUB_ADMIN_TOKEN_SHA256 must be a SHA-256 hex digest" in res.stderr
    res = _serve(tmp_path, env={"CLOUD_HUB_KEY": "garbage"})
    assert res.returncode == 2 and "CLOUD_HUB_KEY must be a PEM private key" in res.stderr
    assert "garbage" not in res.stderr
    res = _serve(tmp_path, env={"CLOUD_HUB_ADMIN_TOKEN_FILE": str(tmp_path / "missing.token")})
    assert res.returncode == 2 and "admin token file" in res.stderr and "does not exist" in res.stderr


def test_replicas_on_one_postgresql_answer_a_burst_with_the_same_receipt(tmp_path: Path, postgres_url: str) -> None:
    """Two replicas on one PostgreSQL schema: a burst stored through A, resent to B, gets A's receipt byte for byte."""
    from storesync_harness.replicas import ReplicaSet

    with ReplicaSet(tmp_path, 2, database=postgres_url) as replicas:
        replicas.start()
        a, b = replicas.hubs
        store = SimStore("S8")
        store.enroll(a.url, replicas.add_store("S8"))
        store.seal(25)
        burst = store.prepare(1, 25)
        first = httpx.post(a.url + BURSTS_PATH, content=burst.content, headers=burst.headers, timeout=30)
        again = httpx.post(b.url + BURSTS_PATH, content=burst.content, headers=burst.headers, timeout=30)
        assert first.status_code == again.status_code == 200, (first.text, again.text)
        ra, rb = (store.check_answer(r.content, 25) for r in (first, again))
        assert ra.sig == rb.sig and ra == rb
        assert BurstResponse.model_validate_json(again.content).duplicates == 25
        assert store.hub_public_key == keys.public_hex(keys.load_private_key(replicas.key_file))
