"""One connection to the agent's SQLite file, and the reads every part of the agent shares.

:class:`Db` is the base of :class:`edge_agent.store.Outbox` (the agent's read-write connection) and
:class:`edge_agent.store.StoreView` (the read-only view the TUI uses). It holds the plumbing (write
transactions, SQLite errors turned into :class:`StorageError`) and the typed reads of the identity,
the writer heads and the sync state. A ``Db`` must be used by one thread at a time.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Self

import apsw

from sync_protocol import keys
from sync_protocol.record import SignedRecord

from .._exceptions import DiskFull, NotEnrolled, StorageError

BUSY_TIMEOUT_MS = 5000

SYNC_COLUMNS = frozenset(
    {
        "acked_through",
        "receipt",
        "last_sync_at",
        "last_sync_result",
        "last_success_at",
        "last_error",
        "blocked",
        "clock",
        "heartbeat_at",
        "next_attempt_at",
        "failures",
        "burst_size",
    }
)
JSON_COLUMNS = frozenset({"receipt", "blocked", "clock"})
BURST_COLUMNS = ("at", "epoch", "first_seq", "last_seq", "count", "result", "http_status", "ms")


@dataclass(frozen=True)
class Identity:
    """Who this agent writes as, learnt at enrollment.

    Attributes:
        store_id: The store.
        epoch: The writer epoch the hub opened for our key.
        key_id: Our key id.
        public_key: Our public key, 64 hex digits.
        hub_url: Base URL of the hub; several replicas' URLs separated by spaces, in failover order.
        hub_public_key: The hub's receipt key, 64 hex digits.
        hub_key_id: Key id of the hub's receipt key.
        tz: The store's IANA time zone.
    """

    store_id: str
    epoch: int
    key_id: str
    public_key: str
    hub_url: str
    hub_public_key: str
    hub_key_id: str
    tz: str

    @property
    def hub_urls(self) -> tuple[str, ...]:
        """The hub URLs in failover order."""
        return tuple(u.rstrip("/") for u in self.hub_url.split())


@dataclass(frozen=True)
class Writer:
    """One writer epoch's row: its key, the anchor (last pruned record) and the head (last record)."""

    epoch: int
    store_id: str
    public_key: str
    anchor_seq: int
    anchor_chain: bytes
    head_seq: int
    head_chain: bytes


def storage_error(exc: apsw.Error) -> StorageError:
    """The agent error for a SQLite failure."""
    if isinstance(exc, apsw.FullError):
        return DiskFull("disk is full: the outbox cannot take more records")
    return StorageError(f"outbox database unavailable ({type(exc).__name__}: {exc})")


