"""HTTP to the hub: enrollment and signed bursts, with httpx errors mapped to ours at the boundary."""

from __future__ import annotations

import email.utils
import gzip
import ssl
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from urllib.parse import urlsplit

import httpx
from pydantic import ValidationError

from sync_protocol import keys
from sync_protocol.httpsig import sign_request
from sync_protocol.wire import (
    BURSTS_PATH,
    ENROLL_PATH,
    BurstRequest,
    BurstResponse,
    EnrollRequest,
    EnrollResponse,
    ErrorBody,
)

from . import __version__
from ._exceptions import HubRejected, HubUnavailable

GZIP_ABOVE = 1024
USER_AGENT = f"storesync-edge-agent/{__version__}"


def safe_url(url: str) -> str:
    """The URL without any user:password part, for messages and logs."""
    parts = urlsplit(url)
    if "@" not in parts.netloc:
        return url
    return parts._replace(netloc=parts.netloc.rsplit("@", 1)[1]).geturl()


@contextmanager
def map_httpx_exceptions(url: str = "") -> Iterator[None]:
    """Turn httpx errors into :class:`HubUnavailable` (the agent retries those with backoff).

    Args:
        url: The hub URL tried, named in the message.
    """
    hub = f"the hub at {safe_url(url)}" if url else "the hub"
    try:
        yield
    except httpx.ConnectTimeout:
        raise HubUnavailable(f"cannot reach {hub}: connection timed out", timeout=True, unreachable=True) from None
    except httpx.TimeoutException as exc:
        raise HubUnavailable(f"{hub} did not answer in time ({type(exc).__name__})", timeout=True) from None
    except httpx.ConnectError as exc:
        raise HubUnavailable(f"cannot reach {hub}: ConnectError: {exc}", unreachable=True) from None
    except httpx.TransportError as exc:
        raise HubUnavailable(f"cannot reach {hub}: {type(exc).__name__}: {exc}") from None
    except httpx.HTTPError as exc:
        raise HubUnavailable(f"HTTP error talking to {hub}: {type(exc).__name__}: {exc}") from None


def parse_retry_after(value: str | None) -> float | None:
    """Seconds from a ``Retry-After`` header (delta-seconds or an HTTP date), or None."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


def _error_body(response: httpx.Response) -> ErrorBody | None:
    try:
        return ErrorBody.model_validate_json(response.content)
    except ValidationError:
        return None


def raise_for_answer(response: httpx.Response) -> None:
    """Raise the agent error for a non-2xx answer.

    Raises:
        HubUnavailable: 429, 5xx (with ``retry_after`` from the header).
        HubRejected: any other 4xx, with the parsed :class:`ErrorBody` when the hub sent one.
    """
    status = response.status_code
    if status < 300:
        return
    body = _error_body(response)
    if status == 429 or status >= 500:
        text = body.message if body is not None else f"hub answered HTTP {status}"
        raise HubUnavailable(text, status=status, retry_after=parse_retry_after(response.headers.get("retry-after")))
    raise HubRejected(status, body)


@dataclass(frozen=True)
class BurstExchange:
    """A 200 answer to a burst with the agent-side times T1 and T4."""

    response: BurstResponse
    t1: datetime
    t4: datetime
    status: int
    wire_bytes: int


class HubClient:
    """A connection to one hub.

    Args:
        hub_url: Base URL, e.g. ``http://127.0.0.1:8800``.
        connect_timeout: Seconds to connect.
        read_timeout: Seconds to wait for an answer.
        verify: Certificate verification for https:// (``edge_agent.config.hub_tls``).
        transport: An httpx transport; None for the network (tests pass ``httpx.MockTransport``).
    """

    def __init__(
        self,
        hub_url: str,
        *,
        connect_timeout: float = 5.0,
        read_timeout: float = 30.0,
        verify: ssl.SSLContext | bool = True,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.base_url = hub_url.rstrip("/")
        self._prefix = urlsplit(self.base_url).path.rstrip("/")
        timeout = httpx.Timeout(read_timeout, connect=connect_timeout)
        self._client = httpx.Client(
            base_url=self.base_url,
            timeout=timeout,
            headers={"User-Agent": USER_AGENT},
            verify=verify,
            transport=transport,
        )

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> HubClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def enroll(self, request: EnrollRequest) -> EnrollResponse:
        """``POST /v1/enroll``.

        Raises:
            HubRejected: e.g. 401 ``invalid_token``.
            HubUnavailable: network errors and 5xx.
        """
        with map_httpx_exceptions(self.base_url):
            response = self._client.post(
                ENROLL_PATH,
                content=request.model_dump_json().encode(),
                headers={"Content-Type": "application/json"},
            )
        raise_for_answer(response)
        try:
            return EnrollResponse.model_validate_json(response.content)
        except ValidationError as exc:
            raise HubUnavailable(f"hub sent an enrollment answer we cannot read: {exc.errors()[:1]}") from None

    def post_burst(
        self, request: BurstRequest, t1: datetime, key: keys.Ed25519PrivateKey, key_id: str
    ) -> BurstExchange:
        """Send one signed burst (gzip above 1 KiB) and read the hub's 200 answer.

        Args:
            request: The burst; its ``sent_at`` is ``t1``.
            t1: Agent time the burst is sent (also the signature's ``created``).
            key: Our signing key.
            key_id: Our key id (the signature's ``keyid``).

        Raises:
            HubRejected: 4xx other than 429, with the hub's ``ErrorBody``.
            HubUnavailable: network errors, timeouts, 429 and 5xx.
        """
        raw = request.model_dump_json().encode()
        headers = {"Content-Type": "application/json"}
        if len(raw) > GZIP_ABOVE:
            # Level 1: about half the CPU of level 5 for ~14% more bytes on typical bursts.
            raw = gzip.compress(raw, compresslevel=1, mtime=0)
            headers["Content-Encoding"] = "gzip"
        headers.update(sign_request("POST", self._prefix + BURSTS_PATH, raw, key, key_id, int(t1.timestamp())))
        with map_httpx_exceptions(self.base_url):
            response = self._client.post(BURSTS_PATH, content=raw, headers=headers)
        t4 = datetime.now().astimezone()
        raise_for_answer(response)
        try:
            parsed = BurstResponse.model_validate_json(response.content)
        except ValidationError as exc:
            raise HubUnavailable(f"hub sent a burst answer we cannot read: {exc.errors()[:1]}") from None
        return BurstExchange(parsed, t1, t4, response.status_code, len(raw))


def hub_answers(hub_url: str, timeout: float = 1.0, transport: httpx.BaseTransport | None = None) -> bool:
    """True when ``GET /healthz`` on the hub answers 200 within ``timeout`` seconds (the reachability probe)."""
    try:
        with httpx.Client(timeout=timeout, headers={"User-Agent": USER_AGENT}, transport=transport) as client:
            return client.get(hub_url.rstrip("/") + "/healthz").status_code == 200
    except httpx.HTTPError:
        return False


def monotonic_ms(start: float) -> float:
    """Milliseconds since ``start`` (a ``time.perf_counter()`` value)."""
    return round((time.perf_counter() - start) * 1000, 3)
