"""Who may talk to the capture API (DESIGN §10): an ASGI guard in front of every route.

Checks, in order, each answered with JSON naming the reason:

1. ``Host`` must name the address the request came in on (or ``localhost`` on loopback, or a name
   given with ``--allow-host``): a page that rebinds its DNS name to 127.0.0.1 is refused (421).
2. A request with an ``Origin`` not given with ``--allow-origin`` is refused (403): no browser page may
   post sales or trigger actions.
3. ``POST`` needs ``Content-Type: application/json`` (415): the simple requests a browser sends
   cross-site without asking (``text/plain``, forms) never reach a handler.
4. When the agent is bound to a non-loopback address, a request from another host needs
   ``Authorization: Bearer <register token>`` (401); the register it names is put into the scope as
   ``storesync.register`` so capture accepts only that register's sales. Wrong tokens are limited per
   source address (:class:`FailedTokens`: 10 a minute, 20 at once); once an address has spent them,
   every request from it is answered 429 with ``Retry-After`` until the budget refills, so register
   tokens cannot be guessed at hundreds per second, while registers on other addresses go on capturing.

``GET /healthz`` only answers ``{"ok": true}`` and passes checks 2-4 (a monitor needs no token).
"""

from __future__ import annotations

import ipaddress
import json
import math
import threading
import time
from collections.abc import Iterable, MutableMapping
from typing import Any

from starlette.types import ASGIApp, Receive, Scope, Send

from .registers import RegisterTokens

REGISTER_SCOPE_KEY = "storesync.register"
FAILED_PER_MIN = 10.0
FAILED_BURST = 20.0
MAX_SOURCES = 10_000  # addresses remembered; the ones back at a full budget are forgotten first


