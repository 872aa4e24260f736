"""Fixtures for the hub tests: a real SQLite file, a hub signing key, and the storage contract's adapters."""

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


@pytest.fixture(params=sorted(ADAPTERS))
def db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Storage]:
    """One storage per adapter in ``ADAPTERS`` (the contract tests run once for each)."""
    storage = ADAPTERS[request.param](tmp_path)
    yield storage
    storage.close()
