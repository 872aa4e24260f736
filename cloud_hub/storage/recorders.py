"""The hub's recorders: small abstract interfaces, one per concern, and the :class:`Storage` that opens them.

Split as the eventsourcing library splits its recorders: each interface is a contract of its own,
with its own suite in ``tests/hub/`` that every adapter runs (``test_recorder_registry.py``,
``test_recorder_ledger.py``, ``test_recorder_events.py``, ``test_recorder_bulk.py``; the transaction
itself in ``test_storage_contract.py``; two writers at once in ``test_two_writers.py``).

- :class:`RegistryRecorder`: stores, enrollment tokens, writers (store keys).
- :class:`LedgerRecorder`: streams, the immutable ledger, conflicts and refusals.
- :class:`EventRecorder`: derived events, their deliveries and lanes, cursors, sink statistics.
- :class:`BookRecorder`: what an ERP books beyond the events: stock movements a later void reverses,
  records whose time fell back.
- :class:`BulkRecorder`: whole tables in and out, for moving a hub to another engine.

One transaction spans them all (a burst stores ledger rows and their events atomically), so an
adapter's unit of work implements every recorder on one connection; :class:`UnitOfWork` is that
union. Code that needs only one concern types its argument with that recorder.
"""

from __future__ import annotations

import abc
import random
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any, TypeVar

from .._exceptions import StorageRetryable
from .records import (
    Conflict,
    Delivery,
    DeliverySelector,
    DeliveryUpdate,
    DeriveError,
    EnrollmentToken,
    LedgerRow,
    NewDelivery,
    NewEvent,
    Refusal,
    SinkCounts,
    StockMove,
    Store,
    StoreSummary,
    Stream,
    TimeFallback,
    Writer,
)

T = TypeVar("T")
RETRY_ATTEMPTS = 4
"""How often :meth:`Storage.run` runs a unit of work that hit a serialization failure or deadlock."""


class RegistryRecorder(abc.ABC):
    """Stores, one-time enrollment tokens and the writer keys bound to ``(store_id, epoch)``."""

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

    # writers
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


class LedgerRecorder(abc.ABC):
    """Streams (one per writer), the append-only ledger, and the conflicts and refusals of bursts."""

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


class EventRecorder(abc.ABC):
    """Derived events, their deliveries per sink and lane, derivation cursors and sink statistics."""

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
    def renew_claim(self, claim: str, lease_until: float) -> set[int]:
        """Restart the lease of the rows ``claim`` still holds (a prefetched claim, just before its sink
        call starts); returns their ids. Rows whose lease ran out and were claimed again are not held."""

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


class BookRecorder(abc.ABC):
    """Stock movements (so a void in a later burst or file reverses its sale) and untrusted times."""

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


class BulkRecorder(abc.ABC):
    """Whole tables, for ``cloud-hub storage copy`` (:mod:`cloud_hub.storage.copy`): rows as plain tuples,
    loaded with their ids. ``table``, ``columns`` and ``order`` come from that module's fixed list, never
    from input."""

    @abc.abstractmethod
    def table_rows(self, table: str, columns: Sequence[str], order: str) -> Iterator[tuple[Any, ...]]:
        """Every row of ``table`` in ``order``, streamed (valid while the transaction is open)."""

    @abc.abstractmethod
    def load_rows(
        self, table: str, columns: Sequence[str], rows: Iterable[tuple[Any, ...]], identity: str | None = None
    ) -> int:
        """Insert rows with the values given (ids too); then the ``identity`` column's next value follows
        the highest loaded id. Returns how many rows were loaded."""

    @abc.abstractmethod
    def row_count(self, table: str) -> int: ...


class UnitOfWork(RegistryRecorder, LedgerRecorder, EventRecorder, BookRecorder, BulkRecorder, abc.ABC):
    """Every recorder on one open transaction. Writes are only valid in :meth:`Storage.transaction`."""


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

    #: The highest migration this adapter knows; ``schema_version()`` equals it once migrated.
    latest_schema: int = 0
    #: The engine's name as in the storage URL scheme (``sqlite``, ``postgresql``).
    engine: str = ""
    #: Migrations this instance applied when it opened the database (empty when it was up to date).
    applied: list[int]

    @abc.abstractmethod
    def schema_version(self) -> int:
        """Highest applied migration."""

    @abc.abstractmethod
    def close(self) -> None: ...

    @abc.abstractmethod
    def backup(self, dest: Path) -> str:
        """Write a consistent copy of the whole database to ``dest`` while the hub keeps serving.

        SQLite: the online backup API (a ``.db`` file that opens as a hub database). PostgreSQL:
        ``pg_dump --format=custom`` of the hub's schema (restore with ``pg_restore``).

        Returns:
            What was written, for the operator (engine and format).

        Raises:
            StorageError: the copy failed; ``dest`` is not left half-written.
        """

    def run(self, work: Callable[[UnitOfWork], T], *, attempts: int = RETRY_ATTEMPTS) -> T:
        """``work(tx)`` in a write transaction, run again (after a short random pause) when the database
        refused it as a serialization failure or deadlock, at most ``attempts`` times in all.

        ``work`` must have no effect outside the transaction: it may run more than once.

        Raises:
            StorageRetryable: still conflicting after ``attempts`` runs (503 with ``Retry-After``).
        """
        for attempt in range(1, attempts + 1):
            try:
                with self.transaction() as tx:
                    return work(tx)
            except StorageRetryable:
                if attempt >= attempts:
                    raise
                time.sleep(random.uniform(0, 0.005 * 2**attempt))
        raise AssertionError("unreachable")  # pragma: no cover

    def __enter__(self) -> Storage:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
