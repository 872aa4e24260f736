"""Errors raised by the cloud hub.

The tree; ``HubError`` derives from the project root ``sync_protocol._exceptions.StoreSyncError``
(sink delivery failures are the sibling subtree ``SinkError`` in ``cloud_hub.sinks.base``)::

    HubError                      base; carries an HTTP ``status`` and a wire ``code``
     ├── ConfigError              data folder, key or token file unusable (not an HTTP answer)
     ├── InputError               a value given by an operator or client is invalid (400 bad_request)
     │    └── TooLarge            a request exceeds a size limit (413 too_large)
     ├── InvalidToken             enrollment token unknown, used or expired (401 invalid_token)
     ├── NotFound                 no such store, stream or route (404 not_found)
     ├── Unauthorized             missing or wrong credentials (401 unauthenticated)
     ├── StorageError             the database failed (500)
     │    └── StorageBusy         the database stayed locked past the busy timeout (503 busy)
     │         ├── StorageRetryable  serialization failure or deadlock: the unit of work may run again (503)
     │         └── StorageUnavailable  the database cannot be reached right now (503 unavailable)
     ├── BurstRejected            a burst answered with a non-2xx ErrorBody (401/403/409/422)
     └── DeriveFailure            no events can be derived from a stored record (``cloud_hub.records``)

The HTTP layer turns every ``HubError`` into a JSON ``sync_protocol.wire.ErrorBody``. Messages never
contain tokens, keys or record bodies.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sync_protocol._exceptions import StoreSyncError
from sync_protocol.wire import ErrorBody


class HubError(StoreSyncError):
    """Base of every cloud hub error."""

    status = 500
    code = "internal"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def body(self) -> dict[str, Any]:
        """The JSON body that answers a request that failed with this error."""
        return {"error": self.code, "message": self.message}

    def headers(self) -> dict[str, str]:
        """Extra response headers (e.g. ``Retry-After``)."""
        return {}


class ConfigError(HubError):
    """The data folder, hub key or admin token file cannot be used."""

    code = "config"


class InputError(HubError):
    """A value given by an operator or a client is invalid.

    Attributes:
        field: Name of the offending field, when known.
    """

    status = 400
    code = "bad_request"

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


class TooLarge(InputError):
    """A request is larger than a configured limit."""

    status = 413
    code = "too_large"


class InvalidToken(HubError):
    """An enrollment token is unknown, already used, or expired."""

    status = 401
    code = "invalid_token"


class NotFound(HubError):
    """No such store, stream or route."""

    status = 404
    code = "not_found"


class Unauthorized(HubError):
    """Credentials are missing or wrong."""

    status = 401
    code = "unauthenticated"


class StorageError(HubError):
    """The database failed in a way the client cannot fix."""

    code = "internal"


class StorageBusy(StorageError):
    """The database stayed locked for longer than the busy timeout."""

    status = 503
    code = "busy"

    def __init__(self, message: str = "the hub database is busy; retry shortly", retry_after: int = 1) -> None:
        super().__init__(message)
        self.retry_after = retry_after

    def headers(self) -> dict[str, str]:
        return {"Retry-After": str(self.retry_after)}


class StorageRetryable(StorageBusy):
    """A serialization failure or deadlock: nothing was stored, and running the unit of work again is safe.

    :meth:`cloud_hub.storage.Storage.run` retries it a bounded number of times; past that it answers
    like ``StorageBusy`` (503 with ``Retry-After``).
    """

    def __init__(self, message: str = "the hub database hit a write conflict; retry shortly") -> None:
        super().__init__(message)


class StorageUnavailable(StorageBusy):
    """The database server cannot be reached (down, restarting, network cut): 503 with ``Retry-After``."""

    code = "unavailable"

    def __init__(self, message: str = "the hub database is unreachable; retry shortly", retry_after: int = 2) -> None:
        super().__init__(message, retry_after)


class BurstRejected(HubError):
    """A burst (or enrollment) answered with a non-2xx status and an ``ErrorBody``.

    Attributes:
        status: HTTP status code.
        error: The wire body.
        extra_headers: Additional response headers.
    """

    def __init__(self, status: int, error: ErrorBody, headers: Mapping[str, str] | None = None) -> None:
        super().__init__(error.message)
        self.status = status
        self.code = error.error
        self.error = error
        self.extra_headers = dict(headers or {})

    def body(self) -> dict[str, Any]:
        return self.error.model_dump(mode="json", exclude_none=True)

    def headers(self) -> dict[str, str]:
        return dict(self.extra_headers)


class AlreadyResolved(HubError):
    """An operator action was already done (e.g. a derive error re-derived before): exactly once."""

    status = 409
    code = "already_resolved"


class DeriveStillFails(HubError):
    """Re-deriving a record failed again; the derive error stays open with the new reason."""

    status = 422
    code = "derive_failed"
