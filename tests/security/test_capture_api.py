"""Who may talk to the capture API (DESIGN §10): real agent processes, real HTTP."""

from __future__ import annotations

import json
import socket
import stat
from pathlib import Path

import httpx
import pytest

from agent.conftest import init_data_dir, make_txn, run_cli, write_identity
from storesync_harness.processes import Agent

JSON = {"Content-Type": "application/json"}


def lan_address() -> str | None:
    """This machine's non-loopback IPv4 address, if it has one."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.connect(("192.0.2.1", 9))  # no packet is sent: this only picks the outgoing interface
            addr = str(s.getsockname()[0])
        except OSError:
            return None
    return None if addr.startswith("127.") else addr


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    data = tmp_path / "agent"
    key = init_data_dir(data)
    write_identity(data, key)
    return data


def stored(agent: Agent) -> int:
    return int(agent.status()["last_seq"])


def test_cross_site_and_rebinding_requests_are_refused(data_dir: Path) -> None:
    agent = Agent.create(data_dir, None, "--allow-origin", "http://till.local").start()
    try:
        body = json.dumps(make_txn(1)).encode()
        url = agent.url + "/v1/transactions"
        plain = httpx.post(url, content=body, headers={"Content-Type": "text/plain"}, timeout=10)
        assert (plain.status_code, plain.json()["error"]) == (415, "unsupported_media_type")
        form = httpx.post(url, content=body, headers={"Content-Type": "application/x-www-form-urlencoded"})
        assert form.status_code == 415
        assert httpx.post(url, content=body, timeout=10).status_code == 415  # no Content-Type at all
        foreign = httpx.post(url, content=body, headers=JSON | {"Origin": "https://evil.example"}, timeout=10)
        assert (foreign.status_code, foreign.json()["error"]) == (403, "foreign_origin")
        rebound = httpx.post(url, content=body, headers=JSON | {"Host": f"evil.example:{agent.port}"}, timeout=10)
        assert (rebound.status_code, rebound.json()["error"]) == (421, "bad_host")
        other_port = httpx.post(url, content=body, headers=JSON | {"Host": "127.0.0.1:1"}, timeout=10)
        assert other_port.status_code == 421
        status = httpx.get(agent.url + "/v1/status", headers={"Host": "evil.example"}, timeout=10)
        assert status.status_code == 421  # reading the status cross-site is refused too
        sync = httpx.post(agent.url + "/v1/sync", content=b"", headers={"Content-Type": "text/plain"}, timeout=10)
        assert sync.status_code == 415
        assert stored(agent) == 0
        ok = httpx.post(url, content=body, headers=JSON | {"Origin": "http://till.local"}, timeout=10)
        assert ok.status_code == 201, ok.text
        local = httpx.post(url, json=make_txn(2), headers={"Host": f"localhost:{agent.port}"}, timeout=10)
        assert local.status_code == 201, local.text
        assert stored(agent) == 2
    finally:
        agent.stop()


def test_register_add_prints_a_token_stored_hashed(data_dir: Path) -> None:
    added = run_cli("register", "add", "R2", "--data-dir", str(data_dir))
    assert added.returncode == 0, added.stderr
    token = added.stdout.strip()
    assert token.startswith("ssr_") and len(token) >= 40
    saved = data_dir / "registers.json"
    assert token not in saved.read_text()
    assert stat.S_IMODE(saved.stat().st_mode) == 0o600
    listed = run_cli("register", "list", "--data-dir", str(data_dir))
    assert listed.stdout.startswith("R2\t") and token not in listed.stdout
    bad = run_cli("register", "add", "R 2", "--data-dir", str(data_dir))
    assert bad.returncode == 2 and len(bad.stderr.strip().splitlines()) == 1


def test_no_non_loopback_bind_without_register_tokens(data_dir: Path) -> None:
    result = run_cli("run", "--data-dir", str(data_dir), "--host", "0.0.0.0", "--port", "0", timeout=30)
    assert result.returncode == 2
    assert "register add" in result.stderr and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_beyond_loopback_a_register_token_is_required_and_binds_the_register(data_dir: Path) -> None:
    lan = lan_address()
    if lan is None:
        pytest.skip("this machine has no non-loopback IPv4 address")
    token = run_cli("register", "add", "R2", "--data-dir", str(data_dir)).stdout.strip()
    agent = Agent.create(data_dir, None, "--host", "0.0.0.0").start()
    try:
        url = f"http://{lan}:{agent.port}/v1/transactions"
        none = httpx.post(url, json=make_txn(1, "R2"), timeout=10)
        assert none.status_code == 401 and none.headers["www-authenticate"] == "Bearer"
        wrong = httpx.post(url, json=make_txn(1, "R2"), headers={"Authorization": "Bearer ssr_guess"}, timeout=10)
        assert wrong.status_code == 401
        auth = {"Authorization": f"Bearer {token}"}
        assert httpx.get(f"http://{lan}:{agent.port}/v1/status", timeout=10).status_code == 401
        assert httpx.post(url, json=make_txn(1, "R2"), headers=auth, timeout=10).status_code == 201
        other = httpx.post(url, json=make_txn(2, "R1"), headers=auth, timeout=10)
        assert (other.status_code, other.json()["error"]) == (403, "forbidden")
        batch = httpx.post(url, json=[make_txn(3, "R2"), make_txn(4, "R1")], headers=auth, timeout=10)
        assert [r["status"] for r in batch.json()["results"]] == [201, 403]
        assert httpx.get(f"http://{lan}:{agent.port}/healthz", timeout=10).status_code == 200
        assert stored(agent) == 2
        assert token not in agent.log_path.read_text()
    finally:
        agent.stop()
