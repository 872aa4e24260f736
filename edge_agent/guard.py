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
   ``storesync.register`` so capture accepts only that register's sales.

``GET /healthz`` only answers ``{"ok": true}`` and passes checks 2-4 (a monitor needs no token).
"""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Iterable, MutableMapping
from typing import Any

from starlette.types import ASGIApp, Receive, Scope, Send

from .registers import RegisterTokens

REGISTER_SCOPE_KEY = "storesync.register"


def is_loopback(host: str) -> bool:
    """True for ``localhost`` and loopback IP addresses (127.0.0.0/8, ::1)."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
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
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        bind_host: str,
        tokens: RegisterTokens | None,
        allowed_hosts: Iterable[str] = (),
        allowed_origins: Iterable[str] = (),
    ) -> None:
        self.app = app
        self.bind_host = bind_host
        self.need_tokens = not is_loopback(bind_host)
        self.tokens = tokens
        self.allowed_hosts = {h.lower() for h in allowed_hosts}
        self.allowed_origins = {o.rstrip("/").lower() for o in allowed_origins}

    def _host_ok(self, scope: Scope, header: str) -> bool:
        host, port = _split_host(header)
        if port == -1 or not host:
            return False
        server = scope.get("server") or (self.bind_host, None)
        local, local_port = str(server[0]).lower(), server[1]
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
            register = self._register(headers.get(b"authorization", b""))
            if register is None:
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
