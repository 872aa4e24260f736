"""A loopback HTTP proxy that makes the hub's clock look shifted to the edge agent.

The agent estimates its clock offset θ from the hub's ``hub_received_at`` / ``hub_sent_at`` (DESIGN §5).
This proxy forwards every request unchanged and moves those two times in burst answers by
``shift_s``, which is what an agent whose own clock is off by ``-shift_s`` sees. The hub then corrects
the agent's capture times by θ ≈ ``shift_s``: a test can place "the corrected capture time" anywhere
(e.g. in a fall-back hour months ago) with real processes and real clocks.

In-process::

    with ClockShiftProxy(upstream_port=hub.port, shift_s=-3600) as proxy:
        agent enrolls with proxy.url ...
        proxy.shift_s = 0
"""

from __future__ import annotations

import json
import threading
from datetime import datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx

SHIFTED = ("hub_received_at", "hub_sent_at")
_HOP = {"connection", "keep-alive", "transfer-encoding", "content-length", "content-encoding", "host"}


def shift_times(doc: Any, shift_s: float) -> Any:
    """``doc`` with its ``hub_received_at`` / ``hub_sent_at`` moved by ``shift_s`` (other values kept)."""
    if not isinstance(doc, dict):
        return doc
    out = dict(doc)
    for key in SHIFTED:
        value = out.get(key)
        if isinstance(value, str):
            moment = datetime.fromisoformat(value.replace("Z", "+00:00")) + timedelta(seconds=shift_s)
            out[key] = moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")
    return out


class ClockShiftProxy:
    """Forward ``127.0.0.1:<port>`` to the hub, shifting the hub's times in its answers.

    Args:
        upstream_port: The hub's port on 127.0.0.1.
        shift_s: Seconds added to the hub's times (may be changed while running).
    """

    def __init__(self, upstream_port: int, shift_s: float = 0.0) -> None:
        self.upstream = f"http://127.0.0.1:{upstream_port}"
        self.shift_s = shift_s
        self._client = httpx.Client(timeout=30)
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:  # quiet
                pass

            def _relay(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                headers = {k: v for k, v in self.headers.items() if k.lower() not in {"host", "connection"}}
                try:
                    r = proxy._client.request(self.command, proxy.upstream + self.path, content=body, headers=headers)
                except httpx.HTTPError:
                    self.send_error(502)
                    return
                payload = r.content
                if r.headers.get("content-type", "").startswith("application/json"):
                    try:
                        payload = json.dumps(shift_times(r.json(), proxy.shift_s)).encode()
                    except ValueError:
                        pass
                self.send_response(r.status_code)
                for key, value in r.headers.items():
                    if key.lower() not in _HOP:
                        self.send_header(key, value)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            do_GET = do_POST = _relay

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="clockshift", daemon=True)

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> ClockShiftProxy:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._client.close()
