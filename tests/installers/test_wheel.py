"""A built wheel installs into a fresh venv outside the checkout and its three commands run.

The wheel is built from a copy of the project's files (what a fresh clone has), installed with
``--no-deps --no-index`` into a new venv in a temporary folder; the dependencies come from the
project's own ``.venv`` through one ``.pth`` line (the editable install of the checkout is not
activated that way: ``.pth`` files inside an added path are not read), so the test is quick and
needs no network. It then checks that the packages are imported from the fresh venv, that the
TUI's stylesheet shipped, and that ``edge-agent --help``, ``cloud-hub --help`` and
``store-tui --help`` work from a folder outside the checkout.
"""

from __future__ import annotations

import os
import subprocess
import sys
import sysconfig
import tarfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("sync_protocol", "storesync_runtime", "edge_agent", "cloud_hub", "tui", "storesync_harness")


def _project_files() -> list[str]:
    out = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        capture_output=True,
        check=True,
    ).stdout
    return [f for f in out.decode().split("\0") if f and (ROOT / f).is_file()]


def _run(*args: str, cwd: Path, timeout: float = 240) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    return subprocess.run(list(args), cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if not (ROOT / ".git").exists():
        pytest.skip("needs the git checkout to list the project's files")
    base = tmp_path_factory.mktemp("wheel")
    src = base / "src"
    src.mkdir()
    with tarfile.open(base / "src.tar", "w") as tar:
        for name in _project_files():
            tar.add(ROOT / name, arcname=name)
    with tarfile.open(base / "src.tar") as tar:
        tar.extractall(src, filter="data")
    built = _run(sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(base / "dist"), str(src), cwd=base)
    assert built.returncode == 0, built.stderr[-2000:]
    (wheel,) = (base / "dist").glob("storesync-*.whl")
    venv = base / "venv"
    made = _run(sys.executable, "-m", "venv", "--without-pip", str(venv), cwd=base)
    assert made.returncode == 0, made.stderr
    python = venv / "bin" / "python"
    pip = _run(sys.executable, "-m", "pip", "--python", str(python), "install", "-q", "--no-deps", "--no-index",
               str(wheel), cwd=base)  # fmt: skip
    assert pip.returncode == 0, pip.stderr[-2000:]
    purelib = _run(str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])", cwd=base)
    deps = sysconfig.get_paths()["purelib"]  # this interpreter's site-packages: the project's .venv
    (Path(purelib.stdout.strip()) / "storesync-deps.pth").write_text(deps + "\n")
    return venv


def test_the_packages_come_from_the_wheel_with_the_stylesheet(installed: Path, tmp_path: Path) -> None:
    code = (
        "import importlib, pathlib; "
        f"mods = [importlib.import_module(m) for m in {PACKAGES!r}]; "
        "print('\\n'.join(str(pathlib.Path(m.__file__).parent) for m in mods)); "
        "import tui.app; print(pathlib.Path(tui.app.__file__).with_name(tui.app.StoreTuiApp.CSS_PATH).is_file())"
    )
    out = _run(str(installed / "bin" / "python"), "-c", code, cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-2000:]
    *folders, css = out.stdout.split()
    assert len(folders) == len(PACKAGES)
    assert all(Path(f).is_relative_to(installed) for f in folders), folders
    assert css == "True"


@pytest.mark.parametrize(("command", "says"), [("edge-agent", "usage: edge-agent"), ("cloud-hub", "usage: cloud-hub"),
                                               ("store-tui", "usage: store-tui")])  # fmt: skip
def test_each_command_runs_outside_the_checkout(installed: Path, tmp_path: Path, command: str, says: str) -> None:
    out = _run(str(installed / "bin" / command), "--help", cwd=tmp_path, timeout=60)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.startswith(says)
