"""Request authentication: RFC 9421 signatures from store keys, and the admin bearer token."""

from __future__ import annotations

import threading
from collections.abc import Mapping

from sync_protocol import keys
from sync_protocol._exceptions import AuthError, KeyFileError
from sync_protocol.httpsig import Verified, verify_request
from sync_protocol.wire import ErrorBody

from ._exceptions import BurstRejected, Unauthorized
from .credentials import AdminToken
from .storage import Storage


class KeyCache:
    """Writer public keys by key id, read from storage on first use.

    A key id always names the same public key (key ids are unique), so positive entries never go
    stale; whether the key is still current is decided by ingest inside the burst's transaction.
    Unknown key ids are not cached, so a fresh enrollment is seen at once.
    """

    def __init__(self, storage: Storage) -> None:
        self._storage = storage
        self._keys: dict[str, keys.Ed25519PublicKey] = {}
        self._lock = threading.Lock()

    def lookup(self, key_id: str) -> keys.Ed25519PublicKey | None:
        """The public key of ``key_id``, or None when no writer has it."""
        with self._lock:
            key = self._keys.get(key_id)
        if key is not None:
            return key
        with self._storage.snapshot() as tx:
            writer = tx.writer_by_key(key_id)
        if writer is None:
            return None
        try:
            key = keys.public_from_hex(writer.public_key)
        except KeyFileError:  # pragma: no cover - enrollment validates keys
            return None
        with self._lock:
            self._keys[key_id] = key
        return key

    def invalidate(self, key_id: str | None = None) -> None:
        """Forget one key id, or every cached key."""
        with self._lock:
            if key_id is None:
                self._keys.clear()
            else:
                self._keys.pop(key_id, None)


def verify_signed_request(method: str, path: str, headers: Mapping[str, str], body: bytes, cache: KeyCache) -> Verified:
    """Check the RFC 9421 signature of a request made by a store's agent.

    Raises:
        BurstRejected: 401 ``unauthenticated`` naming what is missing or wrong.
    """
    try:
        return verify_request(method, path, headers, body, cache.lookup)
    except AuthError as exc:
        raise BurstRejected(401, ErrorBody(error="unauthenticated", message=str(exc))) from None


def check_admin(authorization: str | None, token: AdminToken) -> None:
    """Accept ``Authorization: Bearer <admin token>``, comparing SHA-256 digests in constant time.

    Raises:
        Unauthorized: when the header is missing or the token is wrong.
    """
    if not authorization:
        raise Unauthorized("admin endpoints need 'Authorization: Bearer <admin token>'")
    scheme, _, given = authorization.partition(" ")
    if scheme.lower() != "bearer" or not token.matches(given.strip()):
        raise Unauthorized("admin token is wrong")
