"""Shared helpers for the edge-agent tests: sample transactions, enrolled outboxes, real processes."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest

from edge_agent.config import AgentConfig
from edge_agent.store import Identity, Outbox
from sync_protocol import keys

SRC = Path(__file__).resolve().parents[2]


def make_txn(n: int, register: str = "R1", price: str = "19.90", **extra: Any) -> dict[str, Any]:
    """A valid sale of two items whose totals add up."""
    tax = "6.36"
    total = str(Decimal(price) * 2 + Decimal(tax))
    txn: dict[str, Any] = {
        "txn_id": f"{register}-{n:06d}",
        "register_id": register,
        "kind": "sale",
        "occurred_at": "2026-11-22T10:15:03",
        "currency": "EUR",
        "lines": [{"sku": "TEE-BLK-M", "qty": "2", "unit_price": price, "discount": "0.00", "tax": tax}],
        "tenders": [{"type": "card", "amount": total, "card_last4": "4242"}],
        "total": total,
    }
    txn.update(extra)
    return txn


def init_data_dir(data_dir: Path) -> keys.Ed25519PrivateKey:
    """What ``edge-agent init`` does, in process: a 0600 key and an empty outbox."""
    cfg = AgentConfig.load(data_dir)
    key = keys.generate()
    keys.save_private_key(key, cfg.key_path)
    Outbox(cfg.db_path).close()
    return key


def write_identity(
    data_dir: Path,
    key: keys.Ed25519PrivateKey,
    *,
    store_id: str = "S1",
    epoch: int = 1,
    hub_url: str = "http://127.0.0.1:9",
    hub_key: keys.Ed25519PrivateKey | None = None,
) -> keys.Ed25519PrivateKey:
    """Write an enrollment identity directly (for tests that need no hub). Returns the hub key."""
    hub_key = hub_key or keys.generate()
    with Outbox(AgentConfig.load(data_dir).db_path) as outbox:
        outbox.set_identity(
            Identity(
                store_id=store_id,
                epoch=epoch,
                key_id=keys.key_id(key),
                public_key=keys.public_hex(key),
                hub_url=hub_url,
                hub_public_key=keys.public_hex(hub_key),
                hub_key_id=keys.key_id(hub_key),
                tz="Europe/Berlin",
            )
        )
    return hub_key


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def child_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(SRC) + os.pathsep + env.get("PYTHONPATH", "")
    env.pop("EDGE_AGENT_DATA", None)
    return env


def run_cli(*args: str, input: str | None = None, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """Run ``python -m edge_agent ARGS`` and capture its output."""
    return subprocess.run(
        [sys.executable, "-m", "edge_agent", *args],
        input=input,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=child_env(),
    )


class AgentProcess:
    """A real ``edge-agent run`` process on a free port."""

    def __init__(self, data_dir: Path, *extra: str) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "edge_agent", "run", "--data-dir", str(data_dir), "--port", str(self.port), *extra],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=child_env(),
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if "listening on" not in line:
            self.proc.kill()
            _, err = self.proc.communicate(timeout=10)
            raise AssertionError(f"agent did not start: {line!r} {err}")
        assert line.strip() == f"edge-agent listening on {self.url}"

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 20) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout)
        for stream in (self.proc.stdout, self.proc.stderr):
            if stream is not None:
                stream.close()
        return int(self.proc.returncode)


@pytest.fixture
def enrolled_dir(tmp_path: Path) -> tuple[Path, keys.Ed25519PrivateKey]:
    data = tmp_path / "agent"
    key = init_data_dir(data)
    write_identity(data, key)
    return data, key


@pytest.fixture
def agent(enrolled_dir: tuple[Path, keys.Ed25519PrivateKey]) -> Iterator[AgentProcess]:
    proc = AgentProcess(enrolled_dir[0])
    try:
        yield proc
    finally:
        proc.stop()


def wait_for(predicate: Any, timeout: float = 20.0, interval: float = 0.05) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(interval)


def get_json(url: str) -> Any:
    return httpx.get(url, timeout=10).json()
