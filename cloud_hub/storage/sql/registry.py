"""The registry recorder's SQL, once for every engine: stores, one-time enrollment tokens, writer keys.

A store or writer that already exists is refused through :meth:`SQLWork._try_insert` (on PostgreSQL
inside a savepoint, so the transaction stays usable). PostgreSQL names the constraint it broke: a key
id that is taken is the operator's error, a taken ``(store_id, epoch)`` means another replica enrolled
the same store at the same moment, and the unit of work runs again. SQLite's one writer cannot race
itself, so any refusal there is a taken key.
"""

from __future__ import annotations

import json

from ..._exceptions import InputError, StorageRetryable
from ..recorders import RegistryRecorder
from ..records import EnrollmentToken, Store, StoreSummary, Writer
from . import SQLWork

WRITER_COLS = "store_id, epoch, key_id, public_key, enrolled_at, hostname, superseded_at"
#: The unique constraint of ``writers.key_id`` (named in the PostgreSQL schema).
WRITER_KEY_CONSTRAINT = "writers_key_id_key"

STORE_SUMMARIES = """
SELECT s.store_id, s.tz, st.epoch, COALESCE(st.acked_through, 0), st.last_seen_at,
       COALESCE(st.duplicates, 0),
       (SELECT COUNT(*) FROM conflicts c WHERE c.store_id = s.store_id), st.backlog
FROM stores s
LEFT JOIN streams st ON st.store_id = s.store_id
     AND st.epoch = (SELECT MAX(epoch) FROM streams m WHERE m.store_id = s.store_id)
ORDER BY s.store_id
"""


class SQLRegistry(SQLWork, RegistryRecorder):
    """:class:`~cloud_hub.storage.RegistryRecorder` in SQL."""

    def get_store(self, store_id: str) -> Store | None:
        row = self._one("SELECT store_id, tz, created_at FROM stores WHERE store_id = ?", (store_id,))
        return Store(*row) if row else None

    def insert_store(self, store: Store) -> None:
        args = (store.store_id, store.tz, store.created_at)
        if self._try_insert("INSERT INTO stores VALUES (?, ?, ?)", args) is not None:
            raise InputError(f"store {store.store_id} already exists", field="store_id")

    def list_stores(self) -> list[Store]:
        return [Store(*r) for r in self._all("SELECT store_id, tz, created_at FROM stores ORDER BY store_id")]

    def store_summaries(self) -> list[StoreSummary]:
        return [
            StoreSummary(r[0], r[1], r[2], r[3], r[4], r[5], r[6], json.loads(r[7]) if r[7] else None)
            for r in self._all(STORE_SUMMARIES)
        ]

    def insert_token(self, token: EnrollmentToken) -> None:
        self._run(
            "INSERT INTO enrollment_tokens VALUES (?, ?, ?, ?, ?)",
            (token.token_hash, token.store_id, token.created_at, token.expires_at, token.used_at),
        )

    def get_token(self, token_hash: bytes) -> EnrollmentToken | None:
        row = self._one(
            "SELECT token_hash, store_id, created_at, expires_at, used_at FROM enrollment_tokens WHERE token_hash = ?",
            (token_hash,),
        )
        return EnrollmentToken(bytes(row[0]), *row[1:]) if row else None

    def mark_token_used(self, token_hash: bytes, at: str) -> bool:
        return (
            self._count(
                "UPDATE enrollment_tokens SET used_at = ? WHERE token_hash = ? AND used_at IS NULL", (at, token_hash)
            )
            == 1
        )

    # writers
    def max_epoch(self, store_id: str) -> int:
        row = self._one("SELECT COALESCE(MAX(epoch), 0) FROM writers WHERE store_id = ?", (store_id,))
        return int(row[0])

    def insert_writer(self, writer: Writer) -> None:
        clash = self._try_insert(
            f"INSERT INTO writers ({WRITER_COLS}) VALUES (?, ?, ?, ?, ?, ?, ?)",
            (
                writer.store_id,
                writer.epoch,
                writer.key_id,
                writer.public_key,
                writer.enrolled_at,
                writer.hostname,
                writer.superseded_at,
            ),
        )
        if clash is None:
            return
        if clash in ("", WRITER_KEY_CONSTRAINT):
            raise InputError(
                f"key {writer.key_id} is already enrolled; a new enrollment needs a new key", field="public_key"
            )
        # Another replica enrolled the same store's next epoch at the same moment: run again.
        raise StorageRetryable(f"epoch {writer.epoch} of {writer.store_id} was taken concurrently")

    def supersede_writers(self, store_id: str, below_epoch: int, at: str) -> int:
        return self._count(
            "UPDATE writers SET superseded_at = ? WHERE store_id = ? AND epoch < ? AND superseded_at IS NULL",
            (at, store_id, below_epoch),
        )

    def writer_by_key(self, key_id: str) -> Writer | None:
        row = self._one(f"SELECT {WRITER_COLS} FROM writers WHERE key_id = ?", (key_id,))
        return Writer(*row) if row else None

    def writers(self, store_id: str) -> list[Writer]:
        rows = self._all(f"SELECT {WRITER_COLS} FROM writers WHERE store_id = ? ORDER BY epoch", (store_id,))
        return [Writer(*r) for r in rows]
