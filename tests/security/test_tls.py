"""TLS between agent and hub with a throw-away CA (trustme): verification, a CA file, renewal, no plain http."""

from __future__ import annotations

import json
import os
import queue
import signal
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import trustme

from agent.conftest import make_txn, run_cli
from storesync_harness.processes import Agent, hub_cli

READY = "cloud-hub listening on "


@dataclass
class TlsHub:
    url: str
    port: int
    data_dir: Path
    proc: subprocess.Popen[str]
    ca: trustme.CA
    ca_file: Path
    cert_file: Path
    key_file: Path

    def client(self) -> httpx.Client:
        return httpx.Client(base_url=self.url, verify=ssl.create_default_context(cafile=str(self.ca_file)), timeout=10)

    def issue(self) -> None:
        """Write a renewed certificate (new key, new serial) over the served files."""
        cert = self.ca.issue_cert("127.0.0.1", "localhost")
        tmp_c, tmp_k = self.cert_file.with_name("new-cert.pem"), self.key_file.with_name("new-key.pem")
        cert.private_key_pem.write_to_path(str(tmp_k))
        with open(tmp_c, "wb") as f:
            for blob in cert.cert_chain_pems:
                f.write(blob.bytes())
        os.replace(tmp_k, self.key_file)
        os.replace(tmp_c, self.cert_file)


@pytest.fixture
def tls_hub(tmp_path: Path) -> Iterator[TlsHub]:
    ca = trustme.CA()
    ca_file, cert_file, key_file = tmp_path / "ca.pem", tmp_path / "hub.crt", tmp_path / "hub.key"
    ca.cert_pem.write_to_path(str(ca_file))
    data = tmp_path / "hub"
    hub = TlsHub("", 0, data, None, ca, ca_file, cert_file, key_file)  # type: ignore[arg-type]
    hub.issue()
    hub_cli("init", "--data-dir", str(data))  # only init creates a hub
    argv = [sys.executable, "-m", "cloud_hub", "serve", "--data-dir", str(data), "--port", "0"]
    argv += ["--tls-cert", str(cert_file), "--tls-key", str(key_file), "--tls-reload-interval", "0.2"]
    log = (tmp_path / "hub.log").open("w")
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=log, text=True)
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(target=lambda: [lines.put(x) for x in proc.stdout or ()], daemon=True).start()
    try:
        line = lines.get(timeout=30)
        assert line.startswith(READY + "https://"), line
        hub.url = line[len(READY) :].strip()
        hub.port = int(hub.url.rsplit(":", 1)[1])
        hub.proc = proc
        with hub.client() as c:
            for _ in range(100):
                try:
                    if c.get("/healthz").status_code == 200:
                        break
                except httpx.TransportError:
                    time.sleep(0.05)
        yield hub
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
        if proc.stdout is not None:
            proc.stdout.close()
        log.close()


def add_store(hub: TlsHub, store_id: str) -> str:
    res = hub_cli("store", "add", store_id, "--tz", "UTC", "--data-dir", str(hub.data_dir), "--json")
    return str(json.loads(res.stdout)["token"])


def test_agent_verifies_the_hub_certificate_and_syncs_over_tls(tls_hub: TlsHub, tmp_path: Path) -> None:
    data = tmp_path / "agent"
    assert run_cli("init", "--data-dir", str(data)).returncode == 0
    token = add_store(tls_hub, "T1")
    untrusted = run_cli("enroll", "--data-dir", str(data), "--hub", tls_hub.url, "--token", token)
    assert untrusted.returncode == 3, untrusted.stdout  # 3: the hub could not be reached (README, Exit codes)
    assert "CERTIFICATE_VERIFY_FAILED" in untrusted.stderr and len(untrusted.stderr.strip().splitlines()) == 1
    trusted = run_cli(
        "enroll", "--data-dir", str(data), "--hub", tls_hub.url, "--token", token, "--hub-ca", str(tls_hub.ca_file)
    )
    assert trusted.returncode == 0, trusted.stderr
    assert (data / "hub-ca.pem").read_bytes() == tls_hub.ca_file.read_bytes()
    agent = Agent.create(data, None).start()
    try:
        for i in range(1, 6):
            assert agent.post(make_txn(i)).status_code == 201
        assert agent.wait_synced()["acked_through"] == 5
    finally:
        agent.stop()
    with tls_hub.client() as c:
        admin = {"Authorization": "Bearer " + (tls_hub.data_dir / "admin.token").read_text().strip()}
        ledger = c.get("/v1/admin/stores/T1/ledger", headers=admin).json()["records"]
    assert [r["seq"] for r in ledger] == [1, 2, 3, 4, 5]


def test_a_renewed_certificate_is_served_without_a_restart(tls_hub: TlsHub) -> None:
    before = ssl.get_server_certificate(("127.0.0.1", tls_hub.port))
    pid = tls_hub.proc.pid
    tls_hub.issue()
    deadline = time.monotonic() + 15
    after = before
    while after == before and time.monotonic() < deadline:
        time.sleep(0.2)
        after = ssl.get_server_certificate(("127.0.0.1", tls_hub.port))
    assert after != before, "the hub still serves the old certificate"
    assert tls_hub.proc.poll() is None and tls_hub.proc.pid == pid
    with tls_hub.client() as c:
        assert c.get("/healthz").status_code == 200


def test_plain_http_to_a_hub_beyond_loopback_is_refused_unless_allowed(tmp_path: Path) -> None:
    data = tmp_path / "agent"
    assert run_cli("init", "--data-dir", str(data)).returncode == 0
    args = ["enroll", "--data-dir", str(data), "--hub", "http://192.0.2.10:9", "--token", "x" * 20]
    refused = run_cli(*args)
    assert refused.returncode == 2 and "--insecure-http" in refused.stderr, refused.stderr
    allowed = run_cli(*args, "--insecure-http", timeout=60)
    assert allowed.returncode != 0 and "--insecure-http" not in allowed.stderr  # it tried: cannot connect
    loopback = run_cli("enroll", "--data-dir", str(data), "--hub", "http://127.0.0.1:9", "--token", "x" * 20)
    assert "--insecure-http" not in loopback.stderr
