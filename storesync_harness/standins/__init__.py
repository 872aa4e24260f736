"""Local stand-ins for remote systems we cannot run here: an ERPNext site, a Shopify store, and a
webhook receiver.

Each is a small Starlette app that runs as a real process::

    python -m storesync_harness.standins.erpnext --port P --record FILE
    python -m storesync_harness.standins.shopify --port P --record FILE
    python -m storesync_harness.standins.webhook_receiver --port P --record FILE

They enforce the documented request contract, answer like the real service (including its error
bodies and rate limits) and record every request, one JSON line per request in ``--record`` and in
memory. Common control endpoints (not part of the real services):

- ``GET /healthz`` — 200 once serving.
- ``GET /_standin/requests`` — every recorded request.
- ``POST /_standin/faults`` — ``{"fail_first": N, "fail_status": 503, "retry_after": 1,
  "lose_responses": N, "hang_s": 5, "answer_status": 400}``: fail the next N requests with
  ``fail_status``; process the next N requests but answer only after ``hang_s`` (an unknown outcome
  for a client with a shorter timeout); or answer every request with ``answer_status``.

:func:`start` launches one as a subprocess on a free loopback port (used by the tests).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from ..processes import Service, free_port


class Recorder:
    """Keeps every request in memory and, when given a path, appends it as a JSON line."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self.items: list[dict[str, Any]] = []
        self._lock = threading.Lock()

    def record(self, entry: dict[str, Any]) -> None:
        entry = {"at": round(time.time(), 3), **entry}
        with self._lock:
            self.items.append(entry)
            if self.path is not None:
                with open(self.path, "a", encoding="utf-8") as f:
                    f.write(json.dumps(entry, sort_keys=True, default=str) + "\n")
                    f.flush()


@dataclass
class Faults:
    """Injected failures, set through ``POST /_standin/faults``."""

    fail_first: int = 0
    fail_status: int = 503
    retry_after: int | None = 1
    lose_responses: int = 0
    hang_s: float = 5.0
    answer_status: int | None = None

    def update(self, doc: dict[str, Any]) -> None:
        for key in ("fail_first", "fail_status", "lose_responses"):
            if key in doc:
                setattr(self, key, int(doc[key]))
        if "retry_after" in doc:
            self.retry_after = None if doc["retry_after"] is None else int(doc["retry_after"])
        if "hang_s" in doc:
            self.hang_s = float(doc["hang_s"])
        if "answer_status" in doc:
            self.answer_status = None if doc["answer_status"] is None else int(doc["answer_status"])


@dataclass
class TokenBucket:
    """A leaky bucket: ``capacity`` units, refilled at ``rate`` units per second."""

    capacity: float
    rate: float
    level: float = -1.0
    stamp: float = field(default_factory=time.monotonic)

    def available(self) -> float:
        now = time.monotonic()
        if self.level < 0:
            self.level = self.capacity
        self.level = min(self.capacity, self.level + (now - self.stamp) * self.rate)
        self.stamp = now
        return self.level

    def take(self, amount: float) -> bool:
        if self.available() >= amount:
            self.level -= amount
            return True
        return False

    def wait_for(self, amount: float) -> float:
        return max(0.0, (amount - self.available()) / self.rate) if self.rate > 0 else 60.0


def control_routes(recorder: Recorder, faults: Faults) -> list[Route]:
    """``/healthz``, ``/_standin/requests`` and ``/_standin/faults``."""

    async def healthz(_: Request) -> Response:
        return JSONResponse({"ok": True})

    async def requests(_: Request) -> Response:
        return JSONResponse({"requests": recorder.items})

    async def set_faults(request: Request) -> Response:
        faults.update(await request.json())
        return JSONResponse(faults.__dict__)

    return [
        Route("/healthz", healthz),
        Route("/_standin/requests", requests),
        Route("/_standin/faults", set_faults, methods=["POST"]),
    ]


Handler = Callable[[], Awaitable[Response]]


async def with_faults(faults: Faults, failure: Callable[[int, int | None], Response], handler: Handler) -> Response:
    """Run ``handler`` under the injected faults; ``failure(status, retry_after)`` renders a failure."""
    if faults.answer_status is not None:
        return failure(faults.answer_status, None)
    if faults.fail_first > 0:
        faults.fail_first -= 1
        return failure(faults.fail_status, faults.retry_after)
    response = await handler()
    if faults.lose_responses > 0:
        faults.lose_responses -= 1
        await asyncio.sleep(faults.hang_s)
    return response


def parser(description: str) -> argparse.ArgumentParser:
    """The common command line: ``--host``, ``--port``, ``--record``."""
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--record", type=Path, default=None, help="append each request as a JSON line")
    return p


def serve(app: Any, host: str, port: int) -> None:
    """Run ``app`` with uvicorn until SIGTERM."""
    import uvicorn

    uvicorn.run(app, host=host, port=port, log_level="warning", access_log=False)


@dataclass
class StandIn:
    """A running stand-in process."""

    service: Service
    record: Path

    @property
    def url(self) -> str:
        return self.service.url

    def requests(self) -> list[dict[str, Any]]:
        return list(httpx.get(self.url + "/_standin/requests", timeout=5).json()["requests"])

    def faults(self, **kw: Any) -> None:
        httpx.post(self.url + "/_standin/faults", json=kw, timeout=5).raise_for_status()

    def get(self, path: str) -> Any:
        return httpx.get(self.url + path, timeout=5).json()

    def stop(self) -> None:
        self.service.stop()


def start(module: str, folder: Path, *args: str) -> StandIn:
    """Start ``storesync_harness.standins.<module>`` on a free port, recording into ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    port = free_port()
    record = folder / f"{module}.requests.jsonl"
    argv = [sys.executable, "-m", f"storesync_harness.standins.{module}", "--port", str(port)]
    argv += ["--record", str(record), *args]
    service = Service(module, argv, folder, port, folder / f"{module}.log")
    service.start()
    return StandIn(service, record)
