"""``edge-agent export``: this store's signed outbox records, by date range, for auditors.

Rows and formats are :mod:`sync_protocol.audit`'s (the same as ``cloud-hub ledger export``), checked
offline by ``storesync verify-export``. The outbox keeps records until a hub receipt covers them and
the retention period passes (30 days by default), so an agent export holds the recent records; the
hub's export holds the whole history.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

from sync_protocol import audit

from ._exceptions import ConfigError
from .store import StoreView


def rows(
    view: StoreView, *, store_id: str | None = None, date_from: str | None = None, date_to: str | None = None,
    epoch: int | None = None,
) -> Iterator[dict[str, Any]]:  # fmt: skip
    """Export rows of every writer epoch still in the outbox (or one).

    Raises:
        ConfigError: ``store_id`` is not this agent's store.
    """
    for writer in sorted(view.writers(), key=lambda w: w.epoch):
        if store_id is not None and writer.store_id != store_id:
            raise ConfigError(f"this agent is store {writer.store_id}, not {store_id}")
        if epoch is not None and writer.epoch != epoch:
            continue
        prev: bytes | None = None
        for seq, body, chain_value, sig, captured_at in view.records_of(writer.epoch):
            if prev is None:
                prev = view.chain_at(writer.epoch, seq - 1)
                if prev is None:  # pragma: no cover - the anchor row always exists
                    raise ConfigError(f"epoch {writer.epoch}: no chain value before seq {seq}")
            if audit.in_range(body, date_from, date_to):
                yield audit.row(
                    store_id=writer.store_id, epoch=writer.epoch, seq=seq, body=body, prev_chain=prev,
                    chain=chain_value, sig=sig, public_key=writer.public_key, received_at=captured_at,
                )  # fmt: skip
            prev = chain_value


def export(db_path: Path, out: Path, fmt: str, **filters: Any) -> int:
    """Write the export file from the outbox at ``db_path`` (opened read-only); returns the record count."""
    view = StoreView(db_path)
    try:
        return audit.write(out, fmt, rows(view, **filters))
    finally:
        view.close()
