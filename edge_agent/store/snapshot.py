"""The status snapshot: everything :func:`edge_agent.status.compute_status` needs, read in one transaction."""

from __future__ import annotations

from typing import Any

from . import imports
from ._db import Db


def read_snapshot(db: Db) -> dict[str, Any]:
    """Identity, head, oldest waiting record, sync state and drop imports, as one consistent picture."""
    with db.read():
        ident = db.identity()
        state = db.sync_state()
        last_seq = 0
        oldest = None
        if ident is not None:
            last_seq, _ = db.head(ident.epoch)
            oldest = db.oldest_pending_captured_at(ident.epoch, int(state.get("acked_through") or 0))
        block = imports.status_block(db)
    return {"identity": ident, "last_seq": last_seq, "oldest_pending_captured_at": oldest, "sync": state,
            "imports": block}  # fmt: skip
