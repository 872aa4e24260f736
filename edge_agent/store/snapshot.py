"""The status snapshot: everything :func:`edge_agent.status.compute_status` needs, read in one transaction."""

from __future__ import annotations

from typing import Any

from . import imports
from ._db import Db

BURSTS_FOR_RATE = 200
"""Newest bursts read for the catch-up rate (``edge_agent.status.catch_up``)."""


def read_snapshot(db: Db) -> dict[str, Any]:
    """Identity, head, oldest waiting record, sync state, drop imports and the newest bursts, as one picture."""
    with db.read():
        ident = db.identity()
        state = db.sync_state()
        last_seq = 0
        oldest = None
        if ident is not None:
            last_seq, _ = db.head(ident.epoch)
            oldest = db.oldest_pending_captured_at(ident.epoch, int(state.get("acked_through") or 0))
        block = imports.status_block(db)
        bursts = db.recent_bursts(BURSTS_FOR_RATE) if ident is not None and last_seq else []
    return {"identity": ident, "last_seq": last_seq, "oldest_pending_captured_at": oldest, "sync": state,
            "imports": block, "bursts": bursts}  # fmt: skip
