"""Shared fixtures: real hub and agent processes on free loopback ports, real SQLite files.

Tests that need PostgreSQL or NATS skip with a reason on a machine without them; with
``STORESYNC_REQUIRE_SERVICES=1`` (set by ``.ci/run``) such a skip fails the run instead.
"""

from __future__ import annotations

import os
import secrets
import socket
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from cloud_hub.storage.sqlite import SQLiteStorage
from storesync_harness.processes import Agent, Hub
from sync_protocol import keys

REQUIRE_SERVICES = os.environ.get("STORESYNC_REQUIRE_SERVICES") == "1"

# The modules holding the tests that take 20 s or more on the 2-core machine, the longest first. They run
# before everything else: ``make test`` hands tests to the two workers one at a time (``--maxschedchunk 1``)
# in this order, so the long ones start early on both workers and the short ones fill in around them,
# instead of one worker being left alone with a minute-long test at the end of the run.
RUN_FIRST = (
    "tests/bench/test_bench_quick.py",
    "tests/installers/test_install_scratch.py",
    "tests/docs/test_readme_walkthrough.py",
    "tests/faults/test_harness_quick.py",
    "tests/faults/test_drop_trials.py",
    "tests/postgres/test_hub_on_postgres.py",
    "tests/faults/test_powerloss.py",
    "tests/faults/test_clock_steps.py",
    "tests/forwarding/test_delivery_e2e.py",
    "tests/e2e/",
    "tests/fleet/test_replica_kills.py",
    "tests/postgres/test_pg_backup_restore.py",
    "tests/agent/test_sync.py",
)
POSTGRES_URL = os.environ.get("STORESYNC_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test")
"""The test server (trust auth); each test gets a schema of its own in it, dropped afterwards."""


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Move the long tests' modules (:data:`RUN_FIRST`) to the front; the order is otherwise unchanged."""

    def rank(item: pytest.Item) -> int:
        path = item.nodeid.split("::", 1)[0]
        return next((i for i, prefix in enumerate(RUN_FIRST) if path.startswith(prefix)), len(RUN_FIRST))

    items.sort(key=rank)  # stable: within a module (and among the rest) collection order stays


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


def require_postgres() -> None:
    """Skip (or, under CI, fail) when the test PostgreSQL is not reachable."""
    parts = urlsplit(POSTGRES_URL)
    require_service("PostgreSQL", parts.hostname or "127.0.0.1", parts.port or 5432)


def drop_schema(schema: str) -> None:
    """Drop a test schema and everything in it."""
    import psycopg
    from psycopg import sql

    with psycopg.connect(POSTGRES_URL, autocommit=True, connect_timeout=5) as conn:
        conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A storage URL on the test PostgreSQL with a fresh, empty schema, dropped after the test."""
    require_postgres()
    schema = f"storesync_test_{os.getpid()}_{secrets.token_hex(4)}"
    try:
        yield f"{POSTGRES_URL}?schema={schema}"
    finally:
        drop_schema(schema)


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
