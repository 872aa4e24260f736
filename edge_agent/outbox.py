"""The signed outbox: every accepted transaction as one chained, signed SQLite row.

One SQLite file (WAL, ``synchronous=FULL``) holds the store identity (``meta``), one row per writer
epoch (``writers``: its key, chain anchor and head), the records (``outbox``), the sync state
(``sync_state``, one row) and a log of bursts for the TUI (``bursts``). The commit of a capture is
the acknowledgement to the POS, so a record that was acknowledged survives ``kill -9``.

An :class:`Outbox` wraps one connection and must be used by one thread at a time; the agent opens
one per thread (capture writer, sync job, status reader).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import apsw

from sync_protocol import chain as _chain
from sync_protocol import keys
from sync_protocol.record import SignedRecord, make_body, seal
from sync_protocol.transaction import Transaction
from sync_protocol.wire import Receipt

from ._exceptions import (
    AgentError,
    BadReceipt,
    CaptureConflict,
    ConfigError,
    DiskFull,
    NotEnrolled,
    StorageError,
)
from .drops.ledger import IMPORTS_SQL, status_block

if TYPE_CHECKING:
    from .verify import VerifyReport

BUSY_TIMEOUT_MS = 5000
BURST_LOG_KEEP = 1000

MIGRATIONS: list[tuple[int, str, str]] = [
    (
        1,
        "initial",
        """
        CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
        CREATE TABLE writers (
            epoch INTEGER PRIMARY KEY,
            store_id TEXT NOT NULL,
            key_id TEXT NOT NULL,
            public_key TEXT NOT NULL,
            enrolled_at TEXT NOT NULL,
            anchor_seq INTEGER NOT NULL DEFAULT 0,
            anchor_chain BLOB NOT NULL,
            head_seq INTEGER NOT NULL DEFAULT 0,
            head_chain BLOB NOT NULL
        );
        CREATE TABLE outbox (
            epoch INTEGER NOT NULL,
            seq INTEGER NOT NULL,
            register_id TEXT NOT NULL,
            txn_id TEXT NOT NULL,
            kind TEXT NOT NULL,
            captured_at TEXT NOT NULL,
            origin TEXT NOT NULL,
            body TEXT NOT NULL,
            txn_hash TEXT NOT NULL,
            chain BLOB NOT NULL,
            sig BLOB NOT NULL,
            PRIMARY KEY (epoch, seq),
            UNIQUE (register_id, txn_id)
        );
        CREATE TABLE sync_state (
            id INTEGER PRIMARY KEY CHECK (id = 1),
            acked_through INTEGER NOT NULL DEFAULT 0,
            receipt TEXT,
            last_sync_at TEXT,
            last_sync_result TEXT NOT NULL DEFAULT 'never',
            last_success_at TEXT,
            last_error TEXT,
            blocked TEXT,
            clock TEXT,
            heartbeat_at TEXT,
            next_attempt_at TEXT,
            failures INTEGER NOT NULL DEFAULT 0,
            burst_size INTEGER
        );
        INSERT INTO sync_state (id) VALUES (1);
        CREATE TABLE bursts (
            id INTEGER PRIMARY KEY,
            at TEXT NOT NULL,
            epoch INTEGER,
            first_seq INTEGER,
            last_seq INTEGER,
            count INTEGER NOT NULL,
            result TEXT NOT NULL,
            http_status INTEGER,
            ms REAL
        );
        """,
    ),
    (2, "imports", IMPORTS_SQL),  # drop-file imports, see edge_agent.drops.ledger
]

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
_JSON_COLUMNS = frozenset({"receipt", "blocked", "clock"})
_META_KEYS = ("store_id", "epoch", "key_id", "hub_url", "hub_public_key", "hub_key_id", "tz")


def now_local() -> str:
    """Agent local time with offset and milliseconds, as stored in ``captured_at``."""
    return datetime.now().astimezone().isoformat(timespec="milliseconds")


def now_utc() -> str:
    """UTC time with milliseconds, for sync bookkeeping."""
    return datetime.now(UTC).isoformat(timespec="milliseconds")


def txn_hash(txn: Transaction) -> str:
    """SHA-256 (hex) of the canonical transaction: what idempotency compares."""
    return hashlib.sha256(txn.canonical_json().encode("utf-8")).hexdigest()


def _body_txn_hash(body: str, txn: Transaction) -> str:
    """:func:`txn_hash` taken from a fresh canonical body, whose ``txn`` member is the canonical txn.

    In canonical JSON the keys are sorted, so the body ends with ``"txn":{...},"v":1}``, and a quote
    inside a string is always escaped, so the first ``,"txn":`` is the key itself.
    """
    start = body.find(_TXN_KEY)
    if start < 0 or not body.endswith(_BODY_TAIL):
        return txn_hash(txn)
    return hashlib.sha256(body[start + len(_TXN_KEY) : -len(_BODY_TAIL)].encode("utf-8")).hexdigest()


_TXN_KEY = ',"txn":'
_BODY_TAIL = ',"v":1}'


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
class CaptureResult:
    """Outcome of storing one transaction: its seq, and whether it was already stored."""

    seq: int
    duplicate: bool


def _storage_error(exc: apsw.Error) -> StorageError:
    if isinstance(exc, apsw.FullError):
        return DiskFull("disk is full: the outbox cannot take more records")
    return StorageError(f"outbox database unavailable ({type(exc).__name__}: {exc})")


class Outbox:
    """One connection to the outbox database.

    Args:
        path: The ``outbox.db`` file; created with its schema when missing (unless ``create`` is False).
        key: The signing key; required for capture.
        create: Create the file when missing.
        durable: ``synchronous=FULL`` (every commit is flushed to disk before it returns). Capture
            connections must be durable: their commit is the POS's acknowledgement. Bookkeeping
            connections (sync state, heartbeat) pass False: losing their last commits in a power cut
            only makes the agent resend records the hub answers as duplicates, and the next durable
            commit on any connection flushes the shared WAL, theirs included. This keeps fsyncs,
            and the write lock they hold, off the POS's path while a backlog syncs.

    Raises:
        ConfigError: when the file is missing and ``create`` is False.
        StorageError: when SQLite cannot open the file.
    """

    def __init__(
        self, path: Path, *, key: keys.Ed25519PrivateKey | None = None, create: bool = True, durable: bool = True
    ) -> None:
        if not create and not path.exists():
            raise ConfigError(f"no outbox at {path}; run 'edge-agent init' first")
        self.path = path
        self._key = key
        self._key_id = keys.key_id(key) if key is not None else None
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            self.conn = apsw.Connection(str(path))
            self.conn.set_busy_timeout(BUSY_TIMEOUT_MS)
            self.conn.execute("PRAGMA journal_mode=WAL")
            self.conn.execute("PRAGMA synchronous=FULL" if durable else "PRAGMA synchronous=NORMAL")
            self._migrate()
        except apsw.Error as exc:
            raise _storage_error(exc) from None

    # -- plumbing -------------------------------------------------------------------------------

    def close(self) -> None:
        self.conn.close()

    def __enter__(self) -> Outbox:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def _write(self) -> Iterator[apsw.Connection]:
        """A ``BEGIN IMMEDIATE`` transaction; SQLite errors become :class:`StorageError`."""
        try:
            self.conn.execute("BEGIN IMMEDIATE")
        except apsw.Error as exc:
            raise _storage_error(exc) from None
        try:
            yield self.conn
            self.conn.execute("COMMIT")
        except BaseException as exc:
            if self.conn.in_transaction:
                self.conn.execute("ROLLBACK")
            if isinstance(exc, apsw.Error):
                raise _storage_error(exc) from None
            raise

    def transaction(self) -> AbstractContextManager[apsw.Connection]:
        """A ``BEGIN IMMEDIATE`` transaction for work stored together with records (drop imports)."""
        return self._write()

    @property
    def signing_key(self) -> keys.Ed25519PrivateKey | None:
        return self._key

    def _one(self, sql: str, args: Sequence[Any] = ()) -> Any:
        try:
            return self.conn.execute(sql, args).fetchone()
        except apsw.Error as exc:
            raise _storage_error(exc) from None

    def query(self, sql: str, args: Sequence[Any] = ()) -> list[Any]:
        """All rows of a read query; SQLite errors become :class:`StorageError`."""
        try:
            return self.conn.execute(sql, args).fetchall()
        except apsw.Error as exc:
            raise _storage_error(exc) from None

    def _migrate(self) -> None:
        self.conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations "
            "(version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at TEXT NOT NULL)"
        )
        done = {row[0] for row in self.conn.execute("SELECT version FROM schema_migrations")}
        for version, name, sql in MIGRATIONS:
            if version in done:
                continue
            with self._write() as conn:
                if conn.execute("SELECT 1 FROM schema_migrations WHERE version = ?", (version,)).fetchone():
                    continue  # another process applied it meanwhile
                conn.execute(sql)
                conn.execute(
                    "INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)",
                    (version, name, now_utc()),
                )

    def iterate(self, sql: str, args: Sequence[Any] = ()) -> Iterator[Any]:
        """Rows of a read query one at a time (for walks over the whole outbox)."""
        try:
            yield from self.conn.cursor().execute(sql, args)
        except apsw.Error as exc:
            raise _storage_error(exc) from None

    def schema_version(self) -> int:
        row = self._one("SELECT max(version) FROM schema_migrations")
        return int(row[0]) if row and row[0] is not None else 0

    # -- identity -------------------------------------------------------------------------------

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

    def set_identity(self, ident: Identity) -> None:
        """Store the identity from an enrollment and open its writer epoch.

        A new epoch starts at seq 1 from its genesis anchor, with ``acked_through`` 0 and no receipt.
        Setting the same epoch again only refreshes the hub details.
        """
        with self._write() as conn:
            values = {
                "store_id": ident.store_id,
                "epoch": str(ident.epoch),
                "key_id": ident.key_id,
                "hub_url": ident.hub_url,
                "hub_public_key": ident.hub_public_key,
                "hub_key_id": ident.hub_key_id,
                "tz": ident.tz,
            }
            old = conn.execute("SELECT value FROM meta WHERE key = 'epoch'").fetchone()
            conn.executemany("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", list(values.items()))
            known = conn.execute("SELECT store_id FROM writers WHERE epoch = ?", (ident.epoch,)).fetchone()
            if known is None:
                anchor = _chain.genesis(ident.store_id, ident.epoch)
                conn.execute(
                    "INSERT INTO writers (epoch, store_id, key_id, public_key, enrolled_at, anchor_seq, "
                    "anchor_chain, head_seq, head_chain) VALUES (?, ?, ?, ?, ?, 0, ?, 0, ?)",
                    (ident.epoch, ident.store_id, ident.key_id, ident.public_key, now_utc(), anchor, anchor),
                )
            if old is None or int(old[0]) != ident.epoch:
                conn.execute(
                    "UPDATE sync_state SET acked_through = 0, receipt = NULL, blocked = NULL, last_error = NULL, "
                    "next_attempt_at = NULL, failures = 0, last_sync_result = 'never'"
                )

    def set_hub_url(self, url: str) -> None:
        """Point the agent at another hub URL (same store and epoch)."""
        with self._write() as conn:
            conn.execute("INSERT OR REPLACE INTO meta (key, value) VALUES ('hub_url', ?)", (url,))

    # -- capture --------------------------------------------------------------------------------

    def capture(self, txn: Transaction, origin: str = "api") -> CaptureResult:
        """Store one validated transaction; see :meth:`capture_batch`.

        Raises:
            NotEnrolled, CaptureConflict, StorageError: as the single result of the batch.
        """
        result = self.capture_batch([(txn, origin)])[0]
        if isinstance(result, AgentError):
            raise result
        return result

    def capture_batch(self, items: Sequence[tuple[Transaction, str]]) -> list[CaptureResult | AgentError]:
        """Store validated transactions in ONE ``BEGIN IMMEDIATE`` transaction with one commit.

        Each item gets its own result, in order: a :class:`CaptureResult` (new or duplicate) or the
        error that refused it (:class:`CaptureConflict`, :class:`NotEnrolled`). A conflict stores
        nothing for that item and does not affect the others. When SQLite fails, nothing of the batch
        is stored and every item gets the :class:`StorageError`. Only after this returns may the POS
        be answered.
        """
        if not items:
            return []
        if self._key is None:
            raise ConfigError("outbox opened without the signing key; capture is not possible")
        results: list[CaptureResult | AgentError] = []
        try:
            with self._write() as conn:
                meta: dict[str, Any] = dict(
                    self.query("SELECT key, value FROM meta WHERE key IN ('store_id', 'epoch', 'key_id')")
                )
                if "store_id" not in meta or "epoch" not in meta:
                    return [NotEnrolled() for _ in items]
                if meta.get("key_id") != self._key_id:
                    changed = "the agent was enrolled again with a new key; restart edge-agent"
                    return [NotEnrolled(changed) for _ in items]
                store_id, epoch = meta["store_id"], int(meta["epoch"])
                head = conn.execute("SELECT head_seq, head_chain FROM writers WHERE epoch = ?", (epoch,)).fetchone()
                if head is None:
                    raise StorageError(f"writer epoch {epoch} is missing from the outbox; re-enroll")
                seq, prev = int(head[0]), bytes(head[1])
                start_seq = seq
                for txn, origin in items:
                    found = conn.execute(
                        "SELECT seq, txn_hash FROM outbox WHERE register_id = ? AND txn_id = ?",
                        (txn.register_id, txn.txn_id),
                    ).fetchone()
                    if found is not None:
                        if found[1] == txn_hash(txn):
                            results.append(CaptureResult(int(found[0]), True))
                        else:
                            results.append(CaptureConflict(int(found[0]), txn.register_id, txn.txn_id))
                        continue
                    seq += 1
                    captured_at = now_local()
                    body = make_body(
                        store_id=store_id,
                        epoch=epoch,
                        seq=seq,
                        kind=txn.kind,
                        captured_at=captured_at,
                        txn=txn.canonical(),
                        origin=origin,
                    )
                    digest = _body_txn_hash(body, txn)
                    rec = seal(self._key, prev, seq, body)
                    conn.execute(
                        "INSERT INTO outbox (epoch, seq, register_id, txn_id, kind, captured_at, origin, body, "
                        "txn_hash, chain, sig) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                        (
                            epoch,
                            seq,
                            txn.register_id,
                            txn.txn_id,
                            txn.kind,
                            captured_at,
                            origin,
                            body,
                            digest,
                            rec.chain,
                            rec.sig,
                        ),
                    )
                    prev = rec.chain
                    results.append(CaptureResult(seq, False))
                if seq != start_seq:
                    conn.execute("UPDATE writers SET head_seq = ?, head_chain = ? WHERE epoch = ?", (seq, prev, epoch))
        except StorageError as exc:
            return [exc for _ in items]
        return results

    # -- reading --------------------------------------------------------------------------------

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

    # -- sync state -----------------------------------------------------------------------------

    def sync_state(self) -> dict[str, Any]:
        """The sync state row, JSON columns decoded."""
        cols = sorted(SYNC_COLUMNS)
        row = self._one(f"SELECT {', '.join(cols)} FROM sync_state WHERE id = 1")
        state = dict(zip(cols, row or (), strict=False))
        for col in _JSON_COLUMNS:
            if state.get(col):
                state[col] = json.loads(state[col])
        return state

    def update_sync(self, **fields: Any) -> None:
        """Set sync-state columns; dict values of JSON columns are encoded."""
        bad = set(fields) - SYNC_COLUMNS
        if bad:
            raise ValueError(f"unknown sync_state columns: {sorted(bad)}")
        if not fields:
            return
        values = [json.dumps(v) if k in _JSON_COLUMNS and v is not None else v for k, v in fields.items()]
        with self._write() as conn:
            conn.execute(f"UPDATE sync_state SET {', '.join(f'{k} = ?' for k in fields)} WHERE id = 1", values)

    def acked_through(self) -> int:
        row = self._one("SELECT acked_through FROM sync_state WHERE id = 1")
        return int(row[0]) if row else 0

    def apply_receipt(self, receipt: Receipt, hub_key: keys.Ed25519PublicKey) -> int:
        """Advance ``acked_through`` to a receipt that proves the hub holds our chain.

        The receipt must name our store and epoch, verify with the hub key, and carry exactly our
        chain value at its ``acked_through``. A valid receipt below the current mark is ignored.

        Returns:
            The (possibly unchanged) ``acked_through``.

        Raises:
            BadReceipt: when any check fails; nothing changes.
        """
        ident = self.require_identity()
        if receipt.store_id != ident.store_id or receipt.epoch != ident.epoch:
            raise BadReceipt(f"receipt is for {receipt.store_id} epoch {receipt.epoch}, not ours")
        if not receipt.valid(hub_key):
            raise BadReceipt("receipt signature does not verify with the hub key from enrollment")
        head_seq, _ = self.head(ident.epoch)
        if receipt.acked_through > head_seq:
            raise BadReceipt(f"hub acknowledges seq {receipt.acked_through} but our outbox ends at seq {head_seq}")
        ours = self.chain_at(ident.epoch, receipt.acked_through)
        if receipt.acked_through == 0:
            ours = _chain.genesis(ident.store_id, ident.epoch)
        if ours is None or ours.hex() != receipt.chain:
            raise BadReceipt(f"receipt chain at seq {receipt.acked_through} differs from ours")
        with self._write() as conn:
            row: Any = conn.execute("SELECT acked_through FROM sync_state WHERE id = 1").fetchone()
            cur = int(row[0])
            if receipt.acked_through < cur:
                return cur
            conn.execute(
                "UPDATE sync_state SET acked_through = ?, receipt = ? WHERE id = 1",
                (receipt.acked_through, receipt.model_dump_json()),
            )
        return receipt.acked_through

    def rewind(self, expected_seq: int) -> bool:
        """Resend from ``expected_seq`` (the hub lost records, e.g. restored from a backup).

        Returns:
            True when every record from ``expected_seq`` on is still in the outbox and
            ``acked_through`` was set to ``expected_seq - 1``; False when they were pruned or never
            existed (an unrecoverable gap: nothing is changed, nothing is invented).
        """
        ident = self.require_identity()
        row = self._one("SELECT anchor_seq, head_seq FROM writers WHERE epoch = ?", (ident.epoch,))
        if row is None or expected_seq < 1:
            return False
        anchor_seq, head_seq = int(row[0]), int(row[1])
        if expected_seq <= anchor_seq or expected_seq > head_seq + 1:
            return False
        if expected_seq <= head_seq:
            have = self._one("SELECT count(*) FROM outbox WHERE epoch = ? AND seq >= ?", (ident.epoch, expected_seq))
            if not have or int(have[0]) != head_seq - expected_seq + 1:
                return False
        self.update_sync(acked_through=expected_seq - 1)
        return True

    def log_burst(
        self,
        *,
        first_seq: int | None,
        last_seq: int | None,
        count: int,
        result: str,
        http_status: int | None,
        ms: float,
    ) -> None:
        """Append one burst to the log the TUI shows (the newest entries are kept)."""
        ident = self.identity()
        with self._write() as conn:
            conn.execute(
                "INSERT INTO bursts (at, epoch, first_seq, last_seq, count, result, http_status, ms) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (now_utc(), ident.epoch if ident else None, first_seq, last_seq, count, result, http_status, ms),
            )
            conn.execute("DELETE FROM bursts WHERE id <= (SELECT max(id) FROM bursts) - ?", (BURST_LOG_KEEP,))

    def recent_bursts(self, limit: int = 20) -> list[dict[str, Any]]:
        """The newest bursts first."""
        cols = ("at", "epoch", "first_seq", "last_seq", "count", "result", "http_status", "ms")
        try:
            rows = self.conn.execute(
                f"SELECT {', '.join(cols)} FROM bursts ORDER BY id DESC LIMIT ?", (limit,)
            ).fetchall()
        except apsw.Error as exc:
            raise _storage_error(exc) from None
        return [dict(zip(cols, row, strict=True)) for row in rows]

    def snapshot(self) -> dict[str, Any]:
        """Everything :func:`edge_agent.status.compute_status` needs, read in one transaction."""
        with self.conn:
            ident = self.identity()
            state = self.sync_state()
            last_seq = 0
            oldest = None
            if ident is not None:
                last_seq, _ = self.head(ident.epoch)
                row = self._one(
                    "SELECT captured_at FROM outbox WHERE epoch = ? AND seq > ? ORDER BY seq LIMIT 1",
                    (ident.epoch, int(state.get("acked_through") or 0)),
                )
                oldest = row[0] if row else None
            imports = status_block(self)
        return {"identity": ident, "last_seq": last_seq, "oldest_pending_captured_at": oldest, "sync": state,
                "imports": imports}  # fmt: skip

    # -- verification ---------------------------------------------------------------------------

    def verify(self) -> VerifyReport:
        """Walk every epoch's records from its anchor; see :func:`edge_agent.verify.verify_outbox`."""
        from .verify import verify_outbox

        return verify_outbox(self)
