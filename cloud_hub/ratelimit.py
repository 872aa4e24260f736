"""Per-store and per-source rate limits of one hub process (DESIGN §10): 429 with ``Retry-After``.

Token buckets in memory, one set per hub process (replicas each keep their own):

- **bursts per store** (by the verified signing key): ``burst_rate`` per second, up to ``burst_burst`` at
  once, and at most ``burst_inflight`` bursts of one store being handled at the same time (an agent
  sends one at a time; the second allows a retry while the first is still being answered), so a
  flooding store gets no more of the hub than one busy store and the others keep their latency;
- **enrollment per source address**: ``enroll_per_min``, up to ``enroll_burst`` at once;
- **failed authentication per source address**: each 401 (bad signature, unknown key, wrong admin
  token) costs a token of ``auth_fail_per_min`` / ``auth_fail_burst``; with none left every signed or
  admin request from that address is answered 429 until the bucket refills.

An agent treats 429 like an outage: it backs off for ``Retry-After`` and sends again (idempotent).

The source address is the TCP peer. Behind a reverse proxy every request would come from the proxy, so
``trusted_proxies`` (``[hub] trusted_proxies`` / ``$CLOUD_HUB_TRUSTED_PROXIES``) lists the proxies'
addresses or networks: only a request whose peer is one of them has its ``X-Forwarded-For`` read, from
the right, skipping trusted hops, and the first address that is not a trusted proxy is the source
(:func:`client_source`). From any other peer the header is ignored, so it cannot be spoofed.
"""

from __future__ import annotations

import ipaddress
import json
import math
import os
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, fields, replace

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from sync_protocol.wire import ENROLL_PATH

from ._exceptions import ConfigError, HubError

GUARDED = ("/v1/bursts", ENROLL_PATH, "/v1/admin")

MAX_KEYS = 100_000  # buckets kept per limiter; the fullest are forgotten first when there are more


class RateLimited(HubError):
    """Too many requests from one store or one address."""

    status = 429
    code = "busy"

    def __init__(self, message: str, retry_after: float) -> None:
        super().__init__(message)
        self.retry_after = max(1, math.ceil(retry_after))

    def headers(self) -> dict[str, str]:
        return {"Retry-After": str(self.retry_after)}


