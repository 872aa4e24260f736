"""Shared fixtures: real hub and agent processes on free loopback ports, real SQLite files.

Tests that need PostgreSQL or NATS skip with a reason on a machine without them; with
``STORESYNC_REQUIRE_SERVICES=1`` (set by ``.ci/run``) such a skip fails the run instead.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from cloud_hub.storage.sqlite import SQLiteStorage
from storesync_harness.processes import Agent, Hub
from sync_protocol import keys

REQUIRE_SERVICES = os.environ.get("STORESYNC_REQUIRE_SERVICES") == "1"


def service_up(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


def require_service(name: str, host: str, port: int) -> None:
    """Skip (or, under CI, fail) when a backing service is not reachable."""
    if service_up(host, port):
        return
    reason = f"{name} is not reachable on {host}:{port}"
    if REQUIRE_SERVICES:
        pytest.fail(f"{reason} and STORESYNC_REQUIRE_SERVICES=1", pytrace=False)
    pytest.skip(reason)


@pytest.fixture
def hub(tmp_path: Path) -> Iterator[Hub]:
    """A running hub on SQLite in a temporary folder."""
    h = Hub.create(tmp_path / "hub").start()
    try:
        yield h
    finally:
        h.stop()


@pytest.fixture
def agent(tmp_path: Path, hub: Hub) -> Iterator[Agent]:
    """An agent enrolled as store S1 on ``hub``, running."""
    a = Agent.enrolled(tmp_path / "agent", hub, "S1").start()
    try:
        yield a
    finally:
        a.stop()


@pytest.fixture
def storage(tmp_path: Path) -> Iterator[SQLiteStorage]:
    """A hub database on SQLite in a temporary folder."""
    db = SQLiteStorage(tmp_path / "hub.db", busy_timeout_ms=2_000)
    yield db
    db.close()


@pytest.fixture
def hub_key() -> keys.Ed25519PrivateKey:
    """A fresh hub signing key."""
    return keys.generate()
