"""Outbox records: the signed body, and verification of a run of records against a chain.

This module is the one place that knows the body's byte layout. :func:`make_body` is the definition
(canonical JSON of the record fields); :class:`BodyWriter` produces the same bytes by concatenation
for many records of one writer, and :func:`body_txn_text` finds the ``txn`` member's text inside a
canonical body without parsing it.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from . import chain as _chain
from ._exceptions import BadSignature, ChainBroken, RecordInvalid
from .canonical import DuplicateKey, canonical_dumps, loads_strict
from .cards import find_pans, mask_value
from .keys import Ed25519PrivateKey, Ed25519PublicKey, sign, verify

BODY_VERSION = 1


def make_body(
    *,
    store_id: str,
    epoch: int,
    seq: int,
    kind: str,
    captured_at: str,
    txn: dict[str, Any],
    origin: str = "api",
    batch: dict[str, Any] | None = None,
) -> str:
    """The canonical JSON body of a record, exactly as it is hashed, signed and sent.

    ``batch`` (records imported from a drop file only) carries the file's own timeline:
    ``{"file_time": <ISO 8601 with offset, agent clock>, "file_time_source": "mtime"}``. The hub
    judges the plausibility of the file's sale times against it (docs/protocol.md §7).
    """
    doc: dict[str, Any] = {
        "v": BODY_VERSION,
        "store_id": store_id,
        "epoch": epoch,
        "seq": seq,
        "kind": kind,
        "captured_at": captured_at,
        "origin": origin,
        "txn": txn,
    }
    if batch is not None:
        doc["batch"] = batch
    return canonical_dumps(doc)


def file_timeline(mtime: float) -> dict[str, Any]:
    """The ``batch`` block of a record imported from a file modified at ``mtime`` (Unix seconds)."""
    moment = datetime.fromtimestamp(mtime).astimezone()
    return {"file_time": moment.isoformat(timespec="milliseconds"), "file_time_source": "mtime"}


# Canonical JSON sorts the keys: batch (drop imports only), captured_at, epoch, kind, origin, seq, store_id, txn, v.
_TXN_KEY = ',"txn":'
_BODY_TAIL = f',"v":{BODY_VERSION}}}'


def _json_str(text: str) -> str:
    return json.dumps(text, ensure_ascii=False)


class BodyWriter:
    """:func:`make_body` for many records of one writer, byte for byte, by string concatenation.

    The ``txn`` member is given as its canonical JSON text (``Transaction.canonical_json()``), so a
    record's transaction is encoded once. The first body made is compared with :func:`make_body`.

    Args:
        store_id: The writer's store.
        epoch: The writer epoch.

    Raises:
        RuntimeError: from :meth:`body` when the fast body would differ from the canonical one.
    """

    __slots__ = ("_epoch", "_store_id", "_store_part", "_heads", "_checked")

    def __init__(self, store_id: str, epoch: int) -> None:
        self._store_id = store_id
        self._epoch = epoch
        self._store_part = f',"store_id":{_json_str(store_id)}{_TXN_KEY}'
        self._heads: dict[tuple[str, str, str, str], str] = {}
        self._checked = False

    def body(
        self, *, seq: int, kind: str, captured_at: str, origin: str, txn_json: str, batch: dict[str, Any] | None = None
    ) -> str:
        """The canonical body of one record (see :func:`make_body`)."""
        batch_text = canonical_dumps(batch) if batch is not None else ""
        head = self._heads.get((captured_at, kind, origin, batch_text))
        if head is None:
            if len(self._heads) > 64:
                self._heads.clear()
            batch_part = f'"batch":{batch_text},' if batch is not None else ""
            head = self._heads[(captured_at, kind, origin, batch_text)] = (
                f'{{{batch_part}"captured_at":{_json_str(captured_at)},"epoch":{self._epoch},"kind":{_json_str(kind)}'
                f',"origin":{_json_str(origin)},"seq":'
            )
        text = f"{head}{seq}{self._store_part}{txn_json}{_BODY_TAIL}"
        if not self._checked:
            expect = make_body(
                store_id=self._store_id, epoch=self._epoch, seq=seq, kind=kind, captured_at=captured_at,
                txn=json.loads(txn_json), origin=origin, batch=batch,
            )  # fmt: skip
            if text != expect:
                raise RuntimeError("internal error: record body differs from the canonical body")
            self._checked = True
        return text


def body_txn_text(body: str) -> str | None:
    """The canonical text of a canonical body's ``txn`` member, or None when ``body`` is not canonical.

    In canonical JSON a quote inside a string is always escaped, so the first ``,"txn":`` is the key.
    """
    start = body.find(_TXN_KEY)
    if start < 0 or not body.endswith(_BODY_TAIL):
        return None
    return body[start + len(_TXN_KEY) : -len(_BODY_TAIL)]


@dataclass(frozen=True, slots=True)
class SignedRecord:
    """One record as stored in the outbox and carried on the wire."""

    seq: int
    body: str
    chain: bytes
    sig: bytes

    def wire(self) -> dict[str, Any]:
        return {"seq": self.seq, "body": self.body, "chain": self.chain.hex(), "sig": self.sig.hex()}


def seal(key: Ed25519PrivateKey, prev_chain: bytes, seq: int, body: str) -> SignedRecord:
    """Chain and sign a body that follows ``prev_chain``."""
    value = _chain.link(prev_chain, body)
    return SignedRecord(seq=seq, body=body, chain=value, sig=sign(key, value))


def check_body(body: str, *, store_id: str, epoch: int, seq: int) -> dict[str, Any]:
    """Parse a body and check that it names the writer and seq it is filed under.

    A record whose transaction (or any other part of the body) holds a full card number is refused
    too: the hub re-checks what a store signed, so an old or compromised agent cannot put card data
    into the ledger, the events or the sinks (DESIGN §9).

    Raises:
        RecordInvalid: when the body is not JSON, names another store, epoch or seq, or holds a
            card number (named by its path, never repeated).
    """
    try:
        doc = loads_strict(body)
    except DuplicateKey as exc:
        raise RecordInvalid(seq, f"body is not valid: {exc}") from None
    except ValueError:
        raise RecordInvalid(seq, "body is not valid JSON") from None
    if not isinstance(doc, dict):
        raise RecordInvalid(seq, "body is not a JSON object")
    for field, want in (("store_id", store_id), ("epoch", epoch), ("seq", seq)):
        if doc.get(field) != want:
            raise RecordInvalid(seq, f"body {field} is {mask_value(doc.get(field))!r}, expected {want!r}")
    txn = doc.get("txn")
    rest = {k: v for k, v in doc.items() if k != "txn"}
    for where, part in (("txn", txn), ("", rest)):
        path = next(find_pans(part), None)
        if path is not None:
            shown = f"{where}.{path}" if where and path else (where or path)
            raise RecordInvalid(seq, f"{shown} holds what looks like a full card number; only card_last4 is stored")
    return doc


def verify_run(
    records: Iterable[SignedRecord],
    *,
    prev_chain: bytes,
    first_seq: int,
    public_key: Ed25519PublicKey,
    verify_all: bool = True,
) -> Iterator[SignedRecord]:
    """Yield each record after checking seq order, chain link and (all or last) signature.

    Records are yielded only once checked, so a caller that stores as it iterates keeps every record
    before the first bad one. With ``verify_all=False`` only the last signature is checked — through
    the chain it vouches for every record before it — so records are yielded after the whole run
    has been checked.

    Raises:
        RecordInvalid, ChainBroken, BadSignature: naming the first bad seq.
    """
    expected = first_seq
    prev = prev_chain
    held: list[SignedRecord] = []
    for rec in records:
        if rec.seq != expected:
            raise RecordInvalid(rec.seq, f"out of order: expected seq {expected}")
        value = _chain.link(prev, rec.body)
        if value != rec.chain:
            raise ChainBroken(rec.seq, "chain link does not match the record body and its predecessor")
        if verify_all:
            if not verify(public_key, rec.sig, value):
                raise BadSignature(rec.seq, "signature does not verify with the writer's key")
            yield rec
        else:
            held.append(rec)
        prev = value
        expected += 1
    if held:
        last = held[-1]
        if not verify(public_key, last.sig, last.chain):
            raise BadSignature(last.seq, "signature does not verify with the writer's key")
        yield from held
