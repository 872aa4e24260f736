"""The record chain (DESIGN §3).

``chain[0] = SHA-256("storesync/v1/" + store_id + "/" + epoch)`` and
``chain[seq] = SHA-256(chain[seq-1] || SHA-256(body))`` over raw 32-byte digests.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator


def genesis(store_id: str, epoch: int) -> bytes:
    """The chain anchor of a writer ``(store_id, epoch)``."""
    return hashlib.sha256(f"storesync/v1/{store_id}/{epoch}".encode()).digest()


def body_hash(body: str | bytes) -> bytes:
    """SHA-256 of the exact body bytes."""
    return hashlib.sha256(body.encode("utf-8") if isinstance(body, str) else body).digest()


def link(prev: bytes, body: str | bytes) -> bytes:
    """The chain value of a record whose predecessor's chain value is ``prev``."""
    return hashlib.sha256(prev + body_hash(body)).digest()


def link_hashed(prev: bytes, digest: bytes) -> bytes:
    """Like :func:`link` when the body hash is already known."""
    return hashlib.sha256(prev + digest).digest()


def walk(prev: bytes, bodies: Iterable[str | bytes]) -> Iterator[bytes]:
    """Yield the chain value of each body in turn, starting after ``prev``."""
    for body in bodies:
        prev = link(prev, body)
        yield prev
