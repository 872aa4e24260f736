"""The agent store: the one package that owns the agent's SQLite file (``outbox.db``).

Nothing outside this package writes SQL against that file. What it offers:

- :class:`Outbox`: the read-write connection (capture, enrollment, sync state, receipts, bursts);
  the schema and its one migration runner are :mod:`.schema`.
- :func:`.records.append`: the ONE function that numbers, chains and signs records, used by live
  capture and by drop imports (:func:`.imports.store_chunk`) alike.
- Typed queries: :mod:`.imports` (drop imports), :mod:`.retention` (pruning), :mod:`.verify` (the
  chain walk), :mod:`.snapshot` (status), :mod:`.receipts` (the receipt check).
- :class:`StoreView`: the read-only view the store TUI reads agent state through.

Layering inside the package (lower never imports higher)::

    _db (plumbing, shared reads)  <-  schema, records, receipts, verify
        <-  imports, retention, snapshot  <-  outbox, view
"""

from __future__ import annotations

from ._db import BUSY_TIMEOUT_MS, Identity, Writer
from .outbox import CaptureResult, Outbox
from .records import Prepared, Stored, prepare, txn_digest
from .retention import PruneResult, prune
from .verify import VerifyReport
from .view import RecordRow, StoredRecord, StoreView

__all__ = [
    "BUSY_TIMEOUT_MS",
    "CaptureResult",
    "Identity",
    "Outbox",
    "Prepared",
    "PruneResult",
    "RecordRow",
    "Stored",
    "StoreView",
    "StoredRecord",
    "VerifyReport",
    "Writer",
    "prepare",
    "prune",
    "txn_digest",
]
