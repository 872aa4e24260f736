"""Read-only views for the admin API (protocol.md §8) and the ``cloud-hub stores`` command."""

from __future__ import annotations

import time
from typing import Any

from sync_protocol.cards import mask_pans

from ._exceptions import InputError, NotFound
from .books import store_extras
from .storage import Storage, StoreSummary

MAX_LEDGER_PAGE = 10_000


def summary_dict(s: StoreSummary) -> dict[str, Any]:
    """One store line as JSON."""
    return {
        "store_id": s.store_id,
        "tz": s.tz,
        "epoch": s.epoch,
        "acked_through": s.acked_through,
        "last_seen_at": s.last_seen_at,
        "duplicates": s.duplicates,
        "conflicts": s.conflicts,
        **health(s),
    }


def health(s: StoreSummary) -> dict[str, Any]:
    """What the store's agent last reported about its own health (protocol.md §5): ``blocked`` is its
    reason code (``outbox_damaged``) while its sync is blocked, else None."""
    backlog = s.backlog or {}
    reason = backlog.get("blocked_reason")
    return {
        "blocked": backlog.get("blocked"),
        "blocked_reason": mask_pans(str(reason)) if reason and backlog.get("blocked") else None,
        "blocked_seq": backlog.get("blocked_seq") if backlog.get("blocked") else None,
    }


def health_text(s: StoreSummary) -> str:
    """``ok``, or ``blocked: <reason>`` as the agent reported it (the fleet table's AGENT column)."""
    h = health(s)
    return f"blocked: {h['blocked_reason'] or h['blocked']}" if h["blocked"] else "ok"


def stores_view(storage: Storage) -> dict[str, Any]:
    """``{"stores": [...]}``: every store with its newest epoch's progress, the agent's backlog as last
    reported (``backlog``, ``oldest_pending_age_s``), ``sync_lag_s``, and its open ``derive_errors``
    and ``time_fallbacks`` (cloud_hub.books)."""
    with storage.snapshot() as tx:
        summaries = tx.store_summaries()
    extras = store_extras(storage, time.time())
    return {"stores": [{**summary_dict(s), **extras.get(s.store_id, {})} for s in summaries]}


def store_view(storage: Storage, store_id: str) -> dict[str, Any]:
    """A store with every stream (epoch): progress, head, clock, conflicts and refusals.

    Raises:
        NotFound: no such store.
    """
    with storage.snapshot() as tx:
        store = tx.get_store(store_id)
        if store is None:
            raise NotFound(f"no store {store_id}")
        writers = {w.epoch: w for w in tx.writers(store_id)}
        conflicts = tx.conflicts(store_id)
        refusals = tx.refusals(store_id)
        streams = []
        for st in tx.streams(store_id):
            w = writers.get(st.epoch)
            streams.append(
                {
                    "epoch": st.epoch,
                    "key_id": w.key_id if w else None,
                    "hostname": w.hostname if w else None,
                    "enrolled_at": w.enrolled_at if w else None,
                    "superseded_at": w.superseded_at if w else None,
                    "acked_through": st.acked_through,
                    "head_chain": st.head_chain.hex(),
                    "last_seen_at": st.last_seen_at,
                    "duplicates": st.duplicates,
                    "clock": st.clock,
                    "conflicts": [
                        {
                            "seq": c.seq,
                            "stored_hash": c.stored_hash.hex(),
                            "received_hash": c.received_hash.hex(),
                            "detected_at": c.detected_at,
                        }
                        for c in conflicts
                        if c.epoch == st.epoch
                    ],
                    "refusals": [
                        {"seq": r.seq, "reason": r.reason, "at": r.at} for r in refusals if r.epoch == st.epoch
                    ],
                }
            )
    return {"store_id": store.store_id, "tz": store.tz, "created_at": store.created_at, "streams": streams}


def ledger_view(
    storage: Storage, store_id: str, *, epoch: int | None = None, after: int = 0, limit: int = 100
) -> dict[str, Any]:
    """A page of stored records of one epoch (default: the newest), ``seq > after``.

    Raises:
        InputError: ``limit`` outside 1..10,000 or negative ``after``.
        NotFound: no such store or epoch.
    """
    if not 1 <= limit <= MAX_LEDGER_PAGE:
        raise InputError(f"limit must be between 1 and {MAX_LEDGER_PAGE}", field="limit")
    if after < 0:
        raise InputError("after must be 0 or more", field="after")
    with storage.snapshot() as tx:
        if tx.get_store(store_id) is None:
            raise NotFound(f"no store {store_id}")
        if epoch is None:
            epoch = tx.max_epoch(store_id)
        if tx.get_stream(store_id, epoch) is None:
            raise NotFound(f"store {store_id} has no epoch {epoch}")
        rows = tx.ledger_page(store_id, epoch, after, limit)
    return {
        "store_id": store_id,
        "epoch": epoch,
        "records": [
            {"seq": r.seq, "body": r.body, "chain": r.chain.hex(), "sig": r.sig.hex(), "received_at": r.received_at}
            for r in rows
        ],
    }
