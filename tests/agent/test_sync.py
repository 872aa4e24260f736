"""Enrollment and sync against a real hub process (``cloud-hub serve``)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from edge_agent.store import Outbox

from .conftest import AgentProcess, child_env, free_port, init_data_dir, make_txn, run_cli, wait_for

try:
    import cloud_hub.cli  # noqa: F401

    HUB_READY = True
except ImportError:  # pragma: no cover - the hub is built in parallel
    HUB_READY = False

pytestmark = pytest.mark.skipif(not HUB_READY, reason="cloud_hub is not available yet")


class HubProcess:
    """A real ``cloud-hub serve`` process."""

    def __init__(self, data_dir: Path, port: int | None = None) -> None:
        self.data_dir = data_dir
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._log = open(data_dir.parent / f"hub-{self.port}.log", "a")  # noqa: SIM115
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "cloud_hub", "serve", "--data-dir", str(data_dir), "--port", str(self.port)]
            + ["--log-level", "warning"],
            stdout=subprocess.PIPE,
            stderr=self._log,
            text=True,
            env=child_env(),
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if "listening on" not in line:
            self.stop()
            raise AssertionError(f"hub did not start: {line!r}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
        try:
            self.proc.wait(20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        self._log.close()


def add_store(hub_dir: Path, store_id: str = "S1") -> dict[str, Any]:
    out = subprocess.run(
        [sys.executable, "-m", "cloud_hub", "store", "add", store_id, "--tz", "Europe/Berlin"]
        + ["--data-dir", str(hub_dir), "--json"],
        capture_output=True,
        text=True,
        env=child_env(),
        timeout=60,
        check=True,
    )
    return dict(json.loads(out.stdout))


@pytest.fixture
def hub(tmp_path: Path) -> Iterator[HubProcess]:
    hub_dir = tmp_path / "hub"
    init = [sys.executable, "-m", "cloud_hub", "init", "--data-dir", str(hub_dir)]
    subprocess.run(init, capture_output=True, timeout=60, env=child_env(), check=True)  # only init creates a hub
    add_store(hub_dir)
    proc = HubProcess(hub_dir)
    try:
        yield proc
    finally:
        proc.stop()


def enroll(hub: HubProcess, data: Path, store_id: str = "S1", *extra: str) -> subprocess.CompletedProcess[str]:
    token = add_store(hub.data_dir, store_id)["token"]
    return run_cli("enroll", "--data-dir", str(data), "--hub", hub.url, "--token", token, *extra)


def status(data: Path) -> dict[str, Any]:
    result = run_cli("status", "--json", "--data-dir", str(data))
    doc = dict(json.loads(result.stdout))
    in_sync = doc["enrolled"] and not doc["blocked"] and doc["pending"] == 0
    assert result.returncode == (0 if in_sync else 1), result.stderr
    return doc


def test_enroll_capture_sync_with_running_agent(hub: HubProcess, tmp_path: Path) -> None:
    data = tmp_path / "agent"
    init_data_dir(data)
    result = enroll(hub, data)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("enrolled store S1 epoch 1 (key ")
    bad = run_cli("enroll", "--data-dir", str(data), "--hub", hub.url, "--token", "x" * 43)
    assert bad.returncode == 3 and "invalid_token" in bad.stderr  # 3: the hub refused

    agent = AgentProcess(data, "--sync-interval", "1")
    try:
        with httpx.Client(base_url=agent.url, timeout=10) as client:
            for i in range(1, 31):
                assert client.post("/v1/transactions", json=make_txn(i)).status_code == 201
            batch = client.post("/v1/transactions", json=[make_txn(i, "R2") for i in range(1, 21)])
            assert [x["status"] for x in batch.json()["results"]] == [201] * 20

            def synced() -> dict[str, Any] | None:
                doc: dict[str, Any] = client.get("/v1/status").json()
                return doc if doc["pending"] == 0 and doc["acked_through"] == 50 else None

            doc = wait_for(synced, timeout=30)
        assert doc["last_sync_result"] == "ok"
        assert doc["blocked"] is None
        assert doc["receipt"]["acked_through"] == 50
        assert doc["clock"] is not None and doc["clock"]["delta_ms"] >= 0
    finally:
        assert agent.stop() == 0
    final = status(data)
    assert (final["pending"], final["acked_through"], final["last_seq"]) == (0, 50, 50)
    assert final["store_id"] == "S1" and final["epoch"] == 1


def test_offline_capture_then_cli_sync_when_hub_returns(hub: HubProcess, tmp_path: Path) -> None:
    data = tmp_path / "agent"
    init_data_dir(data)
    assert enroll(hub, data).returncode == 0
    hub.stop()

    lines = "\n".join(json.dumps(make_txn(i)) for i in range(1, 11))
    captured = run_cli("capture", "--data-dir", str(data), "-", input=lines)
    assert captured.returncode == 0, captured.stdout + captured.stderr
    offline = run_cli("sync", "--data-dir", str(data))
    assert offline.returncode == 1
    assert offline.stdout.startswith("offline: cannot reach the hub")
    doc = status(data)
    assert (doc["last_sync_result"], doc["pending"], doc["acked_through"]) == ("offline", 10, 0)
    assert doc["oldest_pending_age_s"] is not None

    # Refuse to re-enroll while records are pending.
    again = HubProcess(hub.data_dir, port=hub.port)
    try:
        refused = enroll(again, data)
        assert refused.returncode == 2 and "not synced yet" in refused.stderr
        synced = run_cli("sync", "--until-synced", "--timeout", "30", "--data-dir", str(data))
        assert synced.returncode == 0, synced.stdout + synced.stderr
        assert synced.stdout.strip() == "synced: acked_through 10, pending 0"
        doc = status(data)
        assert (doc["last_sync_result"], doc["pending"], doc["acked_through"]) == ("ok", 0, 10)
        # Once synced, re-enrolling opens the next epoch; seq starts over.
        old_key = (data / "agent.key").read_bytes()
        assert enroll(again, data).returncode == 0
        assert status(data)["epoch"] == 2
        assert (data / "agent.key.epoch1").read_bytes() == old_key != (data / "agent.key").read_bytes()
        assert (data / "agent.key").stat().st_mode & 0o777 == 0o600
        more = run_cli("capture", "--data-dir", str(data), "-", input=json.dumps(make_txn(11)))
        assert more.stdout.strip() == "item 1: stored as seq 1"
        assert run_cli("sync", "--data-dir", str(data)).stdout.strip() == "synced: acked_through 1, pending 0"
        verify = run_cli("verify", "--data-dir", str(data))
        assert (verify.returncode, verify.stdout.strip()) == (0, "chain OK: 11 records, seq 1..1")
    finally:
        again.stop()


def test_hub_restored_from_backup_is_refilled_by_rewind(hub: HubProcess, tmp_path: Path) -> None:
    data = tmp_path / "agent"
    init_data_dir(data)
    assert enroll(hub, data).returncode == 0
    hub.stop()
    backup = tmp_path / "hub-backup"
    shutil.copytree(hub.data_dir, backup)  # the hub as it was before any record arrived

    restarted = HubProcess(hub.data_dir, port=hub.port)
    try:
        lines = "\n".join(json.dumps(make_txn(i)) for i in range(1, 6))
        assert run_cli("capture", "--data-dir", str(data), "-", input=lines).returncode == 0
        first = run_cli("sync", "--data-dir", str(data))
        assert first.stdout.strip() == "synced: acked_through 5, pending 0"
    finally:
        restarted.stop()
    shutil.rmtree(hub.data_dir)
    shutil.copytree(backup, hub.data_dir)

    restored = HubProcess(hub.data_dir, port=hub.port)
    try:
        lines = "\n".join(json.dumps(make_txn(i)) for i in range(6, 9))
        assert run_cli("capture", "--data-dir", str(data), "-", input=lines).returncode == 0
        again = run_cli("sync", "--data-dir", str(data))
        assert again.returncode == 0, again.stdout + again.stderr
        assert again.stdout.strip() == "synced: acked_through 8, pending 0"
        token = (hub.data_dir / "admin.token").read_text().strip()
        ledger = httpx.get(
            f"{restored.url}/v1/admin/stores/S1/ledger?epoch=1&after=0&limit=100",
            headers={"Authorization": f"Bearer {token}"},
            timeout=10,
        ).json()["records"]
        assert [r["seq"] for r in ledger] == list(range(1, 9))
    finally:
        restored.stop()
    with Outbox(data / "outbox.db") as outbox:
        results = [b["result"] for b in reversed(outbox.recent_bursts(20))]
    assert "gap" in results and results[-1] == "ok"


def test_superseded_key_blocks_sync_and_keeps_records(hub: HubProcess, tmp_path: Path) -> None:
    data = tmp_path / "agent"
    init_data_dir(data)
    assert enroll(hub, data).returncode == 0
    assert run_cli("capture", "--data-dir", str(data), "-", input=json.dumps(make_txn(1))).returncode == 0
    # Another machine enrolls the same store: our epoch is superseded.
    other = tmp_path / "other"
    init_data_dir(other)
    assert enroll(hub, other).returncode == 0

    result = run_cli("sync", "--data-dir", str(data))
    assert result.returncode == 1
    assert result.stdout.startswith("blocked: key_revoked")
    doc = status(data)
    assert doc["last_sync_result"] == "blocked"
    assert doc["blocked"]["code"] == "key_revoked"
    assert (doc["pending"], doc["last_seq"], doc["acked_through"]) == (1, 1, 0)
    assert doc["next_attempt_at"] is not None
    assert "BLOCKED (key_revoked)" in run_cli("status", "--data-dir", str(data)).stdout
    assert run_cli("verify", "--data-dir", str(data)).returncode == 0
