"""A stored record made ready for deriving: its body decoded strictly and its transaction validated
against its schema version (DESIGN §9), so events are built from validated values only.

The agent validated the transaction at capture and signed the body, but the hub checks again before
it derives anything an ERP books: a body with a duplicate key, a float, a schema version this hub does
not know, or a transaction that fails validation is a :class:`DeriveFailure` with a short ``code``
(``bad_body``, ``unknown_schema``, ``invalid_transaction``, ``bad_time``, ``internal``). The record stays
in the ledger, the failure is listed in ``derive_errors``, and an operator can re-derive it once the
cause is fixed (e.g. a hub upgraded to know the schema).
"""

from __future__ import annotations

from typing import Any

from sync_protocol._exceptions import CanonicalEncodingError, TransactionInvalid
from sync_protocol.canonical import DuplicateKey, loads_strict
from sync_protocol.transaction import SCHEMA_V1, SCHEMAS
from sync_protocol.txn_fast import canonical_txn

from ._exceptions import HubError

CODES = ("bad_body", "unknown_schema", "invalid_transaction", "bad_time", "internal")


class DeriveFailure(HubError):
    """No events can be derived from a record; ``code`` is one of :data:`CODES`."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


def validated_doc(body: str, *, scan_cards: bool = True) -> dict[str, Any]:
    """The record body as a dict whose ``txn`` is the validated canonical transaction.

    ``scan_cards=False`` skips the card-number scan for a body that hub ingest has just checked
    (``sync_protocol.record.check_body`` refuses a record with a card number anywhere in it); it is a
    quarter of the validation's cost.

    Raises:
        DeriveFailure: naming what is wrong (card numbers are never repeated: the validator masks them).
    """
    try:
        doc = loads_strict(body, refuse_floats=True)
    except DuplicateKey as exc:
        raise DeriveFailure("bad_body", str(exc)) from None
    except (ValueError, RecursionError, CanonicalEncodingError) as exc:
        raise DeriveFailure("bad_body", f"body is not canonical JSON: {exc}") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("txn"), dict):
        raise DeriveFailure("bad_body", "body has no txn object")
    schema = doc["txn"].get("schema", SCHEMA_V1)
    if schema not in SCHEMAS:
        raise DeriveFailure("unknown_schema", f"txn.schema {schema!r} is not one this hub knows ({', '.join(SCHEMAS)})")
    try:
        txn = canonical_txn(doc["txn"], scan_cards=scan_cards)
    except TransactionInvalid as exc:
        reasons = "; ".join(f"txn.{e.field}: {e.reason}" for e in exc.errors)
        raise DeriveFailure("invalid_transaction", reasons) from None
    if doc.get("kind") != txn["kind"]:
        raise DeriveFailure("bad_body", f"body kind {doc.get('kind')!r} differs from txn.kind {txn['kind']!r}")
    for name in ("store_id", "captured_at"):
        if not isinstance(doc.get(name), str):
            raise DeriveFailure("bad_body", f"body {name} is missing or not a string")
    doc["txn"] = txn
    return doc
