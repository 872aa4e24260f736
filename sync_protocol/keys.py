"""Ed25519 keys: generation, files with tight permissions, key ids, signing and verifying."""

from __future__ import annotations

import hashlib
import os
import stat
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from ._exceptions import KeyFileError

__all__ = [
    "Ed25519PrivateKey",
    "Ed25519PublicKey",
    "generate",
    "key_id",
    "load_private_key",
    "public_from_hex",
    "public_hex",
    "save_private_key",
    "sign",
    "verify",
]


def generate() -> Ed25519PrivateKey:
    return Ed25519PrivateKey.generate()


def raw_public(key: Ed25519PublicKey | Ed25519PrivateKey) -> bytes:
    pub = key.public_key() if isinstance(key, Ed25519PrivateKey) else key
    return pub.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def public_hex(key: Ed25519PublicKey | Ed25519PrivateKey) -> str:
    return raw_public(key).hex()


def public_from_hex(text: str) -> Ed25519PublicKey:
    """Parse a raw public key given as 64 hex digits.

    Raises:
        KeyFileError: when the text is not a 32-byte hex key.
    """
    try:
        raw = bytes.fromhex(text)
        if len(raw) != 32:
            raise ValueError
        return Ed25519PublicKey.from_public_bytes(raw)
    except ValueError:
        raise KeyFileError("public key must be 64 hex digits (raw Ed25519)") from None


def key_id(key: Ed25519PublicKey | Ed25519PrivateKey) -> str:
    """First 16 hex digits of SHA-256 of the raw public key."""
    return hashlib.sha256(raw_public(key)).hexdigest()[:16]


def sign(key: Ed25519PrivateKey, message: bytes) -> bytes:
    return key.sign(message)


def verify(key: Ed25519PublicKey, signature: bytes, message: bytes) -> bool:
    try:
        key.verify(signature, message)
    except InvalidSignature:
        return False
    return True


def save_private_key(key: Ed25519PrivateKey, path: Path) -> None:
    """Write the key as PKCS#8 PEM, created with mode 0600 and never overwritten.

    Raises:
        KeyFileError: when the file already exists.
    """
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise KeyFileError(f"{path} already exists; refusing to overwrite a signing key") from None
    with os.fdopen(fd, "wb") as fh:
        fh.write(pem)
        fh.flush()
        os.fsync(fh.fileno())


def load_private_key(path: Path, *, check_permissions: bool = True) -> Ed25519PrivateKey:
    """Load a private key, refusing one that group or others may read.

    Raises:
        KeyFileError: when the file is missing, too open (on POSIX), or not an Ed25519 key.
    """
    try:
        st = path.stat()
    except FileNotFoundError:
        raise KeyFileError(f"{path} does not exist; run 'edge-agent init' first") from None
    if check_permissions and os.name == "posix" and st.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise KeyFileError(
            f"{path} is accessible by group or others (mode {stat.S_IMODE(st.st_mode):o}); run: chmod 600 {path}"
        )
    if check_permissions and os.name == "nt":  # pragma: no cover - Windows: the ACL, not the mode bits
        from .winacl import check_key_file

        problem = check_key_file(path)
        if problem:
            raise KeyFileError(problem)
    try:
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    except ValueError:
        raise KeyFileError(f"{path} is not a PEM private key") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise KeyFileError(f"{path} is not an Ed25519 key")
    return key