@dataclass
class Bucket:
    """``rate`` tokens per second, at most ``capacity`` held."""

    rate: float
    capacity: float
    _state: dict[str, tuple[float, float]] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def _level(self, key: str, now: float) -> float:
        tokens, at = self._state.get(key, (self.capacity, now))
        return min(self.capacity, tokens + (now - at) * self.rate)

    def take(self, key: str, cost: float = 1.0) -> float:
        """Spend ``cost`` tokens of ``key``: 0.0 when allowed, else the seconds until it would be."""
        now = time.monotonic()
        with self._lock:
            level = self._level(key, now)
            if level < cost:
                self._state[key] = (level, now)
                return (cost - level) / self.rate
            self._state[key] = (level - cost, now)
            if len(self._state) > MAX_KEYS:
                full = [k for k, (t, _) in self._state.items() if t >= self.capacity - cost]
                for k in full[: len(self._state) - MAX_KEYS // 2]:
                    del self._state[k]
            return 0.0

    def wait(self, key: str) -> float:
        """Seconds until ``key`` has a token again (0.0: it has one); spends nothing."""
        now = time.monotonic()
        with self._lock:
            level = self._level(key, now)
        return 0.0 if level >= 1.0 else (1.0 - level) / self.rate


@dataclass(frozen=True)
class RateLimits:
    """The limits (defaults are generous for real stores: a store syncs a burst every few seconds)."""

    burst_rate: float = 200.0
    burst_burst: float = 1000.0
    burst_inflight: float = 2.0
    enroll_per_min: float = 10.0
    enroll_burst: float = 20.0
    auth_fail_per_min: float = 30.0
    auth_fail_burst: float = 60.0

    @classmethod
    def from_env(cls) -> RateLimits:
        """Defaults, each overridable as ``CLOUD_HUB_RATE_<FIELD>`` (e.g. ``CLOUD_HUB_RATE_ENROLL_PER_MIN=5``).

        Raises:
            ConfigError: a value that is not a positive number.
        """
        out = cls()
        for f in fields(cls):
            raw = os.environ.get(f"CLOUD_HUB_RATE_{f.name.upper()}")
            if raw:
                try:
                    value = float(raw)
                except ValueError:
                    value = -1.0
                if not value > 0:
                    raise ConfigError(f"CLOUD_HUB_RATE_{f.name.upper()} must be a positive number, not {raw!r}")
                out = replace(out, **{f.name: value})
        return out


class RateLimiter:
    """The hub's buckets."""

    def __init__(self, limits: RateLimits | None = None) -> None:
        lim = limits or RateLimits()
        self.bursts = Bucket(lim.burst_rate, lim.burst_burst)
        self.enrolls = Bucket(lim.enroll_per_min / 60.0, lim.enroll_burst)
        self.auth_failures = Bucket(lim.auth_fail_per_min / 60.0, lim.auth_fail_burst)
        self.max_inflight = max(1, int(lim.burst_inflight))
        self._inflight: dict[str, int] = {}
        self._inflight_lock = threading.Lock()

    def check_source(self, source: str) -> None:
        """Refuse an address whose failed-authentication budget is spent.

        Raises:
            RateLimited: 429 with the seconds until one more attempt is allowed.
        """
        wait = self.auth_failures.wait(source)
        if wait > 0:
            raise RateLimited("too many failed authentications from this address; wait and retry", wait)

    def failed_auth(self, source: str) -> None:
        """Count one 401 against ``source``."""
        self.auth_failures.take(source)

    def enroll(self, source: str) -> None:
        """Count one enrollment attempt; raises RateLimited when the address made too many."""
        wait = self.enrolls.take(source)
        if wait > 0:
            raise RateLimited("too many enrollment attempts from this address; wait and retry", wait)

    def begin(self, key_id: str) -> None:
        """One more burst of this store is being handled; raises RateLimited when it has too many.

        Every successful ``begin`` must be followed by :meth:`end`.
        """
        with self._inflight_lock:
            busy = self._inflight.get(key_id, 0)
            if busy >= self.max_inflight:
                raise RateLimited("this store already has bursts being handled; send one at a time", 1)
            self._inflight[key_id] = busy + 1

    def end(self, key_id: str) -> None:
        """A burst of this store is answered."""
        with self._inflight_lock:
            busy = self._inflight.get(key_id, 1) - 1
            if busy > 0:
                self._inflight[key_id] = busy
            else:
                self._inflight.pop(key_id, None)

    def burst(self, key_id: str) -> None:
        """Count one burst of a store's key; raises RateLimited when the store sends too fast."""
        wait = self.bursts.take(key_id)
        if wait > 0:
            raise RateLimited("this store sends bursts faster than the hub takes them; back off and retry", wait)


Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def parse_networks(values: Iterable[str]) -> tuple[Network, ...]:
    """Addresses or CIDR networks (``10.0.0.5``, ``10.0.0.0/24``, ``::1``).

    Raises:
        ValueError: naming the entry that is neither.
    """
    out = []
    for value in values:
        try:
            out.append(ipaddress.ip_network(value.strip(), strict=False))
        except ValueError:
            raise ValueError(f"{value!r} is not an IP address or network") from None
    return tuple(out)


def _ip(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    text = text.strip().strip("[]")
    try:
        addr = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        return addr.ipv4_mapped
    return addr


def _trusted(addr: ipaddress.IPv4Address | ipaddress.IPv6Address | None, proxies: Sequence[Network]) -> bool:
    return addr is not None and any(addr.version == net.version and addr in net for net in proxies)


def client_source(scope: Scope, proxies: Sequence[Network]) -> str:
    """The address a request is counted against: the peer, or what a trusted proxy says the client was."""
    peer = str((scope.get("client") or ("unknown",))[0])
    if not proxies or not _trusted(_ip(peer), proxies):
        return peer
    hops: list[str] = []
    for name, value in scope.get("headers", ()):
        if name == b"x-forwarded-for":
            hops.extend(h.strip() for h in value.decode("latin-1").split(","))
    source = peer
    for hop in reversed([h for h in hops if h]):
        addr = _ip(hop)
        source = str(addr) if addr is not None else hop[:64]
        if not _trusted(addr, proxies):
            break
    return source


class LimitMiddleware:
    """ASGI: per-source checks in front of bursts, enrollment and admin; every 401 is counted."""

    def __init__(self, app: ASGIApp, limiter: RateLimiter, trusted_proxies: Sequence[Network] = ()) -> None:
        self.app = app
        self.limiter = limiter
        self.trusted_proxies = tuple(trusted_proxies)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope["path"].startswith(GUARDED):
            await self.app(scope, receive, send)
            return
        source = client_source(scope, self.trusted_proxies)
        try:
            self.limiter.check_source(source)
            if scope["path"] == ENROLL_PATH and scope["method"] == "POST":
                self.limiter.enroll(source)
        except RateLimited as exc:
            payload = json.dumps(exc.body()).encode()
            headers = [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(payload)).encode()),
                (b"retry-after", str(exc.retry_after).encode()),
            ]
            await send({"type": "http.response.start", "status": 429, "headers": headers})
            await send({"type": "http.response.body", "body": payload})
            return

        async def counting(message: Message) -> None:
            if message["type"] == "http.response.start" and message["status"] == 401:
                self.limiter.failed_auth(source)
            await send(message)

        await self.app(scope, receive, counting)
