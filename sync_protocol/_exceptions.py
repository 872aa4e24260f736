"""The project's one exception root, and the errors of the wire-format package.

Every StoreSync error derives from :class:`StoreSyncError`, through one subtree per package (each
drawn in full in that package's ``_exceptions.py``)::

    StoreSyncError                   sync_protocol._exceptions (this module): the root
     ├── ProtocolError               sync_protocol: the wire contract (below)
     ├── AgentError                  edge_agent._exceptions: the edge agent
     ├── HubError                    cloud_hub._exceptions: the cloud hub, answered as an HTTP ErrorBody
     ├── SinkError                   cloud_hub.sinks.base: a delivery to a sink failed (transient/permanent)
     └── TuiError                    tui._exceptions: the store TUI

Private control-flow exceptions that never leave their module (``_OrderError`` in the Shopify CSV
reader) and the test harness's own errors (``storesync_harness``) are not part of the product tree.

This package's subtree::

    StoreSyncError
     └── ProtocolError
          ├── CanonicalEncodingError     value cannot be encoded canonically (float, NaN, bad key)
          ├── DuplicateKey               a JSON object names a key twice (``sync_protocol.canonical``)
          ├── TransactionInvalid         a POS transaction failed validation; carries FieldError list
          ├── RecordInvalid              an outbox record failed a check; carries seq and reason
          │    ├── ChainBroken           chain link does not match the recomputed hash
          │    └── BadSignature          Ed25519 signature does not verify
          ├── KeyFileError               key file missing, malformed or readable by others
          └── AuthError                  an HTTP message signature is missing or wrong

Every error has a stable machine ``code`` and a human message. Values that may be sensitive (card
numbers, keys) are never put into messages.
"""

from __future__ import annotations

from dataclasses import dataclass


class StoreSyncError(Exception):
    """The root of every StoreSync error, in every package."""

    code = "storesync_error"


class ProtocolError(StoreSyncError):
    """A value broke the wire contract."""

    code = "protocol_error"


class CanonicalEncodingError(ProtocolError):
    """A value has no canonical JSON form (floats, NaN, non-string keys)."""

    code = "not_canonical"


@dataclass(frozen=True)
class FieldError:
    """One reason a transaction was refused.

    Attributes:
        field: Dotted path with list indexes, e.g. ``lines[0].qty``.
        reason: Plain-language reason; never echoes a card number.
    """

    field: str
    reason: str

    def as_dict(self) -> dict[str, str]:
        return {"field": self.field, "reason": self.reason}


class TransactionInvalid(ProtocolError):
    """A POS transaction was refused; ``errors`` names every bad field."""

    code = "invalid_transaction"

    def __init__(self, errors: list[FieldError]) -> None:
        self.errors = errors
        summary = "; ".join(f"{e.field}: {e.reason}" for e in errors[:5])
        more = f" (+{len(errors) - 5} more)" if len(errors) > 5 else ""
        super().__init__(f"transaction refused: {summary}{more}")


class RecordInvalid(ProtocolError):
    """An outbox record failed verification."""

    code = "record_invalid"

    def __init__(self, seq: int, reason: str) -> None:
        self.seq = seq
        self.reason = reason
        super().__init__(f"record seq {seq}: {reason}")


class ChainBroken(RecordInvalid):
    """The chain link of a record does not match its recomputed value."""

    code = "chain_broken"


class BadSignature(RecordInvalid):
    """The signature of a record does not verify against the writer's key."""

    code = "bad_signature"


class KeyFileError(ProtocolError):
    """A key file is missing, malformed, or has permissions that are too open."""

    code = "key_file"


class AuthError(ProtocolError):
    """An HTTP message signature is missing, malformed, or does not verify."""

    code = "unauthenticated"
