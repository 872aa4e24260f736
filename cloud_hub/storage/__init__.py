"""The storage interface of the hub, independent of the database engine.

Ingest, registry and admin talk to a :class:`Storage` only through a unit of work::

    with storage.transaction() as tx:      # one write transaction (SQLite: BEGIN IMMEDIATE;
        stream = tx.get_stream(s, e)       #   PostgreSQL: SELECT ... FOR UPDATE on the stream row)
        ...
                                           # commit on normal exit, rollback on exception
    with storage.snapshot() as tx:         # read-only, consistent view
        tx.store_summaries()

Adapters: :mod:`cloud_hub.storage.sqlite` (embedded default). Every adapter must pass
``tests/hub/test_storage_contract.py`` and ``tests/hub/test_storage_contract_forwarding.py``. Timestamps
are ISO 8601 UTC strings made by :func:`iso_utc`; hashes and chain values are raw ``bytes``.
"""

from __future__ import annotations

import abc
from collections.abc import Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any


def iso_utc(moment: datetime) -> str:
    """ISO 8601 UTC with milliseconds and a ``Z`` suffix, e.g. ``2026-11-22T09:15:03.120Z``."""
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


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


DELIVERY_STATES = ("pending", "in_flight", "done", "dead", "skipped")


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
    """A record whose POS time was not trusted: ``used_time`` replaced ``pos_time`` (both as sent /
    as normalized), ``method`` is ``capture-fallback`` or ``file-fallback``, ``reason`` the flags."""

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
    """One delivery of ``events[event_index]`` (of the same :meth:`UnitOfWork.insert_events` call)."""

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


