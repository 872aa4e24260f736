"""Seeds shared by the recorder contract suites (interface calls only, no SQL)."""

from __future__ import annotations

from cloud_hub.storage import LedgerRecorder, LedgerRow, RegistryRecorder, Store, Writer

T0 = "2026-11-22T09:00:00.000Z"
T1 = "2026-11-22T10:00:00.000Z"


class _Seedable(RegistryRecorder, LedgerRecorder):
    """What :func:`seed` needs: the registry and the ledger recorder of one unit of work."""


def seed(tx: _Seedable, store_id: str = "S1", epoch: int = 1, key_id: str = "k1") -> None:
    if tx.get_store(store_id) is None:
        tx.insert_store(Store(store_id, "Europe/Berlin", T0))
    tx.insert_writer(Writer(store_id, epoch, key_id, "ab" * 32, T0, "till"))
    tx.create_stream(store_id, epoch, b"\x00" * 32)


def row(seq: int, store_id: str = "S1", epoch: int = 1) -> LedgerRow:
    body = f'{{"seq":{seq}}}'
    return LedgerRow(store_id, epoch, seq, body, bytes([seq % 256]) * 32, bytes([1]) * 32, bytes([2]) * 64, T1)