class FailedTokens:
    """Wrong register tokens per source address: a token bucket of ``burst`` refilled at ``per_min``."""

    def __init__(self, per_min: float = FAILED_PER_MIN, burst: float = FAILED_BURST) -> None:
        self.rate = per_min / 60.0
        self.burst = burst
        self._state: dict[str, tuple[float, float]] = {}
        self._lock = threading.Lock()

    def _level(self, source: str, now: float) -> float:
        tokens, at = self._state.get(source, (self.burst, now))
        return min(self.burst, tokens + (now - at) * self.rate)

    def wait(self, source: str) -> float:
        """Seconds until ``source`` may try a token again (0.0: now)."""
        with self._lock:
            level = self._level(source, time.monotonic())
        return 0.0 if level >= 1.0 else (1.0 - level) / self.rate

    def failed(self, source: str) -> None:
        """Count one wrong or missing token from ``source``."""
        now = time.monotonic()
        with self._lock:
            self._state[source] = (max(0.0, self._level(source, now) - 1.0), now)
            if len(self._state) > MAX_SOURCES:
                for key in [k for k in self._state if self._level(k, now) >= self.burst - 1][: MAX_SOURCES // 2]:
                    del self._state[key]


def unmapped(host: str) -> str:
    """``host`` without an IPv4-mapped IPv6 prefix (``::ffff:192.0.2.2`` on a dual-stack ``::`` bind)."""
    try:
        addr = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return host
    mapped = addr.ipv4_mapped if isinstance(addr, ipaddress.IPv6Address) else None
    return str(mapped) if mapped is not None else host


def is_loopback(host: str) -> bool:
    """True for ``localhost`` and loopback IP addresses (127.0.0.0/8, ::1, also IPv4-mapped)."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(unmapped(host).strip("[]")).is_loopback
    except ValueError:
        return False


def _split_host(value: str) -> tuple[str, int | None]:
    value = value.strip().lower()
    if value.startswith("["):
        end = value.find("]")
        host, rest = value[1:end] if end > 0 else value, value[end + 1 :] if end > 0 else ""
        port = rest[1:] if rest.startswith(":") else ""
    elif value.count(":") == 1:
        host, port = value.split(":")
    else:
        host, port = value, ""
    if port and not port.isdigit():
        return host, -1
    return host, int(port) if port else None


async def _refuse(send: Send, status: int, error: str, message: str, extra: Iterable[tuple[bytes, bytes]] = ()) -> None:
    payload = json.dumps({"error": error, "message": message}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(payload)).encode()), *extra]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": payload})


class Guard:
    """The checks above around ``app``.

    Args:
        app: The capture API.
        bind_host: The address the agent is bound to.
        tokens: Register tokens; required from non-loopback clients when ``bind_host`` is not loopback.
        allowed_hosts: Further names a ``Host`` header may carry (``--allow-host``).
        allowed_origins: Origins allowed to call the API (``--allow-origin``), e.g. ``http://till.local``.
        failed_tokens: The per-address budget of wrong tokens (default: 10 a minute, 20 at once).
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        bind_host: str,
        tokens: RegisterTokens | None,
        allowed_hosts: Iterable[str] = (),
        allowed_origins: Iterable[str] = (),
        failed_tokens: FailedTokens | None = None,
    ) -> None:
        self.app = app
        self.bind_host = bind_host
        self.need_tokens = not is_loopback(bind_host)
        self.tokens = tokens
        self.allowed_hosts = {h.lower() for h in allowed_hosts}
        self.allowed_origins = {o.rstrip("/").lower() for o in allowed_origins}
        self.failed_tokens = failed_tokens or FailedTokens()

    def _host_ok(self, scope: Scope, header: str) -> bool:
        host, port = _split_host(header)
        if port == -1 or not host:
            return False
        server = scope.get("server") or (self.bind_host, None)
        local, local_port = unmapped(str(server[0])).lower(), server[1]
        if port is not None and local_port is not None and port != local_port:
            return False
        if port is None and local_port not in (None, 80):
            return False
        if host in self.allowed_hosts or host == local.strip("[]"):
            return True
        return host == "localhost" and is_loopback(local)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers: dict[bytes, bytes] = {}
        for name, value in scope.get("headers", ()):
            headers.setdefault(name, value)
        host = headers.get(b"host", b"").decode("latin-1")
        if not self._host_ok(scope, host):
            await _refuse(send, 421, "bad_host", "the Host header does not name this agent's address")
            return
        if scope["path"] == "/healthz" and scope["method"] == "GET":
            await self.app(scope, receive, send)
            return
        origin = headers.get(b"origin")
        if origin is not None and origin.decode("latin-1").rstrip("/").lower() not in self.allowed_origins:
            await _refuse(send, 403, "foreign_origin", "requests from web pages are refused (Origin not allowed)")
            return
        if scope["method"] == "POST":
            ctype = headers.get(b"content-type", b"").split(b";")[0].strip().lower()
            if ctype != b"application/json":
                await _refuse(send, 415, "unsupported_media_type", "Content-Type must be application/json")
                return
        client = scope.get("client") or ("", 0)
        if self.need_tokens and not is_loopback(str(client[0])):
            source = unmapped(str(client[0]))
            wait = self.failed_tokens.wait(source)
            if wait > 0:
                await _refuse(
                    send,
                    429,
                    "busy",
                    "too many wrong register tokens from this address; wait and retry",
                    [(b"retry-after", str(max(1, math.ceil(wait))).encode())],
                )
                return
            register = self._register(headers.get(b"authorization", b""))
            if register is None:
                self.failed_tokens.failed(source)
                await _refuse(
                    send,
                    401,
                    "unauthenticated",
                    "this agent listens beyond loopback: send Authorization: Bearer <register token> "
                    "(edge-agent register add REGISTER)",
                    [(b"www-authenticate", b"Bearer")],
                )
                return
            scope = {**scope, REGISTER_SCOPE_KEY: register}
        await self.app(scope, receive, send)

    def _register(self, header: bytes) -> str | None:
        if self.tokens is None:
            return None
        scheme, _, token = header.decode("latin-1").partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            return None
        return self.tokens.register_of(token.strip())


def register_of(scope: MutableMapping[str, Any]) -> str | None:
    """The register a request was authenticated as (None on loopback)."""
    value = scope.get(REGISTER_SCOPE_KEY)
    return str(value) if value is not None else None
