"""The one check of a hub receipt against this outbox (used by sync and by retention).

A receipt proves the hub holds our chain up to its ``acked_through``: it must name our store and
epoch, verify with the hub key learnt at enrollment, not go past our head, and carry exactly our
chain value at that seq (the genesis anchor for seq 0).
"""

from __future__ import annotations

from sync_protocol import chain as _chain
from sync_protocol import keys
from sync_protocol.wire import Receipt

from .._exceptions import BadReceipt
from ._db import Db, Identity


def check_receipt(db: Db, ident: Identity, receipt: Receipt, hub_key: keys.Ed25519PublicKey) -> None:
    """Check ``receipt`` against the outbox of ``ident``; returns only when every check passes.

    Raises:
        BadReceipt: naming the first check that failed.
    """
    if receipt.store_id != ident.store_id or receipt.epoch != ident.epoch:
        raise BadReceipt(f"receipt is for {receipt.store_id} epoch {receipt.epoch}, not ours")
    if not receipt.valid(hub_key):
        raise BadReceipt("receipt signature does not verify with the hub key from enrollment")
    head_seq, _ = db.head(ident.epoch)
    if receipt.acked_through > head_seq:
        raise BadReceipt(f"hub acknowledges seq {receipt.acked_through} but our outbox ends at seq {head_seq}")
    ours = db.chain_at(ident.epoch, receipt.acked_through)
    if receipt.acked_through == 0:
        ours = _chain.genesis(ident.store_id, ident.epoch)
    if ours is None or ours.hex() != receipt.chain:
        raise BadReceipt(f"receipt chain at seq {receipt.acked_through} differs from ours")
