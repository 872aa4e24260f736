"""Stores, enrollment tokens and writer keys (protocol.md §4).

Plain functions over a :class:`~cloud_hub.storage.Storage`; the CLI and the HTTP layer both call them.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sync_protocol import chain, keys
from sync_protocol._exceptions import KeyFileError
from sync_protocol.wire import EnrollRequest, EnrollResponse

from ._exceptions import InputError, InvalidToken
from .storage import EnrollmentToken, Storage, Store, StoreSummary, UnitOfWork, Writer, iso_utc

STORE_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
TOKEN_TTL = timedelta(days=7)


@dataclass(frozen=True)
class IssuedToken:
    """A freshly issued enrollment token. The plain token exists only here; the hub keeps its hash."""

    store_id: str
    tz: str
    token: str
    expires_at: str
    new_store: bool


def token_hash(token: str) -> bytes:
    """SHA-256 of an enrollment token, the only form the hub stores."""
    return hashlib.sha256(token.encode("utf-8")).digest()


def check_store_id(store_id: str) -> str:
    """Return ``store_id`` when it matches ``[A-Za-z0-9_-]{1,64}``.

    Raises:
        InputError: naming the field.
    """
    if not STORE_ID.match(store_id):
        raise InputError(f"store_id {store_id!r} is invalid: use 1-64 letters, digits, '_' or '-'", field="store_id")
    return store_id


def check_tz(tz: str) -> str:
    """Return ``tz`` when it is a known IANA time zone such as ``Europe/Berlin``.

    Raises:
        InputError: naming the field.
    """
    try:
        if not tz or tz != tz.strip():
            raise ValueError
        ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError):
        raise InputError(f"tz {tz!r} is not an IANA time zone (e.g. Europe/Berlin)", field="tz") from None
    return tz


def add_store(storage: Storage, store_id: str, tz: str, *, now: datetime | None = None) -> IssuedToken:
    """Register a store (or, for a known store with the same zone, issue a re-enrollment token).

    Args:
        storage: The hub database.
        store_id: ``[A-Za-z0-9_-]{1,64}``.
        tz: IANA time zone of the store.
        now: Current time (tests).

    Returns:
        The one-time token, valid for 7 days.

    Raises:
        InputError: bad ``store_id`` or ``tz``, or the store exists with another zone.
    """
    check_store_id(store_id)
    check_tz(tz)
    now = now or datetime.now(UTC)
    # A fixed prefix: tokens are recognisable in support tickets and never start with "-" (argparse).
    token = "sse_" + secrets.token_urlsafe(32)
    expires = iso_utc(now + TOKEN_TTL)
    with storage.transaction() as tx:
        existing = tx.get_store(store_id)
        if existing is not None and existing.tz != tz:
            raise InputError(
                f"store {store_id} already exists with tz {existing.tz}; the time zone cannot be changed here",
                field="tz",
            )
        if existing is None:
            tx.insert_store(Store(store_id, tz, iso_utc(now)))
        tx.insert_token(EnrollmentToken(token_hash(token), store_id, iso_utc(now), expires))
    return IssuedToken(store_id, tz, token, expires, existing is None)


def list_stores(storage: Storage) -> list[StoreSummary]:
    """Every store with its newest stream's progress."""
    with storage.snapshot() as tx:
        return tx.store_summaries()


def enroll(
    storage: Storage, request: EnrollRequest, *, hub_key: keys.Ed25519PrivateKey, now: datetime | None = None
) -> EnrollResponse:
    """Bind an agent's key to a new epoch of the token's store.

    The token is single-use and expires after 7 days. A retry with the same token and the same key, while
    the writer it created is still current, gets the same answer again (the first answer may have been
    lost on the way), so enrollment is idempotent. The new epoch is ``max(epoch) + 1``; writers of
    older epochs are superseded, so their keys get ``key_revoked`` from then on.

    Raises:
        InvalidToken: unknown, used or expired token.
        InputError: malformed public key, or a key that is already enrolled.
    """
    now = now or datetime.now(UTC)
    try:
        public = keys.public_from_hex(request.public_key)
    except KeyFileError as exc:
        raise InputError(str(exc), field="public_key") from None
    kid = keys.key_id(public)
    at = iso_utc(now)
    digest = token_hash(request.token)

    def work(tx: UnitOfWork) -> tuple[Store, int]:
        tok = tx.get_token(digest)
        if tok is not None and tok.used_at is not None:
            # A retry whose first answer was lost: same token, same key, the writer it made still current.
            bound = tx.writer_by_key(kid)
            store = tx.get_store(tok.store_id)
            if (
                bound is not None
                and store is not None
                and bound.store_id == tok.store_id
                and bound.enrolled_at == tok.used_at
                and bound.superseded_at is None
            ):
                return store, bound.epoch
        if tok is None or tok.used_at is not None or tok.expires_at <= at:
            raise InvalidToken("enrollment token is unknown, already used or expired")
        store = tx.get_store(tok.store_id)
        if store is None:  # pragma: no cover - foreign key makes this impossible
            raise InvalidToken("enrollment token names no store")
        if tx.writer_by_key(kid) is not None:
            raise InputError(f"key {kid} is already enrolled; a new enrollment needs a new key", field="public_key")
        if not tx.mark_token_used(digest, at):
            raise InvalidToken("enrollment token is unknown, already used or expired")
        epoch = tx.max_epoch(store.store_id) + 1
        tx.supersede_writers(store.store_id, epoch, at)
        tx.insert_writer(Writer(store.store_id, epoch, kid, request.public_key, at, request.hostname))
        tx.create_stream(store.store_id, epoch, chain.genesis(store.store_id, epoch))
        return store, epoch

    store, epoch = storage.run(work)  # two replicas enrolling one store at once: the later runs again
    return _answer(store.store_id, epoch, kid, store.tz, hub_key)


def _answer(store_id: str, epoch: int, kid: str, tz: str, hub_key: keys.Ed25519PrivateKey) -> EnrollResponse:
    return EnrollResponse(
        store_id=store_id,
        epoch=epoch,
        key_id=kid,
        tz=tz,
        hub_public_key=keys.public_hex(hub_key),
        hub_key_id=keys.key_id(hub_key),
    )