class UnitOfWork(abc.ABC):
    """Operations available inside one transaction. Writes are only valid in ``transaction()``."""

    # -- stores and enrollment -------------------------------------------------------------------------
    @abc.abstractmethod
    def get_store(self, store_id: str) -> Store | None: ...

    @abc.abstractmethod
    def insert_store(self, store: Store) -> None:
        """Add a store. Raises ``InputError`` when it exists."""

    @abc.abstractmethod
    def list_stores(self) -> list[Store]: ...

    @abc.abstractmethod
    def store_summaries(self) -> list[StoreSummary]:
        """Every store with its newest stream, ordered by ``store_id``."""

    @abc.abstractmethod
    def insert_token(self, token: EnrollmentToken) -> None: ...

    @abc.abstractmethod
    def get_token(self, token_hash: bytes) -> EnrollmentToken | None: ...

    @abc.abstractmethod
    def mark_token_used(self, token_hash: bytes, at: str) -> bool:
        """Mark a token used; False when it was already used (or is unknown)."""

    # -- writers ---------------------------------------------------------------------------------------
    @abc.abstractmethod
    def max_epoch(self, store_id: str) -> int:
        """Highest enrolled epoch of a store, 0 when none."""

    @abc.abstractmethod
    def insert_writer(self, writer: Writer) -> None:
        """Bind a key to ``(store_id, epoch)``. Raises ``InputError`` when the key id is taken."""

    @abc.abstractmethod
    def supersede_writers(self, store_id: str, below_epoch: int, at: str) -> int:
        """Set ``superseded_at`` on the store's writers of older epochs; returns how many changed."""

    @abc.abstractmethod
    def writer_by_key(self, key_id: str) -> Writer | None: ...

    @abc.abstractmethod
    def writers(self, store_id: str) -> list[Writer]: ...

    # -- streams and ledger ----------------------------------------------------------------------------
    @abc.abstractmethod
    def create_stream(self, store_id: str, epoch: int, head_chain: bytes) -> None: ...

    @abc.abstractmethod
    def get_stream(self, store_id: str, epoch: int) -> Stream | None:
        """The stream, locked against concurrent bursts until the transaction ends."""

    @abc.abstractmethod
    def streams(self, store_id: str) -> list[Stream]: ...

    @abc.abstractmethod
    def update_stream(
        self,
        store_id: str,
        epoch: int,
        *,
        acked_through: int,
        head_chain: bytes,
        last_seen_at: str,
        add_duplicates: int = 0,
        clock: dict[str, Any] | None = None,
        backlog: dict[str, Any] | None = None,
    ) -> None:
        """Advance a stream; a ``None`` clock or backlog keeps the stored one."""

    @abc.abstractmethod
    def ledger_hashes(self, store_id: str, epoch: int, from_seq: int, to_seq: int) -> dict[int, bytes]:
        """Body hashes of stored records ``from_seq..to_seq`` (inclusive), in one query."""

    @abc.abstractmethod
    def insert_ledger(self, rows: Sequence[LedgerRow]) -> None:
        """Append records; an existing ``(store_id, epoch, seq)`` is an error."""

    @abc.abstractmethod
    def ledger_page(self, store_id: str, epoch: int, after: int, limit: int) -> list[LedgerRow]:
        """Stored records with ``seq > after``, in seq order, at most ``limit``."""

    @abc.abstractmethod
    def record_conflict(
        self, store_id: str, epoch: int, seq: int, stored_hash: bytes, received_hash: bytes, at: str
    ) -> None: ...

    @abc.abstractmethod
    def record_refusal(self, store_id: str, epoch: int, seq: int, reason: str, at: str) -> None: ...

    @abc.abstractmethod
    def conflicts(self, store_id: str, epoch: int | None = None) -> list[Conflict]: ...

    @abc.abstractmethod
    def refusals(self, store_id: str, epoch: int | None = None) -> list[Refusal]: ...

    # -- forwarding: events and deliveries ------------------------------------------------------------
    @abc.abstractmethod
    def register_times(self, store_id: str, register_ids: Sequence[str]) -> dict[str, str]:
        """The last normalized ``occurred_at_utc`` of each given register that has one."""

    @abc.abstractmethod
    def set_register_times(self, store_id: str, times: dict[str, str]) -> None:
        """Upsert the last ``occurred_at_utc`` of registers."""

    @abc.abstractmethod
    def forward_cursor(self, store_id: str, epoch: int) -> int:
        """The last seq of a stream whose events are derived (0 when none)."""

    @abc.abstractmethod
    def set_forward_cursor(self, store_id: str, epoch: int, seq: int) -> None: ...

    @abc.abstractmethod
    def forward_lag(self) -> list[tuple[str, int, int, int]]:
        """``(store_id, epoch, derived_through, acked_through)`` of streams with records not yet
        derived, oldest epoch of each store first."""

    @abc.abstractmethod
    def insert_events(self, events: Sequence[NewEvent], deliveries: Sequence[NewDelivery]) -> None:
        """Store events and their pending deliveries (``created_at`` of the event); a repeated ``(source, id)``,
        or a second delivery of one event to the same sink, is a ``StorageError``."""

    @abc.abstractmethod
    def record_derive_error(self, store_id: str, epoch: int, seq: int, reason: str, at: str) -> None:
        """A stored record from which no event could be derived (kept for operators)."""

    @abc.abstractmethod
    def derive_errors(self, store_id: str | None = None, *, open_only: bool = False) -> list[DeriveError]:
        """Derive errors, oldest first; ``open_only`` leaves out the resolved ones."""

    @abc.abstractmethod
    def derive_error(self, error_id: int) -> DeriveError | None: ...

    @abc.abstractmethod
    def resolve_derive_error(self, error_id: int, at: str) -> bool:
        """Mark an open derive error resolved; False when it is unknown or already resolved."""

    # -- what an ERP books: stock movements to reverse, untrusted times ----------------------------------
    @abc.abstractmethod
    def record_stock_moves(self, moves: Sequence[StockMove]) -> None:
        """Upsert the movement of each ``(store_id, register_id, txn_id)`` (the newest record wins)."""

    @abc.abstractmethod
    def stock_moves(self, store_id: str, keys: Sequence[tuple[str, str]]) -> dict[tuple[str, str], StockMove]:
        """The recorded movements of the given ``(register_id, txn_id)`` keys of a store."""

    @abc.abstractmethod
    def record_time_fallbacks(self, rows: Sequence[TimeFallback]) -> None:
        """Append records whose time fell back (``id`` is ignored and assigned)."""

    @abc.abstractmethod
    def time_fallbacks(self, store_id: str | None = None, *, limit: int = 100) -> list[TimeFallback]:
        """The newest time fallbacks first, at most ``limit``."""

    @abc.abstractmethod
    def time_fallback_counts(self) -> dict[str, int]:
        """How many records of each store fell back."""

    @abc.abstractmethod
    def claim_deliveries(
        self, sink: str, *, strict: bool, now: float, lease_until: float, claim: str, limit: int
    ) -> list[Delivery]:
        """Mark due deliveries of a sink ``in_flight`` until ``lease_until`` under ``claim``; return them
        with their event text, ordered by lane then seq.

        Due: ``pending`` with ``next_attempt_at <= now``, or ``in_flight`` whose lease ran out. With
        ``strict`` only the oldest open delivery of a lane (per store, FIFO) may start a claim, a lane
        whose oldest open delivery is dead is parked, and a claim takes a prefix of each lane.
        (SQLite: one short ``BEGIN IMMEDIATE``; PostgreSQL: ``FOR UPDATE SKIP LOCKED`` on the rows, and
        on the lane head for strict sinks.)
        """

    @abc.abstractmethod
    def finish_deliveries(self, claim: str, updates: Sequence[DeliveryUpdate], at: str) -> int:
        """Apply results of a claim; rows no longer held by ``claim`` (lease expired and re-claimed)
        are left alone. Returns how many rows changed."""

    @abc.abstractmethod
    def list_deliveries(self, selector: DeliverySelector, *, after_id: int = 0, limit: int = 100) -> list[Delivery]:
        """Deliveries matching ``selector`` with ``id > after_id``, oldest first (without event text)."""

    @abc.abstractmethod
    def replay_deliveries(self, selector: DeliverySelector, now: float, at: str) -> int:
        """Make matching deliveries (not ``in_flight``) pending again, due now, attempts reset."""

    @abc.abstractmethod
    def skip_delivery(self, sink: str, event_id: str, at: str) -> bool:
        """Mark a dead or pending delivery ``skipped`` (it unparks a strict lane); False if none."""

    @abc.abstractmethod
    def sink_counts(self, *, include_done: bool = True) -> list[SinkCounts]:
        """Counts by state of every sink that has deliveries (``done``/``skipped`` only when asked)."""

    @abc.abstractmethod
    def open_by_store(self) -> dict[str, int]:
        """Pending and in-flight deliveries per store."""


