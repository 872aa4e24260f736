"""Physical limits of this machine, each measured in one process (one core) unless it says otherwise.

- ``sqlite_fsync``: single-row commits/s, WAL + ``synchronous=FULL`` (one fsync per commit);
- ``ed25519``: signs/s and verifies/s of a 32-byte chain value (``cryptography``, one core);
- ``sha256``: hashes/s of a 600-byte body (one core);
- ``http_loopback``: requests/s of a bare ASGI app under uvicorn (the server both processes use),
  from 1 and from 4 keep-alive clients posting a 600-byte body: nothing above HTTP is done.

    python bench/ceilings.py
"""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from measure import SRC
from peers import run_clients, sqlite_fsync_ceiling
from storesync_harness.processes import free_port, wait_http
from sync_protocol import keys

BARE_APP = """
async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    while True:
        msg = await receive()
        if not msg.get("more_body"):
            break
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"application/json")]})
    await send({"type": "http.response.body", "body": b'{"ok":true}'})
"""


def _rate(fn: Any, seconds: float) -> float:
    n, t0 = 0, time.perf_counter()
    while True:
        for _ in range(100):
            fn()
        n += 100
        wall = time.perf_counter() - t0
        if wall >= seconds:
            return n / wall


def ed25519(seconds: float = 1.0) -> dict[str, Any]:
    key = keys.generate()
    pub = key.public_key()
    msg = hashlib.sha256(b"chain").digest()
    sig = keys.sign(key, msg)
    signs = _rate(lambda: keys.sign(key, msg), seconds)
    verifies = _rate(lambda: keys.verify(pub, sig, msg), seconds)
    return {"signs_per_s": round(signs), "verifies_per_s": round(verifies), "cores": 1}


def sha256(seconds: float = 0.5) -> dict[str, Any]:
    body = b"x" * 600
    return {"hashes_per_s": round(_rate(lambda: hashlib.sha256(body).digest(), seconds)), "bytes": 600, "cores": 1}


def _http_client(port: int, n: int, go: Any, out: Any) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    body = b"x" * 600
    conn.request("POST", "/", body)
    conn.getresponse().read()
    lat: list[float] = []
    go.wait()
    start = time.perf_counter()
    for _ in range(n):
        t0 = time.perf_counter()
        conn.request("POST", "/", body, {"Content-Type": "application/json"})
        conn.getresponse().read()
        lat.append(time.perf_counter() - t0)
    end = time.perf_counter()
    conn.close()
    out.put((lat, 0, start, end))


def http_loopback(requests: int = 4_000) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="bench-bare-") as tmp:
        Path(tmp, "bare_asgi.py").write_text(BARE_APP)
        port = free_port()
        argv = [sys.executable, "-m", "uvicorn", "bare_asgi:app", "--app-dir", tmp, "--port", str(port),
                "--log-level", "warning", "--no-access-log"]  # fmt: skip
        proc = subprocess.Popen(argv, env={**os.environ, "PYTHONPATH": str(SRC)})
        try:
            wait_http(f"http://127.0.0.1:{port}/", 20, proc)
            one_lat, _, one_wall = run_clients(_http_client, [(port, requests // 4)])
            four_lat, _, four_wall = run_clients(_http_client, [(port, requests // 4) for _ in range(4)])
        finally:
            proc.terminate()
            proc.wait(10)
    return {
        "server": "uvicorn, bare ASGI app", "one_client_per_s": round(len(one_lat) / one_wall),
        "four_clients_per_s": round(len(four_lat) / four_wall),
    }  # fmt: skip


def all_ceilings(folder: Path, emit: Any, quick: bool = False) -> None:
    """Emit one ``ceiling`` figure per limit (``quick``: shorter samples)."""
    load0 = os.getloadavg()[0]
    secs = 0.3 if quick else 1.0
    found = {
        "sqlite_fsync": sqlite_fsync_ceiling(folder, seconds=secs),
        "ed25519": ed25519(secs),
        "sha256": sha256(secs / 2),
        "http_loopback": http_loopback(800 if quick else 4_000),
    }
    load = {"start": round(load0, 2), "end": round(os.getloadavg()[0], 2)}
    for name, values in found.items():
        emit({"bench": "ceiling", "limit": name, **values, "load_avg_1m": load})


def table_line(f: dict[str, Any]) -> str:
    values = ", ".join(f"{k} {v}" for k, v in f.items() if k not in ("bench", "limit", "load_avg_1m"))
    return f"ceiling   {f['limit']}: {values}; load {f['load_avg_1m']}"


def main() -> int:
    with tempfile.TemporaryDirectory(prefix="bench-ceilings-") as tmp:
        all_ceilings(Path(tmp), lambda f: print(json.dumps(f), flush=True), quick="--quick" in sys.argv)
    return 0


if __name__ == "__main__":
    sys.exit(main())
