"""The real hub, started as a subprocess (``python -m cloud_hub serve``), over real HTTP."""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from sync_protocol import chain, keys
from sync_protocol.httpsig import sign_request
from sync_protocol.record import seal
from sync_protocol.wire import BURSTS_PATH, EnrollResponse, Receipt

from .helpers import Agent

READY = "cloud-hub listening on "


@dataclass
class Hub:
    url: str
    data_dir: Path
    proc: subprocess.Popen[str]

    @property
    def admin_token(self) -> str:
        return (self.data_dir / "admin.token").read_text().strip()


def cli(data_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("CLOUD_HUB_DATA", "CLOUD_HUB_ADMIN_TOKEN")}
    return subprocess.run(
        [sys.executable, "-m", "cloud_hub", *args, "--data-dir", str(data_dir)],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        check=False,
    )


def start_hub(data_dir: Path, log: Path, *extra: str) -> Hub:
    env = {k: v for k, v in os.environ.items() if k not in ("CLOUD_HUB_DATA", "CLOUD_HUB_ADMIN_TOKEN")}
    if not data_dir.exists():  # only init creates a hub
        assert cli(data_dir, "init").returncode == 0
    with log.open("w") as err:
        proc = subprocess.Popen(
            [sys.executable, "-m", "cloud_hub", "serve", "--data-dir", str(data_dir), "--port", "0", *extra],
            stdout=subprocess.PIPE,
            stderr=err,
            text=True,
            env=env,
        )
    lines: queue.Queue[str] = queue.Queue()

    def pump() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.put(line)

    threading.Thread(target=pump, daemon=True).start()
    deadline = time.monotonic() + 30
    while True:
        try:
            line = lines.get(timeout=max(0.1, deadline - time.monotonic()))
        except queue.Empty:
            stop_hub(proc)
            raise AssertionError(f"hub did not start:\n{log.read_text()}") from None
        if line.startswith(READY):
            url = line[len(READY) :].strip()
            break
    for _ in range(100):
        try:
            if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                return Hub(url, data_dir, proc)
        except httpx.TransportError:
            time.sleep(0.05)
    stop_hub(proc)
    raise AssertionError("hub never answered /healthz")


def stop_hub(proc: subprocess.Popen[str]) -> int:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)
    if proc.stdout is not None:
        proc.stdout.close()
    return proc.returncode


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Hub]:
    base = tmp_path_factory.mktemp("hub")
    running = start_hub(base / "data", base / "hub.log")
    try:
        yield running
    finally:
        stop_hub(running.proc)


@pytest.fixture(scope="module")
def client(hub: Hub) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=hub.url, timeout=30) as c:
        yield c


def enroll(hub: Hub, client: httpx.Client, store_id: str) -> tuple[Agent, EnrollResponse]:
    added = cli(hub.data_dir, "store", "add", store_id, "--tz", "Europe/Berlin", "--json")
    assert added.returncode == 0, added.stderr
    doc = json.loads(added.stdout)
    assert set(doc) == {"store_id", "tz", "token", "expires_at"}
    key = keys.generate()
    answer = client.post(
        "/v1/enroll", json={"token": doc["token"], "public_key": keys.public_hex(key), "hostname": "till-1"}
    )
    assert answer.status_code == 201, answer.text
    enrolled = EnrollResponse.model_validate(answer.json())
    return Agent(store_id, enrolled.epoch, key), enrolled


def burst_bytes(agent: Agent, count: int, first: int | None = None) -> bytes:
    first = first or len(agent.outbox) + 1
    recs = agent.make(count) if count else []
    return agent.burst(recs, first_seq=first).model_dump_json().encode()


def post_signed(
    client: httpx.Client, agent: Agent, body: bytes, *, gzipped: bool = False, tamper: bool = False
) -> httpx.Response:
    sent = gzip.compress(body) if gzipped else body
    headers = sign_request("POST", BURSTS_PATH, sent, agent.key, agent.key_id)
    if tamper:
        headers["Content-Digest"] = "sha-256=:" + "A" * 43 + "=:"
    headers["Content-Type"] = "application/json"
    if gzipped:
        headers["Content-Encoding"] = "gzip"
    return client.post(BURSTS_PATH, content=sent, headers=headers)


def error_of(response: httpx.Response) -> dict[str, Any]:
    doc = response.json()
    assert set(doc) >= {"error", "message"}
    return doc


def test_enroll_then_signed_burst_is_accepted_with_a_receipt(hub, client):
    agent, enrolled = enroll(hub, client, "S1")
    assert (enrolled.store_id, enrolled.epoch, enrolled.key_id) == ("S1", 1, agent.key_id)
    answer = post_signed(client, agent, burst_bytes(agent, 50))
    assert answer.status_code == 200, answer.text
    doc = answer.json()
    assert (doc["acked_through"], doc["stored"], doc["duplicates"]) == (50, 50, 0)
    assert doc["hub_received_at"] <= doc["hub_sent_at"]
    receipt = Receipt.model_validate(doc["receipt"])
    assert receipt.valid(keys.public_from_hex(enrolled.hub_public_key))
    assert receipt.chain == agent.head.hex()


