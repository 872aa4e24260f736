"""Fixtures for the hub tests: a real SQLite file and a hub signing key."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from cloud_hub.storage.sqlite import SQLiteStorage
from sync_protocol import keys


@pytest.fixture
def storage(tmp_path: Path) -> Iterator[SQLiteStorage]:
    db = SQLiteStorage(tmp_path / "hub.db", busy_timeout_ms=2_000)
    yield db
    db.close()


@pytest.fixture
def hub_key() -> keys.Ed25519PrivateKey:
    return keys.generate()
