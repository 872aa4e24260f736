"""Register tokens for the capture API on a non-loopback address (DESIGN §10, docs/security.md).

``edge-agent register add R2`` makes a random token, prints it once and keeps only its SHA-256 in
``registers.json`` in the data folder (mode 0600). A request then carries ``Authorization: Bearer
<token>``; the token names its register, and that register may post only its own sales. The file is
re-read when it changes, so a new register needs no restart.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import re
import secrets
import threading
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from ._exceptions import ConfigError

REGISTERS_FILE = "registers.json"
TOKEN_PREFIX = "ssr_"
_REGISTER_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


def _path(data_dir: Path) -> Path:
    return data_dir / REGISTERS_FILE


def _read(path: Path) -> dict[str, dict[str, str]]:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return {}
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror}") from None
    try:
        doc = json.loads(text)
    except ValueError:
        raise ConfigError(f"{path} is not valid JSON; remove it and add the registers again") from None
    if not isinstance(doc, dict) or not all(isinstance(v, dict) and "sha256" in v for v in doc.values()):
        raise ConfigError(f"{path} is not a register token file")
    return doc


def _write(path: Path, doc: dict[str, dict[str, str]]) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        json.dump(doc, f, indent=2, sort_keys=True)
        f.write("\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def add(data_dir: Path, register_id: str) -> str:
    """Make (or replace) the token of ``register_id`` and return it; only its hash is stored.

    Raises:
        ConfigError: when the register id is not ``[A-Za-z0-9_-]{1,64}``.
    """
    if not _REGISTER_ID.match(register_id):
        raise ConfigError(f"register id {register_id!r}: use 1-64 letters, digits, '_' or '-'")
    path = _path(data_dir)
    doc = _read(path)
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    doc[register_id] = {"sha256": _digest(token), "added_at": datetime.now().astimezone().isoformat(timespec="seconds")}
    _write(path, doc)
    return token


def remove(data_dir: Path, register_id: str) -> bool:
    """Forget a register's token; False when it had none."""
    path = _path(data_dir)
    doc = _read(path)
    if doc.pop(register_id, None) is None:
        return False
    _write(path, doc)
    return True


def listing(data_dir: Path) -> list[tuple[str, str]]:
    """``(register_id, added_at)`` of every register with a token."""
    return sorted((rid, str(v.get("added_at", ""))) for rid, v in _read(_path(data_dir)).items())


@dataclass
class RegisterTokens:
    """The token check of a running agent, re-reading ``registers.json`` when it changes."""

    data_dir: Path
    _mtime: float = -1.0
    _checked: float = 0.0
    _by_digest: dict[str, str] | None = None

    def __post_init__(self) -> None:
        self._lock = threading.Lock()

    def _load(self) -> dict[str, str]:
        now = time.monotonic()
        with self._lock:
            if self._by_digest is not None and now - self._checked < 1.0:
                return self._by_digest
            self._checked = now
            path = _path(self.data_dir)
            try:
                mtime = path.stat().st_mtime
            except FileNotFoundError:
                mtime = 0.0
            if self._by_digest is None or mtime != self._mtime:
                self._by_digest = {v["sha256"]: rid for rid, v in _read(path).items()}
                self._mtime = mtime
            return self._by_digest

    def count(self) -> int:
        """How many registers have a token."""
        return len(self._load())

    def register_of(self, token: str) -> str | None:
        """The register a token belongs to, or None (compared in constant time)."""
        digest = _digest(token)
        found = None
        for known, rid in self._load().items():
            if hmac.compare_digest(known, digest):
                found = rid
        return found
