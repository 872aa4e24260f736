"""Loopback TCP fault proxy that sits between the edge agent and the cloud hub.

It forwards HTTP/1.1 from ``127.0.0.1:<listen>`` to ``127.0.0.1:<upstream>`` and, when told to, breaks a
specific request in a specific way: refuses connections, drops or stalls requests, resets or truncates
responses, answers 5xx storms itself, or lets the hub commit and then loses the answer. See
``docs/faults.md``.

In-process::

    with FaultProxy(upstream_port=hub.port) as proxy:
        proxy.set_mode("reset_mid_response", bytes=40, count=1)

As a process, switched through its control port (``POST /mode``, ``GET /stats``)::

    python -m storesync_harness.faultproxy --listen 9001 --upstream 9000 --control 9002
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import signal
import sys
import threading
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any, NamedTuple

import httpx

from storesync_harness.httpframing import (
    MAX_HEAD,
    FramingError,
    body_framing,
    close_stream,
    flush,
    iter_body,
    read_body,
    read_head,
    simple_response,
)

LOOPBACK = "127.0.0.1"
FAULT_KINDS = (
    "refuse",
    "drop",
    "stall",
    "reset_mid_response",
    "truncate_body",
    "http_5xx_storm",
    "after_commit_drop",
)
MODES = ("pass", *FAULT_KINDS, "random")
MAX_REQUESTS_PER_CONNECTION = 100_000
MAX_STALL = 3600.0
UPSTREAM_REUSE = 1.0  # seconds an idle upstream connection is reused; hubs keep idle ones for longer


@dataclass(frozen=True)
class FaultSpec:
    """What the proxy does to the traffic; see ``docs/faults.md`` for each field."""

    mode: str = "pass"
    seconds: float | None = None
    bytes: int | None = None
    status: int = 503
    statuses: tuple[int, ...] = ()
    retry_after: int | None = 1
    rst: bool = False
    count: int | None = None
    skip: int = 0
    path_prefix: str = ""
    probabilities: Mapping[str, float] = field(default_factory=dict)
    seed: int = 0

    @classmethod
    def build(cls, mode: str, **params: Any) -> FaultSpec:
        """Validate ``mode`` and its parameters.

        Raises:
            ValueError: on an unknown mode, parameter or fault kind, or probabilities above 1.
        """
        if mode not in MODES:
            raise ValueError(f"unknown mode {mode!r}; expected one of {', '.join(MODES)}")
        unknown = set(params) - set(cls.__dataclass_fields__) - {"mode"}
        if unknown:
            raise ValueError(f"unknown parameters: {', '.join(sorted(unknown))}")
        params = dict(params)
        if "statuses" in params:
            params["statuses"] = tuple(int(s) for s in params["statuses"])
        probs = {str(k): float(v) for k, v in dict(params.pop("probabilities", {}) or {}).items()}
        if set(probs) - set(FAULT_KINDS):
            raise ValueError(f"unknown fault kinds in probabilities: {sorted(set(probs) - set(FAULT_KINDS))}")
        if any(p < 0 for p in probs.values()) or sum(p for k, p in probs.items() if k != "refuse") > 1:
            raise ValueError("probabilities must be >= 0 and the per-request ones must sum to <= 1")
        if params.get("count") is not None and int(params["count"]) < 1:
            raise ValueError("count must be >= 1 (or null for no limit)")
        return cls(mode=mode, probabilities=probs, **params)

    def to_json(self) -> dict[str, Any]:
        """The spec as plain JSON values."""
        out = asdict(self)
        out["statuses"] = list(self.statuses)
        out["probabilities"] = dict(self.probabilities)
        return out


class Decision(NamedTuple):
    """The fault (or ``pass``) chosen for one connection or request."""

    kind: str
    spec: FaultSpec
    status: int = 503


class FaultProxy:
    """An asyncio HTTP/1.1-aware TCP proxy on loopback that injects faults on demand.

    Args:
        upstream_port: the port on 127.0.0.1 to forward to (the hub).
        listen_port: the port to listen on; 0 picks a free one (see ``.port``).
        control_port: if not ``None``, also serve the HTTP control endpoint there (0 picks one).
        idle_timeout: seconds a client connection may sit idle between requests.
        upstream_timeout: seconds to wait for the upstream's response head.
    """

    def __init__(
        self,
        upstream_port: int,
        listen_port: int = 0,
        control_port: int | None = None,
        idle_timeout: float = 120.0,
        upstream_timeout: float = 120.0,
    ) -> None:
        self.upstream_port = upstream_port
        self.port = listen_port
        self.control_port = control_port
        self.idle_timeout = idle_timeout
        self.upstream_timeout = upstream_timeout
        self._lock = threading.Lock()
        self._spec = FaultSpec()
        self._rng = random.Random(0)
        self._skip_left = 0
        self._count_left: int | None = None
        self._stats = self._zero_stats()
        self._events: deque[dict[str, Any]] = deque(maxlen=1000)
        self._tasks: set[asyncio.Task[Any]] = set()
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._thread: threading.Thread | None = None

    # ----------------------------------------------------------------- control

    @property
    def url(self) -> str:
        """The base URL clients use instead of the upstream's."""
        return f"http://{LOOPBACK}:{self.port}"

    def set_mode(self, mode: str, **params: Any) -> FaultSpec:
        """Switch the fault mode now; counters ``skip`` and ``count`` and the random seed restart.

        Raises:
            ValueError: on an invalid mode or parameter (the current mode stays).
        """
        spec = FaultSpec.build(mode, **params)
        with self._lock:
            self._spec = spec
            self._rng = random.Random(spec.seed)
            self._skip_left = spec.skip
            self._count_left = spec.count
        return spec

    @property
    def mode(self) -> FaultSpec:
        """The fault spec now in force (``pass`` once a ``count`` is used up)."""
        with self._lock:
            return self._spec

    @staticmethod
    def _zero_stats() -> dict[str, Any]:
        return {
            "connections": 0,
            "requests": 0,
            "upstream_requests": 0,
            "responses": 0,
            "faults": dict.fromkeys(FAULT_KINDS, 0),
        }

    def stats(self) -> dict[str, Any]:
        """Counters: connections, requests seen, forwarded, answered, and faults injected per kind."""
        with self._lock:
            out = dict(self._stats, faults=dict(self._stats["faults"]))
            out["mode"] = self._spec.to_json()
            out["active_connections"] = len(self._tasks)
        return out

    def events(self) -> list[dict[str, Any]]:
        """The last 1,000 decisions: request number, path and the kind applied."""
        with self._lock:
            return list(self._events)

    def reset_stats(self) -> None:
        """Zero the counters and forget the events."""
        with self._lock:
            self._stats = self._zero_stats()
            self._events.clear()

    def _bump(self, key: str) -> None:
        with self._lock:
            self._stats[key] += 1

    def _decide(self, path: str | None) -> Decision:
        """Pick the fault for a new connection (``path`` None) or for a request on ``path``."""
        with self._lock:
            spec = self._spec
            if spec.mode == "pass" or (path is not None and not path.startswith(spec.path_prefix)):
                return Decision("pass", spec)
            if path is None and spec.mode not in ("refuse", "random"):
                return Decision("pass", spec)
            if path is not None and self._skip_left > 0:
                self._skip_left -= 1
                return Decision("pass", spec)
            kind = spec.mode
            if kind == "random":
                kind, roll, acc = "pass", self._rng.random(), 0.0
                for k in FAULT_KINDS:
                    if (k == "refuse") != (path is None):
                        continue
                    acc += spec.probabilities.get(k, 0.0)
                    if roll < acc:
                        kind = k
                        break
            if kind == "pass":
                return Decision("pass", spec)
            status = self._rng.choice(spec.statuses) if spec.statuses else spec.status
            self._stats["faults"][kind] += 1
            self._events.append({"request": self._stats["requests"], "path": path, "kind": kind})
            if self._count_left is not None:
                self._count_left -= 1
                if self._count_left <= 0:
                    self._spec, self._count_left = FaultSpec(), None
            return Decision(kind, spec, status)

    # ------------------------------------------------------------------ proxy

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        self._bump("connections")
        upstream: list[asyncio.StreamWriter | None] = [None]
        rst = False
        try:
            rst = await self._serve_connection(reader, writer, upstream)
        except (FramingError, OSError, TimeoutError, asyncio.IncompleteReadError, ValueError):
            rst = True
        finally:
            await close_stream(upstream[0])
            await close_stream(writer, rst=rst)
            self._tasks.discard(task)

    async def _serve_connection(
        self,
        creader: asyncio.StreamReader,
        cwriter: asyncio.StreamWriter,
        upstream: list[asyncio.StreamWriter | None],
    ) -> bool:
        """Serve requests on one client connection; returns whether to end it with a reset."""
        if self._decide(None).kind == "refuse":
            # Half-close at once, then swallow what the client sends: a FIN, never a racy RST.
            cwriter.write_eof()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(5):
                    for _ in range(1024):
                        if not await creader.read(65536):
                            break
            return False
        ureader: asyncio.StreamReader | None = None
        loop, last_used = asyncio.get_running_loop(), 0.0
        for _ in range(MAX_REQUESTS_PER_CONNECTION):
            async with asyncio.timeout(self.idle_timeout):
                head = await read_head(creader)
                if head is None:
                    return False
                body = await read_body(creader, body_framing(head))
            method, path = head.start[0], head.start[1]
            self._bump("requests")
            decision = self._decide(path)
            kind, spec = decision.kind, decision.spec
            if kind in ("refuse", "drop"):
                return False
            if kind == "stall":
                await self._stall(creader, spec.seconds)
                return False
            if kind == "http_5xx_storm":
                extra = {"Retry-After": str(spec.retry_after)} if spec.retry_after is not None else {}
                if decision.status not in (429, 503):
                    extra = {}
                if head.close:
                    extra["Connection"] = "close"
                payload = {"error": "injected by fault proxy", "status": decision.status}
                cwriter.write(simple_response(decision.status, payload, extra))
                await flush(cwriter)
                if head.close:
                    return False
                continue
            uwriter = upstream[0]
            # Reuse the upstream connection only while it is fresh, so the upstream's own keep-alive
            # timeout never closes it under a request (which would look like an injected fault).
            if uwriter is None or ureader is None or ureader.at_eof() or loop.time() - last_used > UPSTREAM_REUSE:
                await close_stream(uwriter)
                ureader, uwriter = await asyncio.open_connection(LOOPBACK, self.upstream_port, limit=MAX_HEAD)
                upstream[0] = uwriter
            uwriter.write(head.raw + body)
            await uwriter.drain()
            self._bump("upstream_requests")
            last_used = loop.time()
            async with asyncio.timeout(self.upstream_timeout):
                rhead = await read_head(ureader)
                for _ in range(16):  # interim 1xx responses go straight through
                    if rhead is None or not rhead.start[1].startswith("1") or rhead.start[1] == "101":
                        break
                    cwriter.write(rhead.raw)
                    rhead = await read_head(ureader)
            if rhead is None:
                raise FramingError("upstream closed without a response")
            framing = body_framing(rhead, method)
            upstream_done = rhead.close or framing[0] == "close"
            if kind == "pass":
                cwriter.write(rhead.raw)
                async for piece in iter_body(ureader, framing):
                    cwriter.write(piece)
                    await cwriter.drain()
                await flush(cwriter)
                self._bump("responses")
                last_used = loop.time()
                if upstream_done:
                    await close_stream(upstream[0])
                    upstream[0] = ureader = None
                if head.close or upstream_done:
                    return False
                continue
            rbody = await read_body(ureader, framing)
            if kind == "after_commit_drop":
                return spec.rst
            whole = rhead.raw + rbody
            if kind == "reset_mid_response":
                k = len(whole) // 2 if spec.bytes is None else spec.bytes
                cwriter.write(whole[: max(0, min(k, len(whole) - 1))])
                await flush(cwriter)
                return True
            # truncate_body: the head and part of the body, then a clean close.
            if rbody:
                k = len(rbody) // 2 if spec.bytes is None else spec.bytes
                cwriter.write(rhead.raw + rbody[: max(0, min(k, len(rbody) - 1))])
            else:
                cwriter.write(rhead.raw[: len(rhead.raw) // 2])
            await flush(cwriter)
            return False
        return False

    async def _stall(self, reader: asyncio.StreamReader, seconds: float | None) -> None:
        """Forward nothing for ``seconds`` (``None``: up to ``MAX_STALL``) or until the client leaves."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + min(MAX_STALL, MAX_STALL if seconds is None else seconds)
        for _ in range(10_000):
            left = deadline - loop.time()
            if left <= 0:
                return
            try:
                if not await asyncio.wait_for(reader.read(65536), left):
                    return
            except TimeoutError:
                return

    # ----------------------------------------------------------- control HTTP

    async def _control(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            async with asyncio.timeout(10):
                head = await read_head(reader)
                if head is None:
                    return
                body = await read_body(reader, body_framing(head))
            status, payload = self._control_route(head.start[0], head.start[1].split("?")[0], body)
            writer.write(simple_response(status, payload, {"Connection": "close"}))
            await flush(writer)
        except (FramingError, OSError, TimeoutError, ValueError):
            pass
        finally:
            await close_stream(writer)

    def _control_route(self, method: str, path: str, body: bytes) -> tuple[int, dict[str, Any]]:
        if method == "GET" and path == "/healthz":
            return 200, {"ok": True}
        if method == "GET" and path == "/stats":
            return 200, self.stats()
        if method == "GET" and path == "/events":
            return 200, {"events": self.events()}
        if method == "POST" and path == "/reset":
            self.reset_stats()
            return 200, {"ok": True}
        if method == "POST" and path == "/stop":
            if self._loop is not None and self._stop is not None:
                self._loop.call_later(0.05, self._stop.set)
            return 200, {"ok": True}
        if method == "POST" and path == "/mode":
            try:
                params = json.loads(body or b"{}")
                if not isinstance(params, dict):
                    raise ValueError("body must be a JSON object")
                spec = self.set_mode(str(params.pop("mode", "pass")), **params)
            except (ValueError, TypeError) as exc:
                return 400, {"error": str(exc)}
            return 200, {"ok": True, "mode": spec.to_json()}
        return 404, {"error": f"no route {method} {path}"}

    # -------------------------------------------------------------- lifecycle

    async def serve(
        self,
        lifetime: float | None = None,
        on_ready: Callable[[], None] | None = None,
        install_signals: bool = False,
        watch_parent: bool = False,
    ) -> None:
        """Run until :meth:`stop`, ``POST /stop``, ``lifetime`` seconds, SIGTERM/SIGINT or parent exit.

        Args:
            lifetime: hard upper bound on the run time in seconds.
            on_ready: called once both listeners are bound.
            install_signals: stop on SIGTERM and SIGINT (main thread only).
            watch_parent: stop when the parent process goes away.
        """
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        server = await asyncio.start_server(self._handle, LOOPBACK, self.port, limit=MAX_HEAD)
        self.port = int(server.sockets[0].getsockname()[1])
        control: asyncio.Server | None = None
        if self.control_port is not None:
            control = await asyncio.start_server(self._control, LOOPBACK, self.control_port, limit=MAX_HEAD)
            self.control_port = int(control.sockets[0].getsockname()[1])
        if install_signals:
            for sig in (signal.SIGTERM, signal.SIGINT):
                self._loop.add_signal_handler(sig, self._stop.set)
        parent = os.getppid()
        self._ready.set()
        if on_ready is not None:
            on_ready()
        try:
            deadline = self._loop.time() + (lifetime if lifetime is not None else float("inf"))
            while not self._stop.is_set() and self._loop.time() < deadline:
                if watch_parent and os.getppid() != parent:
                    break
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stop.wait(), min(0.5, max(0.0, deadline - self._loop.time())))
        finally:
            server.close()
            if control is not None:
                control.close()
            tasks = list(self._tasks)
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            for s in (server, control):
                if s is not None:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(s.wait_closed(), 2.0)

    def _thread_main(self) -> None:
        try:
            asyncio.run(self.serve())
        except BaseException as exc:  # reported to start(); the thread must not die silently
            self._error = exc
            self._ready.set()

    def start(self, timeout: float = 10.0) -> FaultProxy:
        """Run the proxy in a background thread; returns once it listens.

        Raises:
            RuntimeError: when it cannot bind or does not come up within ``timeout``.
        """
        self._thread = threading.Thread(target=self._thread_main, name="faultproxy", daemon=True)
        self._thread.start()
        if not self._ready.wait(timeout) or self._error is not None:
            self.stop()
            raise RuntimeError(f"fault proxy did not start: {self._error!r}")
        return self

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the background proxy, cutting open connections; safe to call twice."""
        loop, stop = self._loop, self._stop
        if loop is not None and stop is not None and not loop.is_closed():
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(stop.set)
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def __enter__(self) -> FaultProxy:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def remote_set_mode(control_port: int, mode: str, timeout: float = 5.0, **params: Any) -> dict[str, Any]:
    """Switch the mode of a proxy process through its control port.

    Raises:
        httpx.HTTPStatusError: when the proxy rejects the mode.
    """
    r = httpx.post(f"http://{LOOPBACK}:{control_port}/mode", json={"mode": mode, **params}, timeout=timeout)
    r.raise_for_status()
    return dict(r.json())


def remote_stats(control_port: int, timeout: float = 5.0) -> dict[str, Any]:
    """The counters of a proxy process (``GET /stats``)."""
    r = httpx.get(f"http://{LOOPBACK}:{control_port}/stats", timeout=timeout)
    r.raise_for_status()
    return dict(r.json())


def main(argv: list[str] | None = None) -> int:
    """Command line: run a proxy process until SIGTERM, ``POST /stop``, ``--lifetime`` or parent exit."""
    p = argparse.ArgumentParser(prog="python -m storesync_harness.faultproxy", description=__doc__.split("\n")[0])
    p.add_argument("--listen", type=int, required=True, help="port on 127.0.0.1 to listen on (0: any)")
    p.add_argument("--upstream", type=int, required=True, help="port on 127.0.0.1 to forward to")
    p.add_argument("--control", type=int, default=None, help="port for the HTTP control endpoint (0: any)")
    p.add_argument("--mode", default="pass", choices=MODES, help="initial fault mode")
    p.add_argument("--params", default="{}", help="initial mode parameters as a JSON object")
    p.add_argument("--lifetime", type=float, default=3600.0, help="exit after this many seconds")
    args = p.parse_args(argv)
    proxy = FaultProxy(args.upstream, listen_port=args.listen, control_port=args.control)
    try:
        proxy.set_mode(args.mode, **json.loads(args.params))
    except (ValueError, TypeError) as exc:
        p.error(str(exc))

    def ready() -> None:
        info = {"listen": proxy.port, "upstream": proxy.upstream_port, "control": proxy.control_port}
        print(json.dumps(info), flush=True)

    asyncio.run(proxy.serve(args.lifetime, ready, install_signals=True, watch_parent=True))
    print(json.dumps({"stopped": True, **proxy.stats()}), file=sys.stderr, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
