"""Start, stop and kill real ``cloud-hub`` and ``edge-agent`` processes on free loopback ports."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_http(url: str, timeout: float = 20.0, proc: subprocess.Popen[bytes] | None = None) -> None:
    """Poll ``url`` until it answers 200.

    Raises:
        RuntimeError: when the process exits first or the time runs out.
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode} before {url} answered")
        try:
            if httpx.get(url, timeout=1.0).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.05)
    raise RuntimeError(f"{url} did not answer within {timeout} s")


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env.setdefault("PYTHONUNBUFFERED", "1")
    return env


@dataclass
class Service:
    """A running hub or agent process with its log file."""

    name: str
    argv: list[str]
    data_dir: Path
    port: int
    log_path: Path
    proc: subprocess.Popen[bytes] | None = field(default=None, repr=False)
    env: dict[str, str] = field(default_factory=dict)  # extra environment, e.g. EDGE_AGENT_* settings

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 20.0) -> Service:
        if self.running:
            return self
        log = open(self.log_path, "ab")  # noqa: SIM115 - handed to the child, closed in stop()
        self.proc = subprocess.Popen(self.argv, stdout=log, stderr=subprocess.STDOUT, env={**_env(), **self.env})
        log.close()
        try:
            wait_http(self.url + "/healthz", timeout, self.proc)
        except RuntimeError as exc:
            self.kill()
            raise RuntimeError(f"{self.name}: {exc}\n--- log ---\n{self.log_tail()}") from None
        return self

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self, timeout: float = 10.0) -> None:
        """Graceful stop (SIGTERM), then SIGKILL if it hangs."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def kill(self) -> None:
        """SIGKILL: no cleanup, no flush, like a power cut for the process."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.proc = None

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except FileNotFoundError:
            return "(no log)"


def _cli(module: str, *args: str, check: bool = True, input: str | None = None) -> subprocess.CompletedProcess[str]:
    res = subprocess.run(
        [sys.executable, "-m", module, *args],
        capture_output=True,
        text=True,
        env=_env(),
        input=input,
        timeout=120,
    )
    if check and res.returncode != 0:
        raise RuntimeError(f"{module} {' '.join(args)} exited {res.returncode}: {res.stderr.strip() or res.stdout}")
    return res


def hub_cli(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return _cli("cloud_hub", *args, check=check)


def agent_cli(*args: str, check: bool = True, input: str | None = None) -> subprocess.CompletedProcess[str]:
    return _cli("edge_agent", *args, check=check, input=input)


class Hub(Service):
    """A ``cloud-hub serve`` process."""

    database: str | None = None  # storage URL (None: the SQLite file in the data folder)

    @classmethod
    def create(cls, data_dir: Path, port: int | None = None, *extra: str, database: str | None = None) -> Hub:
        data_dir.mkdir(parents=True, exist_ok=True)
        if not any((data_dir / name).exists() for name in (".storesync-hub", "hub.key", "hub.db")):
            # only init creates a hub; on PostgreSQL it migrates that database and writes no SQLite file
            hub_cli("init", "--data-dir", str(data_dir), *(["--database", database] if database else []))
        port = port or free_port()
        argv = [sys.executable, "-m", "cloud_hub", "serve", "--data-dir", str(data_dir), "--port", str(port)]
        if database:
            argv += ["--database", database]
        hub = cls("hub", [*argv, *extra], data_dir, port, data_dir / "hub.log")
        hub.database = database
        return hub

    def cli_args(self) -> list[str]:
        """``--data-dir`` (and ``--database``) for a ``cloud-hub`` command on this hub's data."""
        return ["--data-dir", str(self.data_dir), *(["--database", self.database] if self.database else [])]

    @property
    def admin_token(self) -> str:
        return (self.data_dir / "admin.token").read_text().strip()

    def add_store(self, store_id: str, tz: str = "Europe/Berlin") -> str:
        """Register a store and return its enrollment token."""
        res = hub_cli("store", "add", store_id, "--tz", tz, *self.cli_args(), "--json")
        return str(json.loads(res.stdout)["token"])

    def admin(self, path: str) -> Any:
        r = httpx.get(self.url + path, headers={"Authorization": f"Bearer {self.admin_token}"}, timeout=30)
        r.raise_for_status()
        return r.json()

    def ledger(self, store_id: str, epoch: int = 1) -> list[dict[str, Any]]:
        """Every ledger record of a writer, in seq order."""
        out: list[dict[str, Any]] = []
        after = 0
        while True:
            page = self.admin(f"/v1/admin/stores/{store_id}/ledger?epoch={epoch}&after={after}&limit=5000")["records"]
            if not page:
                return out
            out.extend(page)
            after = page[-1]["seq"]


class Agent(Service):
    """An ``edge-agent run`` process."""

    @classmethod
    def create(cls, data_dir: Path, port: int | None = None, *extra: str) -> Agent:
        port = port or free_port()
        argv = [sys.executable, "-m", "edge_agent", "run", "--data-dir", str(data_dir), "--port", str(port)]
        return cls("agent", [*argv, *extra], data_dir, port, data_dir / "agent.log")

    @classmethod
    def enrolled(cls, data_dir: Path, hub: Hub, store_id: str, tz: str = "Europe/Berlin", *extra: str) -> Agent:
        """Init an agent folder, register the store on the hub and enroll."""
        data_dir.mkdir(parents=True, exist_ok=True)
        token = hub.add_store(store_id, tz)
        agent_cli("init", "--data-dir", str(data_dir))
        agent_cli("enroll", "--data-dir", str(data_dir), "--hub", hub.url, "--token", token)
        return cls.create(data_dir, None, *extra)

    def status(self) -> dict[str, Any]:
        """Status from the CLI: works whether or not the agent process runs."""
        res = agent_cli("status", "--data-dir", str(self.data_dir), "--json", check=False)
        if res.returncode not in (0, 1):  # 1: not in sync (pending or blocked), still a status
            raise RuntimeError(f"edge-agent status exited {res.returncode}: {res.stderr.strip()}")
        return dict(json.loads(res.stdout))

    def post(self, txn: Any, client: httpx.Client | None = None) -> httpx.Response:
        c = client or httpx.Client(timeout=10)
        try:
            return c.post(self.url + "/v1/transactions", json=txn)
        finally:
            if client is None:
                c.close()

    def wait_synced(self, timeout: float = 60.0) -> dict[str, Any]:
        """Wait until nothing is pending; return the final status."""
        deadline = time.monotonic() + timeout
        st = self.status()
        while time.monotonic() < deadline:
            st = self.status()
            if st["pending"] == 0 and st["acked_through"] == st["last_seq"]:
                return st
            time.sleep(0.2)
        raise TimeoutError(f"agent not synced after {timeout} s: {st}")
