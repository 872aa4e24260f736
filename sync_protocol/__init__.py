"""StoreSync wire format: the one package that edge agent and cloud hub both import.

Transactions (DESIGN §9), canonical JSON, the record chain and signatures (§3), burst messages and
receipts (§4), HTTP message signatures, and the clock estimate (§5).
"""

from ._exceptions import (
    AuthError,
    BadSignature,
    CanonicalEncodingError,
    ChainBroken,
    FieldError,
    KeyFileError,
    ProtocolError,
    RecordInvalid,
    StoreSyncError,
    TransactionInvalid,
)
from .canonical import canonical_bytes, canonical_dumps
from .record import SignedRecord, make_body, seal, verify_run
from .transaction import Transaction, parse_transaction

__all__ = [
    "AuthError",
    "BadSignature",
    "CanonicalEncodingError",
    "ChainBroken",
    "FieldError",
    "KeyFileError",
    "ProtocolError",
    "RecordInvalid",
    "SignedRecord",
    "StoreSyncError",
    "Transaction",
    "TransactionInvalid",
    "canonical_bytes",
    "canonical_dumps",
    "make_body",
    "parse_transaction",
    "seal",
    "verify_run",
]
