"""The hub's own listening socket: connections it accepts send small writes at once (TCP_NODELAY).

A burst answer is written as headers, then body. Without TCP_NODELAY on the accepted socket, Nagle held
the body until the client's delayed ACK (~40 ms on Linux): every one-record burst took ~48 ms instead of
~5 ms. asyncio sets the option itself, but only on sockets whose protocol is IPPROTO_TCP.
"""

from __future__ import annotations

import asyncio
import socket

import pytest

from cloud_hub.cli.serve import _listen


@pytest.mark.parametrize("host", ["127.0.0.1", "::1"])
def test_connections_the_hub_accepts_have_tcp_nodelay(host: str) -> None:
    if host == "::1" and not socket.has_ipv6:
        pytest.skip("no IPv6 on this machine")
    try:
        listener = _listen(host, 0)
    except Exception as exc:  # noqa: BLE001 - an IPv6-less kernel refuses ::1
        if host == "::1":
            pytest.skip(f"cannot listen on ::1 here: {exc}")
        raise
    seen: list[int] = []

    async def main() -> None:
        async def accepted(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            seen.append(writer.get_extra_info("socket").getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))
            writer.close()

        server = await asyncio.start_server(accepted, sock=listener)
        port = listener.getsockname()[1]
        async with server:
            _, w = await asyncio.open_connection(host, port)
            for _ in range(100):
                if seen:
                    break
                await asyncio.sleep(0.01)
            w.close()

    asyncio.run(main())
    assert seen and seen[0] != 0
