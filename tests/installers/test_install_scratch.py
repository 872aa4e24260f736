"""install.sh / uninstall.sh into a scratch root (DESTDIR), sd_notify readiness and watchdog, unit hardening.

The install test runs the real script: a virtual environment with the pinned versions of
installers/constraints.txt, the package from this tree, ``cloud-hub init``/``edge-agent init`` and a real
enrollment against a hub started from the installed environment. systemd itself is not run here (no
systemd as PID 1 in the test machine); the units are checked with ``systemd-analyze``.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from storesync_harness.processes import Agent, Hub, agent_cli, free_port

ROOT = Path(__file__).resolve().parents[2]
SYSTEMD = ROOT / "installers" / "systemd"
PREFIX = "/opt/storesync"


def sh(script: str, *args: str, destdir: Path, check: bool = True) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "DESTDIR": str(destdir), "PYTHON": sys.executable}
    res = subprocess.run(["bash", str(SYSTEMD / script), *args], capture_output=True, text=True, env=env, timeout=600)
    if check:
        assert res.returncode == 0, res.stdout + res.stderr
    return res


def test_install_upgrade_reinstall_and_uninstall_in_a_scratch_root(tmp_path: Path) -> None:
    root = tmp_path / "root"
    sh("install.sh", "hub", "--public-url", "https://hub.example.com", "--port", "8711", destdir=root)
    venv = root / PREFIX.lstrip("/")
    hub_data = root / "var/lib/storesync-hub"
    assert (hub_data / ".storesync-hub").exists() and (hub_data / "hub.key").stat().st_mode & 0o777 == 0o600
    env_text = (root / "etc/storesync/hub.env").read_text()
    assert "CLOUD_HUB_PORT=8711" in env_text and "CLOUD_HUB_PUBLIC_URL=https://hub.example.com" in env_text
    unit = (root / "etc/systemd/system/storesync-hub.service").read_text()
    assert "Type=notify" in unit and "ExecStart=/opt/storesync/bin/cloud-hub serve" in unit
    # pinned: what is installed is what constraints.txt says
    pins = dict(
        line.split("==")
        for line in (ROOT / "installers/constraints.txt").read_text().splitlines()
        if "==" in line and not line.startswith("#")
    )
    frozen = subprocess.run([str(venv / "bin/python"), "-m", "pip", "freeze"], capture_output=True, text=True).stdout
    for name in ("pydantic", "fastapi", "apsw", "cryptography"):
        assert f"{name}=={pins[name]}" in frozen

    # a hub from the installed environment, and an agent installed and enrolled against it
    port = free_port()
    hub = Hub("hub", [str(venv / "bin/cloud-hub"), "serve", "--data-dir", str(hub_data), "--port", str(port)],
              hub_data, port, tmp_path / "hub.log").start()  # fmt: skip
    try:
        token = hub.add_store("S042")
        args = ["agent", "--hub", hub.url, "--token", token, "--drop-dir", "/srv/storesync-drops"]
        sh("install.sh", *args, destdir=root)
        agent_data = root / "var/lib/storesync-agent"
        key = (agent_data / "agent.key").read_bytes()
        dropin = (root / "etc/systemd/system/storesync-agent.service.d/drop-dir.conf").read_text()
        assert "ReadWritePaths=/srv/storesync-drops" in dropin and (root / "srv/storesync-drops").is_dir()
        # re-run with the same, now used, token: no failure, no second enrollment, same key
        again = sh("install.sh", *args, destdir=root)
        assert "already enrolled" in again.stdout
        assert (agent_data / "agent.key").read_bytes() == key
        status = json.loads(agent_cli("status", "--data-dir", str(agent_data), "--json", check=False).stdout)
        assert (status["store_id"], status["epoch"]) == ("S042", 1)
        # the installed agent runs and syncs
        aport = free_port()
        argv = [str(venv / "bin/edge-agent"), "run", "--data-dir", str(agent_data), "--port", str(aport)]
        agent = Agent("agent", argv, agent_data, aport, tmp_path / "agent.log").start()
        try:
            from storesync_harness.pos import Pos

            assert agent.post(Pos("R1").sale()).status_code == 201
            assert agent.wait_synced(30)["acked_through"] == 1
        finally:
            agent.stop()
    finally:
        hub.stop()

    # uninstall keeps data; --purge removes it
    sh("uninstall.sh", "agent", destdir=root)
    assert (agent_data / "agent.key").exists() and not (root / "etc/systemd/system/storesync-agent.service").exists()
    assert venv.exists()  # the hub still uses the program
    sh("uninstall.sh", "all", "--purge", destdir=root)
    assert not agent_data.exists() and not hub_data.exists() and not venv.exists()


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed")
@pytest.mark.parametrize("name", ["storesync-agent.service", "storesync-hub.service"])
def test_units_score_3_or_lower_on_systemd_analyze_security(tmp_path: Path, name: str) -> None:
    copy = tmp_path / name
    copy.write_text((SYSTEMD / name).read_text())
    res = subprocess.run(
        ["systemd-analyze", "security", "--offline=yes", "--no-pager", str(copy)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
    )
    match = re.search(r"Overall exposure level for \S+: (\d+\.\d+)", res.stdout + res.stderr)
    assert match, res.stdout + res.stderr
    print(f"{name}: {match.group(1)}")
    assert float(match.group(1)) <= 3.0


def _notify_socket(tmp_path: Path) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(tmp_path / "notify.sock"))
    sock.settimeout(20)
    return sock


def _messages_until(sock: socket.socket, wanted: str, seen: list[str]) -> list[str]:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and not any(wanted in m for m in seen):
        seen.append(sock.recv(4096).decode())
    return seen


@pytest.mark.parametrize("service", ["agent", "hub"])
def test_ready_watchdog_and_stopping_reach_systemd(tmp_path: Path, hub: Hub, service: str) -> None:
    sock = _notify_socket(tmp_path)
    env = {"NOTIFY_SOCKET": str(tmp_path / "notify.sock"), "WATCHDOG_USEC": "1000000"}
    if service == "agent":
        proc: Hub | Agent = Agent.enrolled(tmp_path / "agent", hub, "S1")
    else:
        proc = Hub.create(tmp_path / "hub2")
    proc.env = env
    try:
        proc.start()
        seen = _messages_until(sock, "READY=1", [])
        seen = _messages_until(sock, "WATCHDOG=1", seen)
        assert any(m.startswith("READY=1") for m in seen) and "WATCHDOG=1" in seen
    finally:
        proc.stop()
    seen = _messages_until(sock, "STOPPING=1", seen)
    assert "STOPPING=1" in seen
    sock.close()
