"""Just enough HTTP/1.1 framing to find message boundaries on a byte stream, for the fault proxy.

It reads heads and bodies (Content-Length, chunked with trailers, or delimited by the connection closing)
as raw bytes, so a proxy can forward them unchanged or cut them at a chosen point.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import struct
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import Any

MAX_HEAD = 64 * 1024
MAX_BODY = 256 * 1024 * 1024
MAX_CHUNKS = 1_000_000
REASONS = {429: "Too Many Requests", 500: "Internal Server Error", 502: "Bad Gateway", 503: "Service Unavailable"}


class FramingError(Exception):
    """The bytes on the wire cannot be framed as HTTP/1.1."""


@dataclass(frozen=True)
class Head:
    """A parsed HTTP message head: the raw bytes, the start line and lower-cased headers."""

    raw: bytes
    start: tuple[str, ...]
    headers: dict[str, str]

    @property
    def close(self) -> bool:
        """Whether this message ends its connection (``Connection: close`` or HTTP/1.0)."""
        tokens = {t.strip().lower() for t in self.headers.get("connection", "").split(",")}
        version = self.start[0] if self.start[0].startswith("HTTP/") else self.start[-1]
        return "close" in tokens or (version == "HTTP/1.0" and "keep-alive" not in tokens)


async def read_head(reader: asyncio.StreamReader) -> Head | None:
    """Read one message head; ``None`` on a clean end of stream before its first byte.

    Raises:
        FramingError: on a truncated, oversized or malformed head.
    """
    try:
        raw = await reader.readuntil(b"\r\n\r\n")
    except asyncio.IncompleteReadError as exc:
        if not exc.partial:
            return None
        raise FramingError("stream ended inside a message head") from exc
    except asyncio.LimitOverrunError as exc:
        raise FramingError("message head too large") from exc
    lines = raw[:-4].decode("latin-1").split("\r\n")
    start = tuple(lines[0].split(" ", 2))
    if len(start) < 2:
        raise FramingError(f"bad start line {lines[0]!r}")
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, sep, value = line.partition(":")
        if not sep:
            raise FramingError(f"bad header line {line!r}")
        key = name.strip().lower()
        headers[key] = f"{headers[key]}, {value.strip()}" if key in headers else value.strip()
    return Head(raw, start, headers)


def body_framing(head: Head, request_method: str | None = None) -> tuple[str, int]:
    """How the body after ``head`` is delimited: ``("length", n)``, ``("chunked", 0)`` or ``("close", 0)``.

    Args:
        head: a request head, or a response head when ``request_method`` is given.
        request_method: the method of the request a response answers.
    """
    if request_method is not None:
        status = int(head.start[1])
        if request_method == "HEAD" or 100 <= status < 200 or status in (204, 304):
            return ("length", 0)
    if "chunked" in head.headers.get("transfer-encoding", "").lower():
        return ("chunked", 0)
    if "content-length" in head.headers:
        n = int(head.headers["content-length"].split(",")[0])
        if not 0 <= n <= MAX_BODY:
            raise FramingError(f"Content-Length {n} out of range")
        return ("length", n)
    return ("length", 0) if request_method is None else ("close", 0)


async def iter_body(reader: asyncio.StreamReader, framing: tuple[str, int]) -> AsyncIterator[bytes]:
    """Yield the raw bytes of one message body (chunk framing included), bounded by ``MAX_BODY``.

    Raises:
        FramingError: when the stream ends early or the body is malformed or too large.
    """
    kind, left = framing
    total = 0
    try:
        if kind == "chunked":
            for _ in range(MAX_CHUNKS):
                line = await reader.readuntil(b"\r\n")
                size = int(line.split(b";", 1)[0].strip(), 16)
                total += size
                if total > MAX_BODY:
                    raise FramingError("chunked body too large")
                if size == 0:
                    yield line
                    for _ in range(256):
                        trailer = await reader.readuntil(b"\r\n")
                        yield trailer
                        if trailer == b"\r\n":
                            return
                    raise FramingError("too many trailers")
                yield line + await reader.readexactly(size + 2)
            raise FramingError("too many chunks")
        while kind == "close" or left > 0:
            piece = await reader.read(65536 if kind == "close" else min(left, 65536))
            if not piece:
                if kind == "close":
                    return
                raise FramingError("stream ended inside a body")
            left -= len(piece)
            total += len(piece)
            if total > MAX_BODY:
                raise FramingError("body too large")
            yield piece
    except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError) as exc:
        raise FramingError(f"bad body: {exc}") from exc


async def read_body(reader: asyncio.StreamReader, framing: tuple[str, int]) -> bytes:
    """The whole body after a head, raw (see :func:`iter_body`)."""
    return b"".join([piece async for piece in iter_body(reader, framing)])


async def flush(writer: asyncio.StreamWriter) -> None:
    """Drain ``writer`` until its transport buffer is empty (bounded to about a second)."""
    await writer.drain()
    for _ in range(200):
        if writer.transport.get_write_buffer_size() == 0:
            return
        await asyncio.sleep(0.005)


async def close_stream(writer: asyncio.StreamWriter | None, rst: bool = False) -> None:
    """Close ``writer``: cleanly (FIN) or, with ``rst``, by a TCP reset (``SO_LINGER`` 0)."""
    if writer is None:
        return
    if rst:
        sock = writer.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        writer.transport.abort()
    else:
        writer.close()
    with contextlib.suppress(Exception):
        await asyncio.wait_for(writer.wait_closed(), 1.0)


def simple_response(status: int, payload: Mapping[str, Any], extra: Mapping[str, str] | None = None) -> bytes:
    """A complete HTTP/1.1 response with a JSON body and optional extra headers."""
    body = json.dumps(payload, sort_keys=True).encode()
    lines = [f"HTTP/1.1 {status} {REASONS.get(status, 'Status')}", "Content-Type: application/json"]
    lines += [f"{k}: {v}" for k, v in (extra or {}).items()]
    lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body
