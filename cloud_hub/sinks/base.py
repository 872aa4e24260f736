"""The sink interface, delivery outcomes, and the mapping of transport errors to ours.

A delivery worker calls ``await sink.deliver(batch)`` with events of one lane (in seq order) and
gets one :class:`Outcome` per event, in the same order:

- ``ok`` — the receiver confirmed it (or already had it): mark the delivery done.
- ``transient`` — retry later, after ``retry_after`` seconds when the receiver said so.
- ``permanent`` — retrying cannot help: dead-letter it.

Sinks never raise for a receiver's answer. Transport exceptions of ``httpx`` and ``nats`` are mapped
at the boundary (like httpx's own ``map_httpcore_exceptions``) by :func:`map_transport_errors` to
:class:`TransientSinkError` / :class:`PermanentSinkError`, and :meth:`Sink.deliver` implementations
turn those into outcomes. A timeout or dropped connection is an *unknown outcome*: it is transient,
and is safe to retry because every call carries the event id as its idempotency key.
"""

from __future__ import annotations

import abc
import email.utils
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Literal

import httpx

from sync_protocol._exceptions import StoreSyncError

from ..events import SinkConfig

Status = Literal["ok", "transient", "permanent"]


@dataclass(frozen=True)
class Outcome:
    """The result of delivering one event.

    Attributes:
        event_id: The event's id.
        status: ``ok``, ``transient`` or ``permanent``.
        reason: Short human-readable reason (empty when ok).
        retry_after: Seconds the receiver asked us to wait (transient only), else None.
        ref: The receiver's reference when it gave one (invoice name, stream sequence, …).
    """

    event_id: str
    status: Status
    reason: str = ""
    retry_after: float | None = None
    ref: str | None = None

    @classmethod
    def ok(cls, event_id: str, ref: str | None = None, reason: str = "") -> Outcome:
        return cls(event_id, "ok", reason, None, ref)

    @classmethod
    def transient(cls, event_id: str, reason: str, retry_after: float | None = None) -> Outcome:
        return cls(event_id, "transient", reason, retry_after)

    @classmethod
    def permanent(cls, event_id: str, reason: str) -> Outcome:
        return cls(event_id, "permanent", reason)

    @property
    def done(self) -> bool:
        return self.status == "ok"


class SinkError(StoreSyncError):
    """Base of sink errors (a subtree of the project root, see ``sync_protocol._exceptions``).

    Attributes:
        reason: Short reason, safe to show operators (never holds secrets).
    """

    status: Status = "transient"

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason

    def outcome(self, event_id: str) -> Outcome:
        return Outcome(event_id, self.status, self.reason)


class TransientSinkError(SinkError):
    """A failure that may pass: network, timeout, overload, rate limit.

    Attributes:
        retry_after: Seconds the receiver asked us to wait, else None.
        unknown: True when the request may have taken effect (timeout, dropped connection).
    """

    def __init__(self, reason: str, retry_after: float | None = None, unknown: bool = False) -> None:
        super().__init__(reason)
        self.retry_after = retry_after
        self.unknown = unknown

    def outcome(self, event_id: str) -> Outcome:
        return Outcome.transient(event_id, self.reason, self.retry_after)


class PermanentSinkError(SinkError):
    """A failure that retrying cannot fix: refused input, bad configuration, bad credentials."""

    status: Status = "permanent"


_NATS_PERMANENT = ("BadSubjectError", "AuthorizationError", "NoRespondersError", "MaxPayloadError")


@contextmanager
def map_transport_errors(what: str) -> Iterator[None]:
    """Re-raise transport exceptions of httpx and nats-py as :class:`SinkError`.

    Args:
        what: What was being done, for the reason text (``POST webhook``).
    """
    try:
        yield
    except SinkError:
        raise
    except httpx.TimeoutException as exc:
        raise TransientSinkError(f"{what}: timed out, outcome unknown ({type(exc).__name__})", unknown=True) from exc
    except (httpx.NetworkError, httpx.RemoteProtocolError) as exc:
        raise TransientSinkError(f"{what}: connection failed ({type(exc).__name__})", unknown=True) from exc
    except (httpx.UnsupportedProtocol, httpx.InvalidURL, httpx.LocalProtocolError) as exc:
        raise PermanentSinkError(f"{what}: {exc}") from exc
    except httpx.HTTPError as exc:
        raise TransientSinkError(f"{what}: {type(exc).__name__}") from exc
    except TimeoutError as exc:
        raise TransientSinkError(f"{what}: timed out, outcome unknown", unknown=True) from exc
    except OSError as exc:
        raise TransientSinkError(f"{what}: {exc.strerror or type(exc).__name__}") from exc
    except Exception as exc:
        mod = type(exc).__module__
        if mod.startswith("nats"):
            name = type(exc).__name__
            if name in _NATS_PERMANENT:
                raise PermanentSinkError(f"{what}: {name}: {exc}") from exc
            raise TransientSinkError(f"{what}: {name}: {exc}") from exc
        raise


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta-seconds or HTTP-date), else None."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


def classify_status(status: int, headers: Mapping[str, str], what: str) -> SinkError | None:
    """None for 2xx; otherwise the error a webhook-like receiver's status means.

    408, 425, 429 and 5xx are transient (honouring ``Retry-After``); every other status is permanent.
    """
    if 200 <= status < 300:
        return None
    if status in (408, 425, 429) or status >= 500:
        return TransientSinkError(f"{what}: HTTP {status}", parse_retry_after(headers.get("retry-after")))
    return PermanentSinkError(f"{what}: HTTP {status}")


class Sink(abc.ABC):
    """A delivery target. Subclasses implement :meth:`deliver` (and :meth:`aclose` if they hold
    connections). A sink may be used by one worker at a time per lane; it is safe to call
    :meth:`deliver` again after any outcome.
    """

    kind: str = ""

    def __init__(self, config: SinkConfig) -> None:
        self.config = config
        self.name = config.name

    @property
    def options(self) -> Mapping[str, Any]:
        return self.config.options

    @abc.abstractmethod
    async def deliver(self, events: Sequence[Mapping[str, Any]]) -> list[Outcome]:
        """Deliver ``events`` (one lane, seq order); one outcome per event, same order."""

    async def aclose(self) -> None:  # noqa: B027 - optional hook, most sinks hold nothing
        """Release connections and files."""

    async def __aenter__(self) -> Sink:
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()


def blocked(events: Sequence[Mapping[str, Any]], start: int, reason: str) -> list[Outcome]:
    """Transient outcomes for events not attempted because an earlier one in a strict lane failed."""
    return [Outcome.transient(e["id"], f"not attempted: {reason}") for e in events[start:]]