class Db:
    """Plumbing and shared reads over one SQLite connection (opened by a subclass)."""

    path: Path
    conn: apsw.Connection
    _key: keys.Ed25519PrivateKey | None = None

    @property
    def signing_key(self) -> keys.Ed25519PrivateKey | None:
        """The writer's signing key, when this connection may store records."""
        return self._key

    # -- plumbing -------------------------------------------------------------------------------

    def close(self) -> None:
        self.conn.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def _write(self) -> Iterator[apsw.Connection]:
        """A ``BEGIN IMMEDIATE`` transaction; SQLite errors become :class:`StorageError`."""
        try:
            self.conn.execute("BEGIN IMMEDIATE")
        except apsw.Error as exc:
            raise storage_error(exc) from None
        try:
            yield self.conn
            self.conn.execute("COMMIT")
        except BaseException as exc:
            if self.conn.in_transaction:
                self.conn.execute("ROLLBACK")
            if isinstance(exc, apsw.Error):
                raise storage_error(exc) from None
            raise

    def transaction(self) -> AbstractContextManager[apsw.Connection]:
        """A ``BEGIN IMMEDIATE`` transaction (for the store's own modules)."""
        return self._write()

    def read(self) -> AbstractContextManager[Any]:
        """One read transaction: everything read inside it is one consistent picture."""
        return self.conn

    def _one(self, sql: str, args: Sequence[Any] = ()) -> Any:
        try:
            return self.conn.execute(sql, args).fetchone()
        except apsw.Error as exc:
            raise storage_error(exc) from None

    def query(self, sql: str, args: Sequence[Any] = ()) -> list[Any]:
        """All rows of a read query; SQLite errors become :class:`StorageError` (store modules and tests)."""
        try:
            return self.conn.execute(sql, args).fetchall()
        except apsw.Error as exc:
            raise storage_error(exc) from None

    def iterate(self, sql: str, args: Sequence[Any] = ()) -> Iterator[Any]:
        """Rows of a read query one at a time (for walks over the whole outbox)."""
        try:
            yield from self.conn.cursor().execute(sql, args)
        except apsw.Error as exc:
            raise storage_error(exc) from None

    def schema_version(self) -> int:
        row = self._one("SELECT max(version) FROM schema_migrations")
        return int(row[0]) if row and row[0] is not None else 0

    # -- identity and writers -------------------------------------------------------------------

    def identity(self) -> Identity | None:
        """The enrolled identity, or None before enrollment."""
        meta: dict[str, str] = dict(self.query("SELECT key, value FROM meta"))
        if "store_id" not in meta or "epoch" not in meta:
            return None
        row = self._one("SELECT public_key FROM writers WHERE epoch = ?", (int(meta["epoch"]),))
        return Identity(
            store_id=meta["store_id"],
            epoch=int(meta["epoch"]),
            key_id=meta.get("key_id", ""),
            public_key=row[0] if row else "",
            hub_url=meta.get("hub_url", ""),
            hub_public_key=meta.get("hub_public_key", ""),
            hub_key_id=meta.get("hub_key_id", ""),
            tz=meta.get("tz", ""),
        )

    def require_identity(self) -> Identity:
        """The enrolled identity.

        Raises:
            NotEnrolled: before enrollment.
        """
        ident = self.identity()
        if ident is None:
            raise NotEnrolled()
        return ident

    def writers(self) -> list[Writer]:
        """Every writer epoch, oldest first."""
        rows = self.query(
            "SELECT epoch, store_id, public_key, anchor_seq, anchor_chain, head_seq, head_chain FROM writers "
            "ORDER BY epoch"
        )
        return [Writer(int(e), s, p, int(a), bytes(ac), int(h), bytes(hc)) for e, s, p, a, ac, h, hc in rows]

    def writer(self, epoch: int) -> Writer | None:
        """One writer epoch, or None."""
        return next((w for w in self.writers() if w.epoch == epoch), None)

    def bounds(self, epoch: int) -> tuple[int, int]:
        """``(anchor_seq, head_seq)`` of an epoch: its records are ``anchor_seq + 1 .. head_seq``; (0, 0) if unknown."""
        row = self._one("SELECT anchor_seq, head_seq FROM writers WHERE epoch = ?", (epoch,))
        return (int(row[0]), int(row[1])) if row else (0, 0)

    def head(self, epoch: int | None = None) -> tuple[int, bytes]:
        """``(last_seq, chain[last_seq])`` of an epoch (the current one by default)."""
        if epoch is None:
            ident = self.identity()
            if ident is None:
                return 0, b""
            epoch = ident.epoch
        row = self._one("SELECT head_seq, head_chain FROM writers WHERE epoch = ?", (epoch,))
        return (int(row[0]), bytes(row[1])) if row else (0, b"")

    def chain_at(self, epoch: int, seq: int) -> bytes | None:
        """The chain value at ``seq`` (the anchor's when ``seq`` is the anchor), or None."""
        row = self._one("SELECT chain FROM outbox WHERE epoch = ? AND seq = ?", (epoch, seq))
        if row is not None:
            return bytes(row[0])
        anchor = self._one("SELECT anchor_seq, anchor_chain FROM writers WHERE epoch = ?", (epoch,))
        if anchor is not None and int(anchor[0]) == seq:
            return bytes(anchor[1])
        return None

    # -- records --------------------------------------------------------------------------------

    def pending(self, after_seq: int, limit: int) -> list[SignedRecord]:
        """Up to ``limit`` records of the current epoch after ``after_seq``, in seq order."""
        ident = self.require_identity()
        rows = self.query(
            "SELECT seq, body, chain, sig FROM outbox WHERE epoch = ? AND seq > ? ORDER BY seq LIMIT ?",
            (ident.epoch, after_seq, limit),
        )
        return [SignedRecord(int(s), b, bytes(c), bytes(g)) for s, b, c, g in rows]

    def lookup(self, register_id: str, txn_id: str) -> tuple[int, int] | None:
        """``(epoch, seq)`` of a stored transaction, or None."""
        row = self._one("SELECT epoch, seq FROM outbox WHERE register_id = ? AND txn_id = ?", (register_id, txn_id))
        return (int(row[0]), int(row[1])) if row else None

    def count(self) -> int:
        row = self._one("SELECT count(*) FROM outbox")
        return int(row[0]) if row else 0

    def oldest_pending_captured_at(self, epoch: int, acked_through: int) -> str | None:
        """``captured_at`` of the first record after ``acked_through``, or None when nothing waits."""
        row = self._one(
            "SELECT captured_at FROM outbox WHERE epoch = ? AND seq > ? ORDER BY seq LIMIT 1", (epoch, acked_through)
        )
        return row[0] if row else None

    # -- sync state -----------------------------------------------------------------------------

    def sync_state(self) -> dict[str, Any]:
        """The sync state row, JSON columns decoded."""
        cols = sorted(SYNC_COLUMNS)
        row = self._one(f"SELECT {', '.join(cols)} FROM sync_state WHERE id = 1")
        state = dict(zip(cols, row or (), strict=False))
        for col in JSON_COLUMNS:
            if state.get(col):
                state[col] = json.loads(state[col])
        return state

    def acked_through(self) -> int:
        row = self._one("SELECT acked_through FROM sync_state WHERE id = 1")
        return int(row[0]) if row else 0

    def recent_bursts(self, limit: int = 20) -> list[dict[str, Any]]:
        """The newest bursts first."""
        rows = self.query(f"SELECT {', '.join(BURST_COLUMNS)} FROM bursts ORDER BY id DESC LIMIT ?", (limit,))
        return [dict(zip(BURST_COLUMNS, row, strict=True)) for row in rows]
