"""Fixtures for the hub tests: the storage contract's engines (SQLite file and memory, real PostgreSQL)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from cloud_hub.storage import Storage
from cloud_hub.storage.sqlite import SQLiteStorage

# Every adapter must pass the contract suites (test_storage_contract.py, test_recorder_*.py): add a factory here.
ADAPTERS: dict[str, Callable[[Path], Storage]] = {
    "sqlite-file": lambda tmp: SQLiteStorage(tmp / "hub.db", busy_timeout_ms=2_000),
    "sqlite-memory": lambda tmp: SQLiteStorage(":memory:"),
}


ENGINES = [*sorted(ADAPTERS), "postgresql"]


@pytest.fixture(params=ENGINES)
def db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Storage]:
    """One storage per engine: SQLite file, SQLite memory, and PostgreSQL in a fresh schema of the test
    server (skipped when it is not reachable, a failure under ``STORESYNC_REQUIRE_SERVICES=1``)."""
    if request.param == "postgresql":
        from cloud_hub.storage.postgres import PostgresStorage

        url = request.getfixturevalue("postgres_url")
        storage: Storage = PostgresStorage(url, busy_timeout_ms=2_000, pool_size=6)
    else:
        storage = ADAPTERS[request.param](tmp_path)
    yield storage
    storage.close()