def test_token_cannot_be_reused_over_http(hub, client):
    added = json.loads(cli(hub.data_dir, "store", "add", "S9", "--tz", "UTC", "--json").stdout)
    body = {"token": added["token"], "public_key": keys.public_hex(keys.generate())}
    assert client.post("/v1/enroll", json=body).status_code == 201
    body["public_key"] = keys.public_hex(keys.generate())
    again = client.post("/v1/enroll", json=body)
    assert again.status_code == 401 and error_of(again)["error"] == "invalid_token"


def test_gzip_burst_is_accepted(hub, client):
    agent, _ = enroll(hub, client, "S2")
    answer = post_signed(client, agent, burst_bytes(agent, 200), gzipped=True)
    assert answer.status_code == 200, answer.text
    assert answer.json()["acked_through"] == 200


def test_unsigned_burst_is_unauthenticated(hub, client):
    agent, _ = enroll(hub, client, "S3")
    answer = client.post(BURSTS_PATH, content=burst_bytes(agent, 1))
    assert answer.status_code == 401
    assert error_of(answer)["error"] == "unauthenticated"


def test_tampered_content_digest_is_unauthenticated(hub, client):
    agent, _ = enroll(hub, client, "S4")
    answer = post_signed(client, agent, burst_bytes(agent, 1), tamper=True)
    assert answer.status_code == 401
    assert "Content-Digest" in error_of(answer)["message"]


def test_body_changed_after_signing_is_unauthenticated(hub, client):
    agent, _ = enroll(hub, client, "S4b")
    body = burst_bytes(agent, 1)
    headers = sign_request("POST", BURSTS_PATH, body, agent.key, agent.key_id)
    answer = client.post(BURSTS_PATH, content=body.replace(b"S4b", b"S4c"), headers=headers)
    assert answer.status_code == 401


def test_too_many_records_is_too_large(hub, client):
    agent, _ = enroll(hub, client, "S5")
    rec = {"body": "{}", "chain": "0" * 64, "sig": "0" * 128}
    records = [{"seq": i, **rec} for i in range(1, 10_002)]
    doc = {"store_id": "S5", "epoch": 1, "first_seq": 1, "records": records, "sent_at": "2026-11-22T09:00:00Z"}
    answer = post_signed(client, agent, json.dumps(doc).encode(), gzipped=True)
    assert answer.status_code == 413
    assert error_of(answer)["error"] == "too_large"


def test_bad_json_and_bad_fields_are_bad_requests_naming_the_field(hub, client):
    agent, _ = enroll(hub, client, "S6")
    answer = post_signed(client, agent, b"{not json")
    assert answer.status_code == 400 and error_of(answer)["error"] == "bad_request"
    rec = agent.make(1)[0].wire() | {"sig": "zz"}
    doc = {"store_id": "S6", "epoch": 1, "first_seq": 1, "records": [rec], "sent_at": "x"}
    answer = post_signed(client, agent, json.dumps(doc).encode())
    assert answer.status_code == 400
    assert error_of(answer)["message"].startswith("records[0].sig:")
    answer = post_signed(client, agent, b"x" * 64, gzipped=False)
    assert answer.status_code == 400


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ('{"epoch": 1, "epoch": 2}', "body: the key 'epoch' appears twice in one object"),
        ('{"4111111111111111": 1, "4111111111111111": 2}', "body: the key '…1111' appears twice"),
        ('{"clock": {"theta_ms": NaN}}', "body is not valid JSON: NaN is not a JSON value"),
        ('{"clock": {"theta_ms": 4111111111111111e999}}', "body is not valid JSON: a number is beyond a float's range"),
        ('{"sent_at": "\\ud800"}', "body is not valid JSON: a \\u escape names half of a surrogate pair"),
        ("[1]", "body: must be a JSON object"),
    ],
)
def test_the_one_parse_of_a_burst_refuses_what_json_readers_disagree_on(hub, client, text, reason):
    """Duplicate keys, NaN, out-of-range numbers and lone surrogates are refused by the hub's only parse
    of the body (a card number is never echoed), and nothing is stored."""
    agent, _ = enroll(hub, client, "SP" + hashlib.sha256(text.encode()).hexdigest()[:8])
    answer = post_signed(client, agent, text.encode())
    assert answer.status_code == 400, answer.text
    doc = error_of(answer)
    assert doc["error"] == "bad_request" and doc["message"].startswith(reason), doc
    assert "4111111111111111" not in answer.text


