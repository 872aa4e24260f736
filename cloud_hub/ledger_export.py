"""``cloud-hub ledger export``: a store's signed ledger records, by date range, for auditors.

Rows and formats are :mod:`sync_protocol.audit`'s; ``storesync verify-export`` checks them offline.
Each writer (epoch) of the store is read in seq order through the storage's ``ledger_page``, so the
chain value before every exported record is known even when a date range skips records.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

from sync_protocol import audit
from sync_protocol import chain as _chain

from ._exceptions import NotFound
from .storage import Storage

PAGE = 2000


def rows(
    storage: Storage, store_id: str, *, date_from: str | None = None, date_to: str | None = None,
    epoch: int | None = None,
) -> Iterator[dict[str, Any]]:  # fmt: skip
    """Export rows of ``store_id`` (every epoch, or one), sales dated within the range.

    Raises:
        NotFound: no such store.
    """
    with storage.snapshot() as tx:
        if tx.get_store(store_id) is None:
            raise NotFound(f"no store {store_id!r} on this hub")
        writers = sorted(tx.writers(store_id), key=lambda w: w.epoch)
    for writer in writers:
        if epoch is not None and writer.epoch != epoch:
            continue
        prev = _chain.genesis(store_id, writer.epoch)
        after = 0
        while True:
            with storage.snapshot() as tx:
                page = tx.ledger_page(store_id, writer.epoch, after, PAGE)
            if not page:
                break
            for rec in page:
                if audit.in_range(rec.body, date_from, date_to):
                    yield audit.row(
                        store_id=store_id, epoch=rec.epoch, seq=rec.seq, body=rec.body, prev_chain=prev,
                        chain=bytes(rec.chain), sig=bytes(rec.sig), public_key=writer.public_key,
                        received_at=rec.received_at,
                    )  # fmt: skip
                prev = bytes(rec.chain)
            after = page[-1].seq


def export(
    storage: Storage, store_id: str, path: Path, fmt: str, *, date_from: str | None = None,
    date_to: str | None = None, epoch: int | None = None,
) -> int:  # fmt: skip
    """Write the export file; returns the number of records."""
    return audit.write(path, fmt, rows(storage, store_id, date_from=date_from, date_to=date_to, epoch=epoch))
