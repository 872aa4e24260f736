"""Exceptions raised by the edge agent.

The tree, under the project root ``sync_protocol._exceptions.StoreSyncError``::

    StoreSyncError
     └── AgentError
          ├── ConfigError            bad data folder, key file too open, agent not initialised
          ├── NotEnrolled            capture or sync before ``edge-agent enroll``
          ├── EnrollRefused          re-enrolling would strand records that were never synced
          ├── CaptureConflict        same (register_id, txn_id) with different content; carries seq
          ├── StorageError           SQLite refused the write; ``http_status`` 503
          │    └── DiskFull          no space left; ``http_status`` 507
          ├── DropError              a drop file was not (fully) imported
          │    ├── DropRejected      the whole file is refused (not text, empty, unknown header); carries reason
          │    └── ImportInterrupted asked to stop between two chunks; the import resumes later
          └── HubCallError           anything the hub answered or failed to answer
               ├── HubUnavailable    network error, timeout, 5xx, 429; carries ``retry_after``
               ├── HubRejected       a definite refusal (4xx); carries status and ``ErrorBody``
               ├── BadReceipt        a receipt that does not verify or names another chain
               └── UnrecoverableGap  the hub misses records this outbox cannot resend; carries seq

Wire-format errors (``TransactionInvalid``, ``KeyFileError``, ``RecordInvalid``) come from
``sync_protocol`` unchanged. Messages never carry card numbers or full transaction bodies.
"""

from __future__ import annotations

from sync_protocol._exceptions import StoreSyncError
from sync_protocol.wire import ErrorBody


class AgentError(StoreSyncError):
    """Base of every edge-agent error; ``code`` is stable and machine readable."""

    code = "agent_error"


class ConfigError(AgentError):
    """The agent cannot start with this configuration or data folder."""

    code = "config"


class NotEnrolled(AgentError):
    """The outbox has no store identity yet; run ``edge-agent enroll``."""

    code = "not_enrolled"

    def __init__(self, message: str = "agent is not enrolled; run 'edge-agent enroll --hub URL --token TOKEN'"):
        super().__init__(message)


class EnrollRefused(AgentError):
    """Enrollment would leave records of the current epoch unsynced."""

    code = "enroll_refused"


class CaptureConflict(AgentError):
    """The idempotency key is already stored with different content; nothing was stored."""

    code = "conflict"

    def __init__(self, seq: int, register_id: str, txn_id: str) -> None:
        self.seq = seq
        super().__init__(
            f"register {register_id} transaction {txn_id} is already stored as seq {seq} with different content"
        )


class StorageError(AgentError):
    """The outbox could not be written; the capture was not acknowledged."""

    code = "storage"
    http_status = 503


class DiskFull(StorageError):
    """The disk holding the outbox is full."""

    http_status = 507


class DropError(AgentError):
    """A drop file was not (fully) imported."""

    code = "drop"


class DropRejected(DropError):
    """The whole file is refused (not text, empty, unknown header); ``reason`` says why."""

    code = "drop_rejected"

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(reason)


class ImportInterrupted(DropError):
    """The import was asked to stop between two chunks; it stays ``running`` and resumes later."""

    code = "import_interrupted"


class HubCallError(AgentError):
    """The hub could not be reached or refused a request (the agent's side of a hub call)."""

    code = "hub"


class HubUnavailable(HubCallError):
    """Temporary failure: retry later, after ``retry_after`` seconds when the hub named it."""

    code = "offline"

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        retry_after: float | None = None,
        timeout: bool = False,
        unreachable: bool = False,
    ) -> None:
        self.status = status
        self.retry_after = retry_after
        self.timeout = timeout
        self.unreachable = unreachable  # no connection could be opened: the hub (or the path to it) is down
        super().__init__(message)


class HubRejected(HubCallError):
    """The hub refused the request (4xx); nothing is deleted, staff must look."""

    code = "rejected"

    def __init__(self, status: int, body: ErrorBody | None, message: str | None = None) -> None:
        self.status = status
        self.body = body
        self.error = body.error if body is not None else f"http_{status}"
        text = message or (body.message if body is not None else f"hub answered HTTP {status}")
        super().__init__(f"{self.error}: {text}")


class BadReceipt(HubCallError):
    """A receipt that does not verify with the hub key or does not match our chain."""

    code = "bad_receipt"


class UnrecoverableGap(HubCallError):
    """The hub misses records that this outbox no longer has (or never had); nothing is invented."""

    code = "gap_unrecoverable"

    def __init__(self, expected_seq: int, message: str) -> None:
        self.seq = expected_seq
        super().__init__(message)


class OutboxDamaged(HubCallError):
    """A record the sync needs is missing from the outbox (a row deleted or lost); nothing is sent past it."""

    code = "outbox_damaged"

    def __init__(self, seq: int, message: str) -> None:
        self.seq = seq
        super().__init__(message)
