"""Webhook sink: one HTTP POST per CloudEvent.

Options:
    url: Where to POST.
    secret: Per-sink HMAC key (string); every request carries
        ``X-StoreSync-Signature: sha256=<hex HMAC-SHA256 of the exact body bytes>``.
    mode: ``structured`` (default; body = the event, ``application/cloudevents+json``) or ``binary``
        (body = ``data`` as JSON, attributes in ``ce-*`` headers).
    timeout_s: Per-request timeout (default 10).
    concurrency: Parallel requests for ``ordering = "none"`` sinks (default 8); strict sinks send
        one at a time, in order, and stop at the first failure.
    headers: Extra static headers (e.g. an ``Authorization`` for the receiver).

Every request carries ``Idempotency-Key: <event id>``, so a receiver that keeps the keys it has seen
turns our at-least-once retries into an exactly-once effect. 2xx is done; 408/425/429/5xx are
retried (``Retry-After`` honoured); any other status is permanent (dead letter).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
from collections.abc import Mapping, Sequence
from typing import Any

import httpx

from ..events import SinkConfig, event_json
from .base import Outcome, Sink, SinkError, blocked, classify_status, map_transport_errors

SIGNATURE_HEADER = "X-StoreSync-Signature"
STRUCTURED_CT = "application/cloudevents+json; charset=utf-8"
_CE_SKIP = {"data", "datacontenttype"}


def sign(secret: str | bytes, body: bytes) -> str:
    """The signature header value for ``body``: ``sha256=<hex>``."""
    key = secret.encode("utf-8") if isinstance(secret, str) else secret
    return "sha256=" + hmac.new(key, body, hashlib.sha256).hexdigest()


def verify(secret: str | bytes, body: bytes, header: str | None) -> bool:
    """True when ``header`` is the signature of ``body`` (constant-time comparison)."""
    return bool(header) and hmac.compare_digest(sign(secret, body), str(header))


def _header_value(text: str) -> str:
    # CloudEvents HTTP binding 3.1.3.2: percent-encode space, '"', '%' and anything outside
    # printable ASCII (as UTF-8 octets).
    out: list[str] = []
    for ch in text:
        if ch in ' "%' or not (0x21 <= ord(ch) <= 0x7E):
            out.extend(f"%{b:02X}" for b in ch.encode("utf-8"))
        else:
            out.append(ch)
    return "".join(out)


def encode_request(event: Mapping[str, Any], mode: str = "structured") -> tuple[dict[str, str], bytes]:
    """Headers (without signature) and body of the HTTP request carrying ``event``.

    Raises:
        ValueError: for an unknown mode.
    """
    if mode == "structured":
        return {"Content-Type": STRUCTURED_CT}, event_json(event).encode("utf-8")
    if mode == "binary":
        headers = {f"ce-{k}": _header_value(str(v)) for k, v in event.items() if k not in _CE_SKIP}
        headers["Content-Type"] = str(event.get("datacontenttype", "application/json"))
        body = json.dumps(event.get("data"), sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        return headers, body.encode("utf-8")
    raise ValueError(f"webhook mode must be 'structured' or 'binary', not {mode!r}")


class WebhookSink(Sink):
    """POST each event to a URL, signed, with its id as idempotency key."""

    kind = "webhook"

    def __init__(self, config: SinkConfig, client: httpx.AsyncClient | None = None) -> None:
        super().__init__(config)
        opts = self.options
        if not opts.get("url"):
            raise ValueError(f"sink {config.name}: webhook needs 'url'")
        self.url = str(opts["url"])
        self.secret = str(opts["secret"]) if opts.get("secret") else None
        self.mode = str(opts.get("mode", "structured"))
        encode_request({"id": "x", "data": {}}, self.mode)  # validates the mode early
        self.concurrency = max(1, int(opts.get("concurrency", 8)))
        self.extra_headers = {str(k): str(v) for k, v in dict(opts.get("headers", {})).items()}
        timeout = float(opts.get("timeout_s", 10.0))
        self._own_client = client is None
        self._client = client or httpx.AsyncClient(timeout=timeout)

    async def aclose(self) -> None:
        if self._own_client:
            await self._client.aclose()

    async def post(self, event: Mapping[str, Any]) -> Outcome:
        """Send one event and classify the answer."""
        eid = str(event["id"])
        headers, body = encode_request(event, self.mode)
        headers.update(self.extra_headers)
        headers["Idempotency-Key"] = eid
        if self.secret is not None:
            headers[SIGNATURE_HEADER] = sign(self.secret, body)
        try:
            with map_transport_errors("POST webhook"):
                resp = await self._client.post(self.url, content=body, headers=headers)
        except SinkError as exc:
            return exc.outcome(eid)
        err = classify_status(resp.status_code, resp.headers, "POST webhook")
        if err is not None:
            return err.outcome(eid)
        return Outcome.ok(eid, ref=str(resp.status_code))

    async def deliver(self, events: Sequence[Mapping[str, Any]]) -> list[Outcome]:
        """Strict sinks: in order, stopping at the first failure. Others: concurrently."""
        if self.config.ordering == "strict":
            out: list[Outcome] = []
            for i, event in enumerate(events):
                outcome = await self.post(event)
                out.append(outcome)
                if not outcome.done:
                    return out + blocked(events, i + 1, f"{outcome.event_id} failed first")
            return out
        sem = asyncio.Semaphore(self.concurrency)

        async def one(event: Mapping[str, Any]) -> Outcome:
            async with sem:
                return await self.post(event)

        return list(await asyncio.gather(*(one(e) for e in events)))
