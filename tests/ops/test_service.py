"""The start/stop code the Windows service and systemd share (edge_agent.service), and the platform checks.

pywin32's service class (installers/windows/storesync_agent_service.py) only calls AgentService.run()
and .stop(); it cannot run here (no Windows). What it relies on is tested: the agent started on a
thread (no signal handlers), answering sales, stopped from another thread in order, its lock released.
"""

from __future__ import annotations

import threading
from pathlib import Path

import httpx

from edge_agent.config import AgentConfig
from edge_agent.drops.pipeline import pool_start_method
from edge_agent.service import AgentService
from storesync_harness.pos import Pos
from storesync_harness.processes import Agent, Hub, free_port
from storesync_runtime.proclock import LockHeld
from sync_protocol.winacl import too_open


def test_agent_service_runs_on_a_thread_and_stops_in_order(tmp_path: Path, hub: Hub) -> None:
    proto = Agent.enrolled(tmp_path / "agent", hub, "S1")  # init + enroll through the CLI; not started
    port = free_port()
    lines: list[str] = []
    service = AgentService(AgentConfig.load(proto.data_dir, port=port, sync_interval=0.5), announce=lines.append)
    errors: list[BaseException] = []

    def run() -> None:
        try:
            service.run()
        except BaseException as exc:  # noqa: BLE001 - reported to the test
            errors.append(exc)

    thread = threading.Thread(target=run, name="service")
    thread.start()
    try:
        assert service.started.wait(30), errors
        sale = Pos("R1").sale()
        url = f"http://127.0.0.1:{port}"
        for _ in range(50):
            try:
                answer = httpx.post(url + "/v1/transactions", json=sale, timeout=5)
                break
            except httpx.ConnectError:
                threading.Event().wait(0.1)
        assert answer.status_code == 201
        second = AgentService(AgentConfig.load(proto.data_dir, port=free_port()))
        try:
            second.run()
        except LockHeld as exc:
            assert "'edge-agent run'" in str(exc)
        else:  # pragma: no cover - the lock failed
            raise AssertionError("a second service started on the same data folder")
    finally:
        assert service.stop(timeout=30)
        thread.join(30)
    assert not thread.is_alive() and errors == []
    assert lines and lines[0].startswith(f"edge-agent listening on http://127.0.0.1:{port}")
    # stopped cleanly: the sale is on disk, the lock is free, the agent starts and syncs it
    again = Agent.create(proto.data_dir).start()
    try:
        assert again.wait_synced(30)["acked_through"] == 1
    finally:
        again.stop()


def test_platform_choices_for_windows() -> None:
    assert pool_start_method("posix") == "forkserver" and pool_start_method("nt") == "spawn"
    owner = "S-1-5-21-1-2-3-1001"
    tight = [(0, 0x1F01FF, "S-1-5-18"), (0, 0x1F01FF, "S-1-5-32-544"), (0, 0x120089, owner)]
    assert too_open(tight, owner) == []
    everyone = [*tight, (0, 0x120089, "S-1-1-0")]
    assert too_open(everyone, owner) == ["S-1-1-0"]
    denied = [*tight, (1, 0x120089, "S-1-5-32-545")]  # a deny ACE opens nothing
    assert too_open(denied, owner) == []
