"""A plain TCP forwarder on loopback that a test can cut and restore, to take a database away from a
running hub without touching the database server (others on the machine use it).

::

    with TcpCut(5432) as cut:            # hub connects to 127.0.0.1:cut.port instead of 5432
        cut.cut()                        # every open connection reset, new ones closed at once
        cut.restore()                    # connections pass again

Protocol-agnostic (PostgreSQL, NATS, anything over TCP); :mod:`storesync_harness.faultproxy` is the
HTTP-aware proxy for agent-to-hub faults.
"""

from __future__ import annotations

import contextlib
import socket
import struct
import threading

LOOPBACK = "127.0.0.1"
CHUNK = 65536


class TcpCut:
    """Forward ``127.0.0.1:port`` to ``upstream_host:upstream_port`` until cut.

    Attributes:
        port: The listening port (chosen when ``port`` is 0).
        connections: How many connections were accepted in all.
    """

    def __init__(self, upstream_port: int, upstream_host: str = LOOPBACK, port: int = 0) -> None:
        self.upstream = (upstream_host, upstream_port)
        self._listener = socket.create_server((LOOPBACK, port), reuse_port=False)
        self.port = int(self._listener.getsockname()[1])
        self.connections = 0
        self._open = threading.Event()
        self._open.set()
        self._live: set[socket.socket] = set()
        self._guard = threading.Lock()
        self._stopped = False
        self._thread = threading.Thread(target=self._accept, name="tcpcut", daemon=True)

    def start(self) -> TcpCut:
        self._thread.start()
        return self

    def cut(self) -> None:
        """Reset every open connection; close new ones as soon as they arrive."""
        self._open.clear()
        with self._guard:
            live, self._live = self._live, set()
        for s in live:
            _reset(s)

    def restore(self) -> None:
        """Let connections through again."""
        self._open.set()

    def stop(self) -> None:
        self._stopped = True
        self.cut()
        with contextlib.suppress(OSError):
            self._listener.close()
        self._thread.join(5)

    def __enter__(self) -> TcpCut:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _accept(self) -> None:
        while not self._stopped:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            self.connections += 1
            if not self._open.is_set():
                _reset(client)
                continue
            try:
                upstream = socket.create_connection(self.upstream, timeout=5)
                upstream.settimeout(None)
            except OSError:
                _reset(client)
                continue
            for sock in (client, upstream):  # forward small writes at once, as the ends expect (no Nagle wait)
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            with self._guard:
                self._live.update((client, upstream))
            for src, dst in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(src, dst), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket) -> None:
        try:
            while True:
                data = src.recv(CHUNK)
                if not data:
                    break
                dst.sendall(data)
        except OSError:
            pass
        finally:
            with self._guard:
                self._live.discard(src)
                self._live.discard(dst)
            _reset(src)
            _reset(dst)


def _reset(s: socket.socket) -> None:
    """Close with RST (SO_LINGER 0), so the peer sees the connection break at once."""
    with contextlib.suppress(OSError):
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    with contextlib.suppress(OSError):
        s.shutdown(socket.SHUT_RDWR)
    with contextlib.suppress(OSError):
        s.close()
