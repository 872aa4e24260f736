"""The hub's two secrets: the receipt-signing key and the admin token, shared by every replica.

Replicas of one hub must sign identical receipts (Ed25519 signatures are deterministic, so the same
key gives byte-identical signatures) and accept the same admin token. Each secret comes from the
first of these that is set:

Receipt key (the private key itself is needed to sign):
    1. ``cloud-hub serve --hub-key-file PATH`` / ``$CLOUD_HUB_KEY_FILE``: a PKCS#8 PEM file, mode 0600
       (a file group or others can read is refused); it must exist, it is never created.
    2. ``$CLOUD_HUB_KEY``: the PEM text itself, or the 32-byte Ed25519 seed as 64 hex digits.
    3. ``hub.key`` in the data folder, created (mode 0600) on first use.

Admin token (only a check is needed, so the hub keeps only its SHA-256, never the token):
    1. ``--admin-token-file PATH`` / ``$CLOUD_HUB_ADMIN_TOKEN_FILE``: a file holding the token
       (mode 0600 required); it must exist.
    2. ``$CLOUD_HUB_ADMIN_TOKEN_SHA256``: the token's SHA-256 as 64 hex digits (``sha256:`` prefix
       allowed), e.g. ``printf %s "$TOKEN" | sha256sum``; the replica never sees the token.
    3. ``$CLOUD_HUB_ADMIN_TOKEN``: the token itself (hashed at once).
    4. ``admin.token`` in the data folder, created (mode 0600) on first use.

Neither secret, nor the token's hash, is ever logged.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import re
import secrets
import stat
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from sync_protocol import keys
from sync_protocol._exceptions import KeyFileError

from ._exceptions import ConfigError

KEY_FILE_ENV = "CLOUD_HUB_KEY_FILE"
KEY_ENV = "CLOUD_HUB_KEY"
TOKEN_FILE_ENV = "CLOUD_HUB_ADMIN_TOKEN_FILE"
TOKEN_HASH_ENV = "CLOUD_HUB_ADMIN_TOKEN_SHA256"
TOKEN_ENV = "CLOUD_HUB_ADMIN_TOKEN"
_HEX64 = re.compile(r"[0-9a-f]{64}")


@dataclass(frozen=True, repr=False)
class AdminToken:
    """The admin bearer token as its SHA-256 digest: enough to check a request, useless to send one."""

    digest: bytes

    @classmethod
    def from_plain(cls, token: str) -> AdminToken:
        return cls(hashlib.sha256(token.encode("utf-8")).digest())

    @classmethod
    def from_hex(cls, text: str, *, source: str) -> AdminToken:
        """Parse ``[sha256:]<64 hex digits>``.

        Raises:
            ConfigError: naming ``source`` when the text is not a SHA-256 hex digest.
        """
        value = text.strip().lower().removeprefix("sha256:")
        if not _HEX64.fullmatch(value):
            raise ConfigError(f"{source} must be a SHA-256 hex digest (64 hex digits, optionally 'sha256:' first)")
        return cls(bytes.fromhex(value))

    def matches(self, given: str) -> bool:
        """True when ``given`` is the token (constant-time comparison of the digests)."""
        return hmac.compare_digest(hashlib.sha256(given.encode("utf-8")).digest(), self.digest)

    def __repr__(self) -> str:
        return "AdminToken(<hidden>)"


def _tight_file(path: Path, what: str) -> None:
    try:
        st = path.stat()
    except FileNotFoundError:
        raise ConfigError(f"{what} {path} does not exist") from None
    except OSError as exc:
        raise ConfigError(f"cannot read {what} {path}: {exc.strerror}") from None
    if os.name == "posix" and st.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise ConfigError(
            f"{what} {path} is accessible by group or others (mode {stat.S_IMODE(st.st_mode):o}); run: chmod 600 {path}"
        )


def _key_from_text(text: str) -> Ed25519PrivateKey:
    value = text.strip()
    if _HEX64.fullmatch(value.lower()):
        return Ed25519PrivateKey.from_private_bytes(bytes.fromhex(value))
    try:
        key = serialization.load_pem_private_key(value.encode("ascii", "replace"), password=None)
    except ValueError:
        raise ConfigError(f"{KEY_ENV} must be a PEM private key or a 64-hex-digit Ed25519 seed") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise ConfigError(f"{KEY_ENV} is not an Ed25519 key")
    return key


def load_hub_key(default_path: Path, key_file: Path | None = None) -> Ed25519PrivateKey:
    """The receipt key: ``key_file``, else ``$CLOUD_HUB_KEY_FILE``, else ``$CLOUD_HUB_KEY``, else ``default_path``.

    ``default_path`` (``hub.key`` in the data folder) is created on first use; the others must exist.

    Raises:
        ConfigError: a named file is missing, too open or not an Ed25519 key; the env value is malformed.
    """
    named = key_file or (Path(os.environ[KEY_FILE_ENV]) if os.environ.get(KEY_FILE_ENV) else None)
    if named is not None:
        _tight_file(named, "hub key file")
        try:
            return keys.load_private_key(named)
        except KeyFileError as exc:
            raise ConfigError(str(exc)) from None
    if os.environ.get(KEY_ENV):
        return _key_from_text(os.environ[KEY_ENV])
    try:
        if not default_path.exists():
            try:
                keys.save_private_key(keys.generate(), default_path)
            except KeyFileError:
                pass  # another process created it first; load theirs
        return keys.load_private_key(default_path)
    except KeyFileError as exc:
        raise ConfigError(str(exc)) from None


def _read_token(path: Path) -> str:
    try:
        token = path.read_text().strip()
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror}") from None
    if not token:
        raise ConfigError(f"{path} is empty; delete it to have a new token made")
    return token


def create_token_file(path: Path) -> None:
    """Write a fresh random token to ``path`` (mode 0600) unless the file exists.

    Raises:
        ConfigError: when the file cannot be created.
    """
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return
    except OSError as exc:
        raise ConfigError(f"cannot create {path}: {exc.strerror}") from None
    with os.fdopen(fd, "w") as fh:
        fh.write(secrets.token_urlsafe(32) + "\n")
        fh.flush()
        os.fsync(fh.fileno())


def load_admin_token(default_path: Path, token_file: Path | None = None) -> AdminToken:
    """The admin token check, from the first source set (see the module docstring).

    Raises:
        ConfigError: a named file is missing, too open or empty; the hash is malformed.
    """
    named = token_file or (Path(os.environ[TOKEN_FILE_ENV]) if os.environ.get(TOKEN_FILE_ENV) else None)
    if named is not None:
        _tight_file(named, "admin token file")
        return AdminToken.from_plain(_read_token(named))
    if os.environ.get(TOKEN_HASH_ENV):
        return AdminToken.from_hex(os.environ[TOKEN_HASH_ENV], source=TOKEN_HASH_ENV)
    if os.environ.get(TOKEN_ENV, "").strip():
        return AdminToken.from_plain(os.environ[TOKEN_ENV].strip())
    create_token_file(default_path)
    return AdminToken.from_plain(_read_token(default_path))
