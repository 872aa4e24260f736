"""One log format per service: ``TIME LEVEL logger: message`` on stderr, or JSON lines for log shippers.

``--log-format json`` writes one object per line: ``{"ts", "level", "service", "logger", "msg"}`` (plus
``"exc"`` for an exception's type and message; tracebacks only at ``debug``). uvicorn, httpx and
APScheduler log through the same handler; their per-request and per-job lines stay at WARNING so the
default level shows what a person needs (outages, recoveries, refusals, dead letters), not chatter.
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime
from typing import Literal

LogFormat = Literal["text", "json"]
QUIET = ("httpx", "httpcore", "nats", "apscheduler", "uvicorn.access", "watchdog", "asyncio")
TEXT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class JsonFormatter(logging.Formatter):
    """A log record as one JSON object."""

    def __init__(self, service: str) -> None:
        super().__init__()
        self.service = service

    def format(self, record: logging.LogRecord) -> str:
        doc = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "level": record.levelname.lower(),
            "service": self.service,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        if record.exc_info and record.exc_info[1] is not None:
            exc = record.exc_info[1]
            doc["exc"] = f"{type(exc).__name__}: {exc}"
            if logging.getLogger().isEnabledFor(logging.DEBUG):
                doc["traceback"] = self.formatException(record.exc_info)
        return json.dumps(doc, ensure_ascii=False)


class TextFormatter(logging.Formatter):
    """``2026-11-22T10:15:03.123Z INFO logger: message`` (UTC, milliseconds)."""

    def __init__(self) -> None:
        super().__init__(TEXT)

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:  # noqa: N802
        return datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def setup(service: str, level: str | int = "info", fmt: LogFormat = "text") -> None:
    """Route every logger of this process to stderr in one format.

    Args:
        service: ``edge-agent`` or ``cloud-hub`` (the JSON ``service`` field).
        level: Root level name or number.
        fmt: ``text`` or ``json``.
    """
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter(service) if fmt == "json" else TextFormatter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper() if isinstance(level, str) else level)
    for name in ("uvicorn", "uvicorn.error"):
        lg = logging.getLogger(name)
        lg.handlers.clear()
        lg.propagate = True
    for noisy in QUIET:
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))