class Storage(abc.ABC):
    """A hub database. Thread-safe: each call to ``transaction()`` may come from any thread."""

    @abc.abstractmethod
    def transaction(self) -> AbstractContextManager[UnitOfWork]:
        """One write transaction; commits on normal exit, rolls back on exception.

        Raises:
            StorageBusy: when the write lock is not obtained within the busy timeout.
        """

    @abc.abstractmethod
    def snapshot(self) -> AbstractContextManager[UnitOfWork]:
        """A read-only transaction with a consistent view."""

    @abc.abstractmethod
    def schema_version(self) -> int:
        """Highest applied migration."""

    @abc.abstractmethod
    def close(self) -> None: ...

    def __enter__(self) -> Storage:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def open_storage(url_or_path: str, *, busy_timeout_ms: int = 5_000) -> Storage:
    """Open an adapter: a file path or ``:memory:`` gives SQLite."""
    from .sqlite import SQLiteStorage

    return SQLiteStorage(url_or_path, busy_timeout_ms=busy_timeout_ms)


__all__ = [
    "DELIVERY_STATES",
    "Conflict",
    "DeriveError",
    "Delivery",
    "DeliverySelector",
    "DeliveryUpdate",
    "NewDelivery",
    "NewEvent",
    "SinkCounts",
    "EnrollmentToken",
    "LedgerRow",
    "Refusal",
    "StockMove",
    "Storage",
    "Store",
    "StoreSummary",
    "Stream",
    "TimeFallback",
    "UnitOfWork",
    "Writer",
    "iso_utc",
    "open_storage",
]
