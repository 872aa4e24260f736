"""The systemd units are valid and start what the README documents."""

from __future__ import annotations

import configparser
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

UNITS = Path(__file__).resolve().parents[2] / "installers" / "systemd"


def unit(name: str) -> configparser.ConfigParser:
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read(UNITS / name)
    return parser


@pytest.mark.parametrize(
    ("name", "command"),
    [("storesync-agent.service", "edge-agent run"), ("storesync-hub.service", "cloud-hub serve")],
)
def test_unit_runs_the_documented_command_hardened(name: str, command: str) -> None:
    u = unit(name)
    assert command in u["Service"]["ExecStart"]
    assert u["Service"]["User"] == "storesync"
    # the agent's folder is group-readable for store-tui (group storesync); keys are always 0600
    group_read = name == "storesync-agent.service"
    assert u["Service"]["UMask"] == ("0027" if group_read else "0077")
    assert u["Service"]["StateDirectoryMode"] == ("0750" if group_read else "0700")
    assert u["Service"]["Type"] == "notify" and u["Service"]["WatchdogSec"]
    assert u["Service"]["NoNewPrivileges"] == "yes"
    assert u["Service"]["Restart"] == "always"


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed")
@pytest.mark.parametrize("name", ["storesync-agent.service", "storesync-hub.service"])
def test_systemd_analyze_verify(tmp_path: Path, name: str) -> None:
    """systemd's own checker accepts the unit, with ExecStart pointed at this environment's binaries."""
    text = (UNITS / name).read_text().replace("/opt/storesync/bin", str(Path(sys.executable).parent))
    copy = tmp_path / name
    copy.write_text(text)
    res = subprocess.run(["systemd-analyze", "verify", str(copy)], capture_output=True, text=True, timeout=60)
    problems = [
        line
        for line in (res.stdout + res.stderr).splitlines()
        if name in line and "Documentation" not in line and "not executable" not in line
    ]
    assert problems == [], "\n".join(problems)


def test_install_script_is_valid_bash() -> None:
    res = subprocess.run(["bash", "-n", str(UNITS / "install.sh")], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