def test_record_refused_and_gap_over_http(hub, client):
    agent, _ = enroll(hub, client, "S7")
    recs = agent.make(3)
    broken = seal(agent.key, chain.genesis("S7", 1), 4, agent.body(4))
    body = agent.burst([*recs, broken]).model_dump_json().encode()
    answer = post_signed(client, agent, body)
    assert answer.status_code == 422
    doc = error_of(answer)
    assert (doc["error"], doc["seq"], doc["acked_through"]) == ("record_refused", 4, 3)
    assert "receipt" in doc
    gap = post_signed(client, agent, agent.burst([], first_seq=9).model_dump_json().encode())
    assert gap.status_code == 409 and gap.json()["expected_seq"] == 4


def test_admin_endpoints_need_the_token(hub, client):
    agent, _ = enroll(hub, client, "S8")
    assert post_signed(client, agent, burst_bytes(agent, 5)).status_code == 200
    for path in ("/v1/admin/stores", "/v1/admin/stores/S8", "/v1/admin/stores/S8/ledger"):
        assert client.get(path).status_code == 401
        wrong = client.get(path, headers={"Authorization": "Bearer nope"})
        assert wrong.status_code == 401 and error_of(wrong)["error"] == "unauthenticated"
    auth = {"Authorization": f"Bearer {hub.admin_token}"}
    stores = client.get("/v1/admin/stores", headers=auth).json()["stores"]
    s8 = next(s for s in stores if s["store_id"] == "S8")
    assert (s8["epoch"], s8["acked_through"], s8["conflicts"]) == (1, 5, 0)
    detail = client.get("/v1/admin/stores/S8", headers=auth).json()
    assert detail["streams"][0]["head_chain"] == agent.head.hex()
    page = client.get("/v1/admin/stores/S8/ledger", params={"after": 2, "limit": 2}, headers=auth).json()
    assert [r["seq"] for r in page["records"]] == [3, 4]
    assert page["records"][0]["body"] == agent.outbox[2].body
    missing = client.get("/v1/admin/stores/NOPE", headers=auth)
    assert missing.status_code == 404 and error_of(missing)["error"] == "not_found"
    bad = client.get("/v1/admin/stores/S8/ledger", params={"limit": "lots"}, headers=auth)
    assert bad.status_code == 400 and "limit" in error_of(bad)["message"]


def test_stores_command_shows_progress(hub, client):
    agent, _ = enroll(hub, client, "S10")
    assert post_signed(client, agent, burst_bytes(agent, 7)).status_code == 200
    out = cli(hub.data_dir, "stores", "--json")
    assert out.returncode == 0, out.stderr
    s10 = next(s for s in json.loads(out.stdout)["stores"] if s["store_id"] == "S10")
    assert s10["acked_through"] == 7
    table = cli(hub.data_dir, "stores").stdout.splitlines()
    head = ["STORE", "TZ", "EPOCH", "ACKED_THROUGH", "LAST_SEEN", "DUPLICATES", "CONFLICTS", "AGENT"]
    assert table[0].split() == head
    assert any(line.split()[:4] == ["S10", "Europe/Berlin", "1", "7"] and line.split()[-1] == "ok" for line in table)


def test_health_readiness_and_unknown_routes(hub, client):
    assert client.get("/healthz").json() == {"status": "ok"}
    ready = client.get("/readyz")
    assert ready.status_code == 200 and ready.json()["status"] == "ready"
    missing = client.get("/v1/nothing")
    assert missing.status_code == 404 and error_of(missing)["error"] == "not_found"


def test_cli_bad_input_is_one_line_and_exit_2(tmp_path):
    out = cli(tmp_path / "d", "store", "add", "bad id", "--tz", "UTC")
    assert out.returncode == 2
    assert out.stderr.strip().count("\n") == 0 and "store_id" in out.stderr
    out = cli(tmp_path / "d", "store", "add", "S1", "--tz", "Nowhere/Land")
    assert out.returncode == 2 and "tz" in out.stderr
    assert not (tmp_path / "d").exists()


def test_cli_store_add_plain_output_and_file_modes(tmp_path):
    data = tmp_path / "d"
    assert cli(data, "init").returncode == 0
    out = cli(data, "store", "add", "S1", "--tz", "Europe/Berlin", "--hub-url", "https://hub.example.com/")
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    token = lines[2]
    assert len(token) >= 40 and " " not in token
    assert (
        f"edge-agent enroll --data-dir /var/lib/storesync-agent --hub https://hub.example.com --token {token}"
        in out.stdout
    )
    assert (data.stat().st_mode & 0o777) == 0o700
    assert (data / "hub.key").stat().st_mode & 0o777 == 0o600
    assert (data / "admin.token").stat().st_mode & 0o777 == 0o600


def test_sigterm_stops_the_hub_cleanly(tmp_path):
    running = start_hub(tmp_path / "d", tmp_path / "hub.log", "--verify", "all")
    assert stop_hub(running.proc) == 0
    assert "Traceback" not in (tmp_path / "hub.log").read_text()
