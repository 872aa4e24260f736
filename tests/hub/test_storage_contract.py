"""Contract of the :class:`~cloud_hub.storage.Storage` itself (migrations, transactions), for every adapter
in ``ADAPTERS`` (tests/hub/conftest.py). The recorders have their own suites: ``test_recorder_registry.py``,
``test_recorder_ledger.py``, ``test_recorder_events.py``."""

from __future__ import annotations

import pytest

from cloud_hub.storage import Storage, Store

from .contract_support import T0


def test_schema_is_migrated(db: Storage):
    assert db.latest_schema > 0
    assert db.schema_version() == db.latest_schema


def test_failed_transaction_is_rolled_back(db: Storage):
    with pytest.raises(RuntimeError), db.transaction() as tx:
        tx.insert_store(Store("S1", "UTC", T0))
        raise RuntimeError("boom")
    with db.snapshot() as tx:
        assert tx.get_store("S1") is None
