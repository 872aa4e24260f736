"""README's "Running it for real" and "Installing as a service", walked through with real processes (issue 13).

The shell blocks marked ``<!-- walkthrough:running -->`` and ``<!-- walkthrough:service -->`` are read from
README.md and run as written in a scratch folder, with only these changes (README says the same):

- running: ``/var/lib`` lies under the scratch folder; the hub answers on 127.0.0.1 at a free port instead of
  ``https://hub.example.com`` and port 8700; the agent listens on a free port (``EDGE_AGENT_PORT``) instead
  of 8787; after each line ending in ``&`` the script waits for that service's ``/healthz``; ``edge-agent
  status`` is repeated until it exits 0 (``IN SYNC``: the hub acknowledged the sale).
- service: install.sh runs with ``DESTDIR`` (a scratch root, as tests/installers do) instead of ``sudo``;
  the hub it installs is started from the installed environment and the agent enrolls against it with a
  token from ``cloud-hub store add`` in place of ``sse_...``.

Skipped here, and said so in the test output: everything systemd does (``systemctl enable/restart`` -- with
DESTDIR the scripts skip them; the machine has no systemd as PID 1), creating the ``storesync`` user
(DESTDIR skips it), and the Windows section (no Windows machine).
"""

from __future__ import annotations

import importlib.util
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from storesync_harness.processes import Hub, free_port

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
SKIPPED = (
    "systemctl daemon-reload/enable/restart (install.sh skips them under DESTDIR; no systemd as PID 1 here)",
    "the storesync system user and group (install.sh skips them under DESTDIR)",
    "README 'Installing on Windows store servers' (install.ps1, the pywin32 service: no Windows machine here)",
)


def block(marker: str) -> list[str]:
    """The commands of the first ``sh`` block after ``<!-- walkthrough:MARKER``, continuation lines joined."""
    text = README.read_text()
    at = text.index(f"<!-- walkthrough:{marker}")
    body = re.search(r"```sh\n(.*?)```", text[at:], re.S)
    assert body is not None, f"no sh block after the {marker} marker"
    lines: list[str] = []
    pending = ""
    assert "```" not in body.group(1)
    for raw in body.group(1).splitlines():
        line = raw.rstrip()
        if pending:
            line = pending + " " + line.strip()
            pending = ""
        if line.endswith("\\"):
            pending = line[:-1].rstrip()
            continue
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        if line.count("'") % 2:  # a quoted argument continues on the next line (the curl body)
            pending = line
            continue
        lines.append(line)
    assert not pending, f"unterminated quote or continuation in the {marker} block: {pending[:80]}"
    return lines


def _install_helpers():  # tests/installers has no __init__.py: load its module by path
    spec = importlib.util.spec_from_file_location("install_scratch", ROOT / "tests/installers/test_install_scratch.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def running_script(lines: list[str], scratch: Path, hub_port: int, agent_port: int) -> str:
    hub_url = f"http://127.0.0.1:{hub_port}"
    out = [
        "set -euo pipefail",
        "trap 'kill $(jobs -p) 2>/dev/null || true; wait' EXIT",
        'wait_up() { for _ in $(seq 600); do curl -sf "$1" >/dev/null && return 0; sleep 0.1; done; return 1; }',
    ]
    for line in lines:
        cmd = (
            line.replace("/var/lib/", f"{scratch}/var/lib/")
            .replace("https://hub.example.com", hub_url)
            .replace("--port 8700", f"--port {hub_port}")
            .replace("127.0.0.1:8787", f"127.0.0.1:{agent_port}")
        )
        if cmd.startswith("edge-agent status"):
            head = cmd.split("#")[0].strip()
            out.append(f"for _ in $(seq 300); do {head} > status.txt && break || sleep 0.2; done; cat status.txt")
            continue
        out.append(cmd)
        if cmd.split("#")[0].rstrip().endswith("&"):
            url = hub_url if cmd.startswith("cloud-hub serve") else f"http://127.0.0.1:{agent_port}"
            out.append(f"wait_up {url}/healthz")
    return "\n".join(out) + "\n"


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_readme_running_it_for_real_and_installing_as_a_service(tmp_path: Path) -> None:
    for step in SKIPPED:
        print(f"walkthrough skips: {step}")

    # -- Running it for real ------------------------------------------------------------------------
    running = block("running")
    assert [line.split()[0] for line in running][:3] == ["cloud-hub", "export", "TOKEN=$(cloud-hub"]
    scratch = tmp_path / "running"
    scratch.mkdir()
    hub_port, agent_port = free_port(), free_port()
    script = running_script(running, scratch, hub_port, agent_port)
    env = {
        "PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin",
        "HOME": str(scratch),
        "EDGE_AGENT_PORT": str(agent_port),
        "PYTHONUNBUFFERED": "1",
    }
    res = subprocess.run(["bash", "-c", script], cwd=scratch, env=env, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, f"--- script ---\n{script}\n--- stdout ---\n{res.stdout}\n--- stderr ---\n{res.stderr}"
    assert '"seq":1,"duplicate":false' in res.stdout
    assert res.stdout.count("IN SYNC") == 1 and "store        S042 (epoch 1" in res.stdout
    assert "chain OK: 1 records, seq 1..1" in res.stdout

    # -- Installing as a service (Linux), into a scratch root ---------------------------------------
    install = _install_helpers()
    service = block("service")
    assert len(service) == 3 and all(line.startswith("sudo installers/systemd/") for line in service)
    root = tmp_path / "root"

    def run_line(line: str, **subst: str) -> subprocess.CompletedProcess[str]:
        words = line.split("#")[0].split()[1:]  # without sudo: DESTDIR instead
        script = Path(words[0]).name
        args = [subst.get(w, w) for w in words[1:]]
        return install.sh(script, *args, destdir=root)

    run_line(service[0])  # the hub: venv with the pinned versions, init, hub.env, unit
    hub_data = root / "var/lib/storesync-hub"
    env_text = (root / "etc/storesync/hub.env").read_text()
    assert "CLOUD_HUB_PUBLIC_URL=https://hub.example.com" in env_text and "CLOUD_HUB_PORT=8700" in env_text
    venv = root / install.PREFIX.lstrip("/")
    port = free_port()
    hub = Hub("hub", [str(venv / "bin/cloud-hub"), "serve", "--data-dir", str(hub_data), "--port", str(port)],
              hub_data, port, tmp_path / "hub.log").start()  # fmt: skip
    try:
        add = [str(venv / "bin/cloud-hub"), "store", "add", "S042", "--tz", "Europe/Berlin"]
        token = json.loads(
            subprocess.run(
                [*add, "--data-dir", str(hub_data), "--json"], capture_output=True, text=True, check=True
            ).stdout
        )["token"]
        run_line(service[1], **{"https://hub.example.com": hub.url, "sse_...": token})
    finally:
        hub.stop()
    agent_data = root / "var/lib/storesync-agent"
    assert (agent_data / "agent.key").exists() and (root / "srv/drops").is_dir()
    assert (
        "ReadWritePaths=/srv/drops" in (root / "etc/systemd/system/storesync-agent.service.d/drop-dir.conf").read_text()
    )
    run_line(service[2])  # uninstall the agent: the data stays
    assert (agent_data / "agent.key").exists() and not (root / "etc/systemd/system/storesync-agent.service").exists()
