"""HTTP Message Signatures (RFC 9421), the subset StoreSync uses, with Content-Digest (RFC 9530).

Covered components: ``"@method" "@path" "content-digest"``; parameters ``created``, ``keyid``,
``alg="ed25519"``; label ``sig1``. Freshness of ``created`` is not enforced: store clocks drift by
hours, and bursts are idempotent, so a replayed request changes nothing. ``created`` is reported
as the agent's T1.
"""

from __future__ import annotations

import base64
import hashlib
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from ._exceptions import AuthError
from .keys import Ed25519PrivateKey, Ed25519PublicKey, sign, verify

COMPONENTS = ("@method", "@path", "content-digest")
_INPUT = re.compile(r"^sig1=\((?P<comps>[^)]*)\);(?P<params>.*)$")
_PARAM = re.compile(r'(\w+)=("([^"]*)"|\d+)')
_SIG = re.compile(r"^sig1=:(?P<b64>[A-Za-z0-9+/=]+):$")
_DIGEST = re.compile(r"(?:^|,\s*)sha-256=:(?P<b64>[A-Za-z0-9+/=]+):")


MAX_CREATED = 253402300799  # 9999-12-31T23:59:59Z: any later "created" is not a time


def _b64(text: str, what: str) -> bytes:
    """Strict base64 (padding included); AuthError naming the header otherwise."""
    try:
        return base64.b64decode(text, validate=True)
    except (ValueError, TypeError):
        raise AuthError(f"{what} is not valid base64") from None


def content_digest(body: bytes) -> str:
    return "sha-256=:" + base64.b64encode(hashlib.sha256(body).digest()).decode() + ":"


def _params(created: int, keyid: str) -> str:
    comps = " ".join(f'"{c}"' for c in COMPONENTS)
    return f'({comps});created={created};keyid="{keyid}";alg="ed25519"'


def _base(method: str, path: str, digest: str, params: str) -> bytes:
    lines = [f'"@method": {method.upper()}', f'"@path": {path}', f'"content-digest": {digest}']
    lines.append(f'"@signature-params": {params}')
    return "\n".join(lines).encode()


def sign_request(
    method: str, path: str, body: bytes, key: Ed25519PrivateKey, keyid: str, created: int | None = None
) -> dict[str, str]:
    """Headers that authenticate a request: Content-Digest, Signature-Input, Signature."""
    digest = content_digest(body)
    params = _params(int(time.time()) if created is None else created, keyid)
    sig = sign(key, _base(method, path, digest, params))
    return {
        "Content-Digest": digest,
        "Signature-Input": f"sig1={params}",
        "Signature": "sig1=:" + base64.b64encode(sig).decode() + ":",
    }


@dataclass(frozen=True)
class Verified:
    keyid: str
    created: int


def verify_request(
    method: str,
    path: str,
    headers: Mapping[str, str],
    body: bytes,
    lookup: Callable[[str], Ed25519PublicKey | None],
) -> Verified:
    """Check the signature of a request.

    Args:
        lookup: Returns the public key for a key id, or None when the key is unknown.

    Raises:
        AuthError: naming what is missing or wrong. An unknown key id is reported as such.
    """
    sig_input = headers.get("signature-input")
    sig_header = headers.get("signature")
    digest = headers.get("content-digest")
    if not sig_input or not sig_header or not digest:
        raise AuthError("request is not signed: Signature-Input, Signature and Content-Digest are required")
    m = _DIGEST.search(digest)
    if not m or _b64(m.group("b64"), "Content-Digest") != hashlib.sha256(body).digest():
        raise AuthError("Content-Digest does not match the body")
    mi = _INPUT.match(sig_input.strip())
    ms = _SIG.match(sig_header.strip())
    if not mi or not ms:
        raise AuthError("Signature-Input or Signature is malformed (expected label sig1)")
    comps = tuple(c.strip('"') for c in mi.group("comps").split())
    if comps != COMPONENTS:
        raise AuthError(f"signature must cover {' '.join(COMPONENTS)}")
    params = {k: (q if q or v.startswith('"') else v) for k, v, q in _PARAM.findall(mi.group("params"))}
    if params.get("alg") != "ed25519" or "keyid" not in params or "created" not in params:
        raise AuthError('signature parameters need created, keyid and alg="ed25519"')
    keyid, raw_created = params["keyid"], params["created"]
    if (
        len(raw_created) > 12
        or not raw_created.isascii()
        or not raw_created.isdigit()
        or int(raw_created) > MAX_CREATED
    ):
        raise AuthError("Signature-Input created must be a Unix time in seconds (an integer)")
    created = int(raw_created)
    key = lookup(keyid)
    if key is None:
        raise AuthError(f"unknown key id {keyid}")
    base = _base(method, path, digest.strip(), f"({mi.group('comps')});{mi.group('params')}")
    if not verify(key, _b64(ms.group("b64"), "Signature"), base):
        raise AuthError("signature does not verify")
    return Verified(keyid, created)
