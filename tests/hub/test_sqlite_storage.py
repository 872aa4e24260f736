"""Guarantees of the SQLite adapter beyond the recorder contracts: raw-SQL immutability, WAL, migrations
once, the busy timeout, a closed storage."""

from __future__ import annotations

from pathlib import Path

import apsw
import pytest

from cloud_hub._exceptions import StorageBusy, StorageError
from cloud_hub.storage import Store
from cloud_hub.storage.sqlite import MIGRATIONS, SQLiteStorage

from .contract_support import T0, row, seed


def test_sqlite_ledger_is_immutable_even_to_raw_sql(tmp_path: Path):
    db = SQLiteStorage(tmp_path / "hub.db")
    with db.transaction() as tx:
        seed(tx)
        tx.insert_ledger([row(1)])
    db.close()
    conn = apsw.Connection(str(tmp_path / "hub.db"))
    with pytest.raises(apsw.ConstraintError, match="immutable"):
        conn.execute("UPDATE ledger SET body = 'x'")
    with pytest.raises(apsw.ConstraintError, match="immutable"):
        conn.execute("DELETE FROM ledger")
    assert conn.execute("PRAGMA journal_mode").fetchone() == ("wal",)
    conn.close()


def test_sqlite_reopen_does_not_reapply_migrations(tmp_path: Path):
    SQLiteStorage(tmp_path / "hub.db").close()
    db = SQLiteStorage(tmp_path / "hub.db")
    with db.snapshot() as tx:
        assert tx.list_stores() == []
    assert db.schema_version() == len(MIGRATIONS) == MIGRATIONS[-1][0] == SQLiteStorage.latest_schema
    db.close()


def test_sqlite_lock_held_past_the_busy_timeout_is_busy(tmp_path: Path):
    first = SQLiteStorage(tmp_path / "hub.db")
    second = SQLiteStorage(tmp_path / "hub.db", busy_timeout_ms=100)
    try:
        with first.transaction() as tx:
            tx.insert_store(Store("S1", "UTC", T0))
            with pytest.raises(StorageBusy) as info, second.transaction():
                pass
            assert info.value.status == 503 and info.value.headers() == {"Retry-After": "1"}
        with second.snapshot() as tx:
            assert tx.get_store("S1") is not None
    finally:
        first.close()
        second.close()


def test_closed_storage_refuses_work(tmp_path: Path):
    db = SQLiteStorage(tmp_path / "hub.db")
    db.close()
    with pytest.raises(StorageError), db.transaction():
        pass
