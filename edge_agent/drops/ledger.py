"""The ``imports`` table and the chunk store: drop-file rows in the outbox, checkpoint in the same commit.

``imports`` (outbox migration 2) has one row per file the agent took up, newest last::

    id INTEGER PRIMARY KEY        -- the import
    sha256 TEXT                   -- of the file's bytes
    name TEXT                     -- file name as dropped
    path TEXT                     -- where the file is read from while running (it stays in place)
    folder TEXT                   -- the drop folder whose processed/ and rejected/ it ends in
    dest_name TEXT                -- name in processed/ or rejected/ (unique there)
    format TEXT                   -- jsonl | csv_canonical | shopify_csv (NULL when rejected whole)
    status TEXT                   -- running | done | rejected | duplicate_file
    result TEXT                   -- ok | partial | rejected | duplicate_file (the result.json status)
    reason TEXT                   -- why a file was rejected whole, or which import it duplicates
    rows, transactions, accepted, duplicates, rejected INTEGER   -- counts so far
    size INTEGER                  -- file size in bytes
    checkpoint_offset, checkpoint_line INTEGER   -- resume point after the last committed chunk
    errors_size INTEGER           -- bytes of rejected/<file>.errors.jsonl.part at that commit
    retry_allowed INTEGER         -- 1 after POST /v1/imports/{sha}/retry: the same bytes may come again
    started_at, updated_at, finished_at TEXT

A file whose bytes were imported before gets a ``duplicate_file`` row naming the earlier import in
``reason``; only an explicit retry (``retry_allowed``) lets the same bytes be imported again, as a new
row. Progress of a running import is ``checkpoint_offset / size``.

:func:`store_chunk` stores prepared transactions (canonical JSON made by the reader processes) with
the same seq/chain/signature rules as :meth:`edge_agent.outbox.Outbox.capture_batch`, and updates the
import's counters and checkpoint in the same ``BEGIN IMMEDIATE`` transaction, so after ``kill -9``
the import resumes exactly after the last committed chunk.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NamedTuple

from sync_protocol import chain as _chain
from sync_protocol import keys
from sync_protocol.canonical import canonical_dumps
from sync_protocol.record import make_body

from .._exceptions import ConfigError, NotEnrolled, StorageError

if TYPE_CHECKING:
    from ..outbox import Outbox

IMPORTS_SQL = """
CREATE TABLE imports (
    id INTEGER PRIMARY KEY,
    sha256 TEXT NOT NULL,
    name TEXT NOT NULL,
    path TEXT NOT NULL,
    folder TEXT NOT NULL,
    dest_name TEXT NOT NULL,
    format TEXT,
    status TEXT NOT NULL,
    result TEXT,
    reason TEXT,
    rows INTEGER NOT NULL DEFAULT 0,
    transactions INTEGER NOT NULL DEFAULT 0,
    accepted INTEGER NOT NULL DEFAULT 0,
    duplicates INTEGER NOT NULL DEFAULT 0,
    rejected INTEGER NOT NULL DEFAULT 0,
    size INTEGER NOT NULL DEFAULT 0,
    checkpoint_offset INTEGER NOT NULL DEFAULT 0,
    checkpoint_line INTEGER NOT NULL DEFAULT 0,
    errors_size INTEGER NOT NULL DEFAULT 0,
    retry_allowed INTEGER NOT NULL DEFAULT 0,
    started_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    finished_at TEXT
);
CREATE INDEX imports_sha ON imports (sha256);
CREATE INDEX imports_status ON imports (status);
"""

COLUMNS = (
    "id", "sha256", "name", "path", "folder", "dest_name", "format", "status", "result", "reason", "rows",
    "transactions", "accepted", "duplicates", "rejected", "size", "checkpoint_offset", "checkpoint_line", "errors_size",
    "retry_allowed", "started_at", "updated_at", "finished_at",
)  # fmt: skip
COUNTERS = ("rows", "transactions", "accepted", "duplicates", "rejected")
RUNNING, DONE, REJECTED, DUPLICATE = "running", "done", "rejected", "duplicate_file"


class Prepared(NamedTuple):
    """A validated transaction ready to store: its key, kind and canonical JSON (and where it came from).

    A named tuple, not a dataclass: chunks of these cross from the reader processes by pickle, and
    a tuple unpickles several times faster in the importing process (the import's serial part).
    """

    register_id: str
    txn_id: str
    kind: str
    txn_json: str
    txn_hash: str
    first_line: int
    raw: str | list[str]


@dataclass(frozen=True, slots=True)
class Stored:
    """Outcome of one prepared item: ``seq`` and ``duplicate``, or ``conflict`` with the stored seq."""

    seq: int
    duplicate: bool = False
    conflict: bool = False


def _row(values: Sequence[Any] | None) -> dict[str, Any] | None:
    return dict(zip(COLUMNS, values, strict=True)) if values is not None else None


def get(outbox: Outbox, import_id: int) -> dict[str, Any] | None:
    """One import row as a dict."""
    rows = outbox.query(f"SELECT {', '.join(COLUMNS)} FROM imports WHERE id = ?", (import_id,))
    return _row(rows[0]) if rows else None


def by_sha(outbox: Outbox, sha256: str) -> dict[str, Any] | None:
    """The import of these bytes (not a duplicate-drop row), if any."""
    rows = outbox.query(
        f"SELECT {', '.join(COLUMNS)} FROM imports WHERE sha256 = ? AND status != ? ORDER BY id DESC LIMIT 1",
        (sha256, DUPLICATE),
    )
    return _row(rows[0]) if rows else None


def running(outbox: Outbox) -> list[dict[str, Any]]:
    """Imports a crash or a stop left running, oldest first."""
    rows = outbox.query(f"SELECT {', '.join(COLUMNS)} FROM imports WHERE status = ? ORDER BY id", (RUNNING,))
    return [r for r in map(_row, rows) if r is not None]


def recent(outbox: Outbox, limit: int = 50) -> list[dict[str, Any]]:
    """The newest imports first."""
    rows = outbox.query(f"SELECT {', '.join(COLUMNS)} FROM imports ORDER BY id DESC LIMIT ?", (limit,))
    return [r for r in map(_row, rows) if r is not None]


def insert(outbox: Outbox, now: str, **values: Any) -> int:
    """Add an import row; returns its id. Earlier rows of the same bytes lose ``retry_allowed``."""
    values.setdefault("started_at", now)
    values["updated_at"] = now
    names = list(values)
    with outbox.transaction() as conn:
        conn.execute("UPDATE imports SET retry_allowed = 0 WHERE sha256 = ? AND retry_allowed = 1", (values["sha256"],))
        conn.execute(
            f"INSERT INTO imports ({', '.join(names)}) VALUES ({', '.join('?' for _ in names)})",
            [values[n] for n in names],
        )
        return int(conn.last_insert_rowid())


def update(outbox: Outbox, import_id: int, now: str, **values: Any) -> None:
    """Set columns of an import row (and ``updated_at``)."""
    values["updated_at"] = now
    with outbox.transaction() as conn:
        conn.execute(
            f"UPDATE imports SET {', '.join(f'{k} = ?' for k in values)} WHERE id = ?", [*values.values(), import_id]
        )


def _dumps(text: str) -> str:
    return json.dumps(text, ensure_ascii=False)


def store_chunk(
    outbox: Outbox,
    items: Sequence[Prepared],
    *,
    import_id: int,
    origin: str,
    now: str,
    bookkeeping: Callable[[list[Stored]], dict[str, Any]],
    batch: dict[str, Any] | None = None,
) -> list[Stored]:
    """Store a chunk's transactions and move the import's checkpoint, in ONE SQLite transaction.

    Already stored keys are duplicates (same content) or conflicts (other content: nothing stored,
    the caller rejects the item). ``bookkeeping`` runs inside the transaction with the outcomes and
    returns the import-row columns to set (counts, checkpoint, errors size), so the records and the
    checkpoint are committed together or not at all.

    Raises:
        NotEnrolled: before enrollment, or when the agent was enrolled again with another key.
        StorageError: when SQLite fails; nothing of the chunk is stored.
    """
    key = outbox.signing_key
    if key is None:
        raise ConfigError("outbox opened without the signing key; import is not possible")
    out: list[Stored] = []
    with outbox.transaction() as conn:
        meta = dict(conn.execute("SELECT key, value FROM meta WHERE key IN ('store_id', 'epoch', 'key_id')"))
        if "store_id" not in meta or "epoch" not in meta:
            raise NotEnrolled()
        if meta.get("key_id") != keys.key_id(key):
            raise NotEnrolled("the agent was enrolled again with a new key; restart edge-agent")
        store_id, epoch = str(meta["store_id"]), int(meta["epoch"])
        head = conn.execute("SELECT head_seq, head_chain FROM writers WHERE epoch = ?", (epoch,)).fetchone()
        if head is None:
            raise StorageError(f"writer epoch {epoch} is missing from the outbox; re-enroll")
        seq, prev = int(head[0]), bytes(head[1])
        start_seq = seq
        captured_at = now
        # make_body's canonical JSON, keys sorted: batch, captured_at, epoch, kind, origin, seq, store_id, txn, v.
        batch_part = f'"batch":{canonical_dumps(batch)},' if batch is not None else ""
        head_part = f'{{{batch_part}"captured_at":{_dumps(captured_at)},"epoch":{epoch},"kind":'
        origin_part = f',"origin":{_dumps(origin)},"seq":'
        store_part = f',"store_id":{_dumps(store_id)},"txn":'
        # Keys stored before this chunk, in one query per chunk; then keys stored by this chunk.
        fresh = _stored_keys(conn, items)
        kinds: dict[str, str] = {}
        rows: list[tuple[Any, ...]] = []
        checked = False
        sign = key.sign
        for it in items:
            k = (it.register_id, it.txn_id)
            found = fresh.get(k)
            if found is not None:
                same = found[1] == it.txn_hash
                out.append(Stored(int(found[0]), duplicate=same, conflict=not same))
                continue
            seq += 1
            kind = kinds.get(it.kind)
            if kind is None:
                kind = kinds[it.kind] = _dumps(it.kind)
            body = f'{head_part}{kind}{origin_part}{seq}{store_part}{it.txn_json},"v":1}}'
            if not checked:  # the fast body must be make_body's, byte for byte
                expect = make_body(
                    store_id=store_id, epoch=epoch, seq=seq, kind=it.kind, captured_at=captured_at,
                    txn=json.loads(it.txn_json), origin=origin, batch=batch,
                )  # fmt: skip
                if body != expect:
                    raise StorageError("internal error: drop record body differs from the canonical body")
                checked = True
            value = _chain.link(prev, body)
            rows.append((epoch, seq, it.register_id, it.txn_id, it.kind, captured_at, origin, body, it.txn_hash,
                         value, sign(value)))  # fmt: skip
            fresh[k] = (seq, it.txn_hash)
            prev = value
            out.append(Stored(seq))
        if rows:
            conn.executemany(
                "INSERT INTO outbox (epoch, seq, register_id, txn_id, kind, captured_at, origin, body, txn_hash, "
                "chain, sig) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                rows,
            )
        if seq != start_seq:
            conn.execute("UPDATE writers SET head_seq = ?, head_chain = ? WHERE epoch = ?", (seq, prev, epoch))
        values = {**bookkeeping(out), "updated_at": now}
        conn.execute(
            f"UPDATE imports SET {', '.join(f'{k} = ?' for k in values)} WHERE id = ?", [*values.values(), import_id]
        )
    return out


_LOOKUP_BATCH = 400  # keys per query (800 parameters, far below SQLite's limit)


def _stored_keys(conn: Any, items: Sequence[Prepared]) -> dict[tuple[str, str], tuple[int, str]]:
    """``(register_id, txn_id) -> (seq, txn_hash)`` of the items' keys already in the outbox."""
    found: dict[tuple[str, str], tuple[int, str]] = {}
    keys_ = list(dict.fromkeys((it.register_id, it.txn_id) for it in items))
    for i in range(0, len(keys_), _LOOKUP_BATCH):
        part = keys_[i : i + _LOOKUP_BATCH]
        sql = (
            "SELECT register_id, txn_id, seq, txn_hash FROM outbox WHERE (register_id, txn_id) IN "
            f"(VALUES {', '.join('(?, ?)' for _ in part)})"
        )
        for register_id, txn_id, seq, txn_hash in conn.execute(sql, [v for k in part for v in k]):
            found[(register_id, txn_id)] = (int(seq), txn_hash)
    return found


def status_block(outbox: Outbox) -> dict[str, Any]:
    """The ``imports`` part of the agent status: the running import's progress and the last finished one."""
    cols = ("id", "name", "format", "status", "result", "reason", *COUNTERS, "size", "checkpoint_offset",
            "started_at", "updated_at", "finished_at")  # fmt: skip
    sel = f"SELECT {', '.join(cols)} FROM imports"
    run = outbox.query(f"{sel} WHERE status = ? ORDER BY id LIMIT 1", (RUNNING,))
    last = outbox.query(f"{sel} WHERE status != ? ORDER BY id DESC LIMIT 1", (RUNNING,))
    out: dict[str, Any] = {"running": None, "last": None}
    if run:
        r = dict(zip(cols, run[0], strict=True))
        r["progress"] = round(r["checkpoint_offset"] / r["size"], 4) if r["size"] else None
        out["running"] = r
    if last:
        out["last"] = dict(zip(cols, last[0], strict=True))
    return out


def txn_digest(txn_json: str) -> str:
    """SHA-256 (hex) of a canonical transaction, as the outbox stores it in ``txn_hash``."""
    return hashlib.sha256(txn_json.encode("utf-8")).hexdigest()
