"""The values the hub's recorders store and return: plain frozen dataclasses, no engine types.

Timestamps are ISO 8601 UTC strings made by :func:`iso_utc`; hashes and chain values are raw ``bytes``;
delivery due times are Unix seconds (``float``).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sync_protocol.clock import iso


def iso_utc(moment: datetime) -> str:
    """ISO 8601 UTC with milliseconds and a ``Z`` suffix, e.g. ``2026-11-22T09:15:03.120Z`` (``clock.iso``)."""
    return iso(moment, z=True)


@dataclass(frozen=True, slots=True)
class Store:
    """A registered store."""

    store_id: str
    tz: str
    created_at: str


@dataclass(frozen=True, slots=True)
class EnrollmentToken:
    """A one-time enrollment token; only its SHA-256 is kept."""

    token_hash: bytes
    store_id: str
    created_at: str
    expires_at: str
    used_at: str | None = None


@dataclass(frozen=True, slots=True)
class Writer:
    """The key bound to one ``(store_id, epoch)``."""

    store_id: str
    epoch: int
    key_id: str
    public_key: str
    enrolled_at: str
    hostname: str = ""
    superseded_at: str | None = None


@dataclass(frozen=True, slots=True)
class Stream:
    """Progress of one writer: what the hub holds."""

    store_id: str
    epoch: int
    acked_through: int
    head_chain: bytes
    last_seen_at: str | None = None
    duplicates: int = 0
    clock: dict[str, Any] | None = None
    backlog: dict[str, Any] | None = None


@dataclass(frozen=True, slots=True)
class LedgerRow:
    """One immutable stored record, with the exact body string the agent signed."""

    store_id: str
    epoch: int
    seq: int
    body: str
    body_hash: bytes
    chain: bytes
    sig: bytes
    received_at: str


@dataclass(frozen=True, slots=True)
class Conflict:
    """A resent record whose body differs from the stored one."""

    id: int
    store_id: str
    epoch: int
    seq: int
    stored_hash: bytes
    received_hash: bytes
    detected_at: str


@dataclass(frozen=True, slots=True)
class Refusal:
    """A record the hub refused (422), with the reason."""

    id: int
    store_id: str
    epoch: int
    seq: int
    reason: str
    at: str


@dataclass(frozen=True, slots=True)
class StoreSummary:
    """One line of the store list: the store and its newest stream."""

    store_id: str
    tz: str
    epoch: int | None
    acked_through: int
    last_seen_at: str | None
    duplicates: int
    conflicts: int
    backlog: dict[str, Any] | None = None


DELIVERY_STATES = ("pending", "in_flight", "done", "dead", "skipped")


@dataclass(frozen=True, slots=True)
class NewEvent:
    """A derived CloudEvent to store: ``event_json`` is the exact text every sink receives."""

    source: str
    id: str
    store_id: str
    epoch: int
    seq: int
    type: str
    event_json: str
    created_at: str


@dataclass(frozen=True, slots=True)
class NewDelivery:
    """One delivery of ``events[event_index]`` (of the same :meth:`EventRecorder.insert_events` call)."""

    event_index: int
    sink: str
    lane: str
    next_attempt_at: float


@dataclass(frozen=True, slots=True)
class Delivery:
    """One (sink, event) delivery. ``next_attempt_at`` is Unix seconds: when a pending delivery is
    due, or when the lease of an ``in_flight`` one runs out."""

    id: int
    event_id: str
    sink: str
    store_id: str
    epoch: int
    seq: int
    lane: str
    state: str
    attempts: int
    next_attempt_at: float
    last_error: str | None
    created_at: str
    updated_at: str
    event_json: str = ""
    claim: str | None = None
    type: str = ""


@dataclass(frozen=True, slots=True)
class DeliveryUpdate:
    """The result of one claimed delivery: new state, whether an attempt was made, next due time."""

    id: int
    state: str
    attempted: bool
    next_attempt_at: float
    last_error: str | None = None


@dataclass(frozen=True, slots=True)
class DeliverySelector:
    """Which deliveries an operator means. Every given field must match.

    ``event_id`` (optionally with ``sink``), or ``sink`` with ``store_id`` and a seq range, or ``sink``
    with ``state`` (e.g. every dead letter of a sink).
    """

    sink: str | None = None
    event_id: str | None = None
    store_id: str | None = None
    from_seq: int | None = None
    to_seq: int | None = None
    state: str | None = None


@dataclass(frozen=True, slots=True)
class SinkCounts:
    """Delivery counts of one sink by state, and the creation time of its oldest pending delivery."""

    sink: str
    counts: dict[str, int]
    oldest_pending_at: str | None


@dataclass(frozen=True, slots=True)
class DeriveError:
    """A stored record from which no event could be derived. ``reason`` starts with a code
    (``invalid_transaction: ...``); ``resolved_at`` is set once an operator re-derived it."""

    id: int
    store_id: str
    epoch: int
    seq: int
    reason: str
    at: str
    resolved_at: str | None = None

    @property
    def code(self) -> str:
        """The reason's code (the text before the first colon)."""
        return self.reason.split(":", 1)[0].strip() or "unknown"


@dataclass(frozen=True, slots=True)
class StockMove:
    """The sellable-stock movement a transaction made (``adjustments`` as in its inventory event:
    ``[{"sku", "delta"}]``, possibly empty), kept so a later void can reverse it."""

    store_id: str
    register_id: str
    txn_id: str
    epoch: int
    seq: int
    event_id: str | None
    adjustments: list[dict[str, str]]


@dataclass(frozen=True, slots=True)
class TimeFallback:
    """A record whose POS time was not trusted: ``used_time`` (normalized UTC) replaced ``pos_time``
    (as sent); ``method`` is ``capture-fallback`` or ``file-fallback``, ``reason`` the flags."""

    id: int
    store_id: str
    epoch: int
    seq: int
    register_id: str
    txn_id: str
    pos_time: str
    used_time: str
    method: str
    reason: str
    at: str
