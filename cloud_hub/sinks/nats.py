"""NATS JetStream sink (nats-py).

Options:
    servers: Server URL or list (default ``nats://127.0.0.1:4222``).
    subject_prefix: Default ``storesync``. Each event is published on
        ``{subject_prefix}.{store_id}.{type}``, e.g. ``storesync.S1.retail.pos.sale.v1`` (store ids
        are ``[A-Za-z0-9_-]``, valid subject tokens; the type's dots become subject levels, so
        ``storesync.*.retail.inventory.>`` selects every store's inventory events).
    stream: The JetStream stream the subjects belong to (default ``STORESYNC``). Publishes name it
        as the expected stream, so a message never lands in another stream by accident.
    ensure_stream: When true (default), create the stream on first use if it does not exist, with
        subjects ``{subject_prefix}.>`` and ``duplicate_window_s`` (default 7 days).
    timeout_s: How long to wait for each publish acknowledgement (default 10).

Every message carries the header ``Nats-Msg-Id: <event id>``: JetStream drops a second message
with the same id within the stream's duplicate window and acknowledges it with ``duplicate: true``,
which this sink reports as ok. The payload is the event's canonical structured JSON
(``Content-Type: application/cloudevents+json``).

Throughput: a batch is pipelined — every message is written to the one connection in order, with
its own reply subject under one wildcard inbox, then the acknowledgements are awaited together.
JetStream stores them in the order sent. If one publish of a strict lane fails, the later ones may
already be stored; the worker retries the failed one and consumers see it after them (dedup keeps
it to one copy).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping, Sequence
from typing import Any

import nats
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import StreamConfig
from nats.js.errors import NotFoundError

from ..events import SinkConfig, event_json
from .base import Outcome, Sink, SinkError, TransientSinkError, map_transport_errors

DEFAULT_SERVER = "nats://127.0.0.1:4222"
DEFAULT_STREAM = "STORESYNC"
DEFAULT_DUP_WINDOW_S = 7 * 24 * 3600


def subject_for(prefix: str, event: Mapping[str, Any]) -> str:
    """The subject of an event: ``{prefix}.{store_id}.{type}``."""
    source = str(event["source"])
    store_id = source.rsplit(":", 1)[-1]
    return f"{prefix}.{store_id}.{event['type']}"


async def _quiet(exc: Exception) -> None:
    """Connection errors surface as outcomes; nats-py's default callback would print them."""


class NatsSink(Sink):
    """Publish events to a JetStream stream with ``Nats-Msg-Id`` deduplication."""

    kind = "nats"

    def __init__(self, config: SinkConfig) -> None:
        super().__init__(config)
        opts = self.options
        servers = opts.get("servers", DEFAULT_SERVER)
        self.servers = [servers] if isinstance(servers, str) else [str(s) for s in servers]
        self.prefix = str(opts.get("subject_prefix", "storesync"))
        self.stream = str(opts.get("stream", DEFAULT_STREAM))
        self.ensure_stream = bool(opts.get("ensure_stream", True))
        self.dup_window_s = float(opts.get("duplicate_window_s", DEFAULT_DUP_WINDOW_S))
        self.timeout_s = float(opts.get("timeout_s", 10.0))
        self._nc: NATS | None = None
        self._inbox = ""
        self._acks: dict[str, asyncio.Future[bytes]] = {}
        self._counter = 0
        self._lock = asyncio.Lock()

    async def _connect(self) -> NATS:
        async with self._lock:
            if self._nc is not None and self._nc.is_connected:
                return self._nc
            with map_transport_errors("connect to NATS"):
                nc = await asyncio.wait_for(
                    nats.connect(
                        servers=self.servers,
                        connect_timeout=self.timeout_s,
                        allow_reconnect=True,
                        max_reconnect_attempts=3,  # then closed: the next deliver() connects anew
                        reconnect_time_wait=0.5,
                        error_cb=_quiet,
                    ),
                    self.timeout_s * 3,
                )
                if self.ensure_stream:
                    await self._ensure(nc.jetstream(timeout=self.timeout_s))
                # One wildcard inbox for every acknowledgement: lighter than a request per message.
                self._inbox = f"{nc.new_inbox()}."
                await nc.subscribe(self._inbox + "*", cb=self._on_ack, pending_msgs_limit=1_000_000)
            self._nc = nc
            return nc

    async def _on_ack(self, msg: Msg) -> None:
        future = self._acks.pop(msg.subject, None)
        if future is None or future.done():
            return
        if msg.headers and msg.headers.get("Status") == "503":
            # No stream binds the subject (not created yet, or being restored): retry with backoff.
            future.set_exception(TransientSinkError(f"no JetStream stream listens on {msg.subject}"))
        else:
            future.set_result(msg.data)

    async def _ensure(self, js: JetStreamContext) -> None:
        try:
            await js.stream_info(self.stream)
        except NotFoundError:
            await js.add_stream(
                StreamConfig(
                    name=self.stream,
                    subjects=[f"{self.prefix}.>"],
                    duplicate_window=self.dup_window_s,
                )
            )

    async def aclose(self) -> None:
        nc, self._nc = self._nc, None
        for future in self._acks.values():
            future.cancel()
        self._acks.clear()
        if nc is not None and not nc.is_closed:
            try:
                await nc.drain()
            except Exception:  # noqa: BLE001 - closing is best effort
                await nc.close()

    async def deliver(self, events: Sequence[Mapping[str, Any]]) -> list[Outcome]:
        """Pipeline the batch in order; one outcome per event from its acknowledgement."""
        if not events:
            return []
        try:
            nc = await self._connect()
        except SinkError as exc:
            return [exc.outcome(e["id"]) for e in events]
        loop = asyncio.get_running_loop()
        futures: list[asyncio.Future[bytes] | SinkError] = []
        replies: list[str] = []
        for event in events:
            self._counter += 1
            reply = f"{self._inbox}{self._counter}"
            headers = {"Nats-Msg-Id": str(event["id"]), "Nats-Expected-Stream": self.stream}
            future: asyncio.Future[bytes] = loop.create_future()
            self._acks[reply] = future
            replies.append(reply)
            try:
                with map_transport_errors("publish to NATS"):
                    # Buffered by the client and flushed in a few socket writes for the batch.
                    await nc.publish(subject_for(self.prefix, event), event_json(event).encode("utf-8"), reply, headers)
                futures.append(future)
            except SinkError as exc:
                self._acks.pop(reply, None)
                futures.append(exc)
        waiting = [f for f in futures if not isinstance(f, SinkError)]
        if waiting:
            await asyncio.wait(waiting, timeout=self.timeout_s)
        out: list[Outcome] = []
        for event, pending, reply in zip(events, futures, replies, strict=True):
            eid = str(event["id"])
            if isinstance(pending, SinkError):
                out.append(pending.outcome(eid))
            elif not pending.done():
                self._acks.pop(reply, None)
                pending.cancel()
                out.append(Outcome.transient(eid, "JetStream ack timed out, outcome unknown"))
            elif pending.exception() is not None:
                failure = pending.exception()
                out.append(
                    failure.outcome(eid) if isinstance(failure, SinkError) else Outcome.transient(eid, repr(failure))
                )
            else:
                out.append(_ack_outcome(eid, pending.result()))
        return out


def _ack_outcome(event_id: str, data: bytes) -> Outcome:
    """The outcome of a JetStream publish acknowledgement (``{"stream","seq","duplicate"}``)."""
    try:
        ack = json.loads(data)
    except ValueError:
        return Outcome.transient(event_id, "JetStream answered with something that is not JSON")
    err = ack.get("error")
    if err:
        code = int(err.get("code", 0) or 0)
        reason = f"JetStream error {err.get('err_code', code)}: {err.get('description', '')}"
        # 503 (no quorum, storage unavailable) and 5xx may pass; 4xx (wrong stream, limits) will not.
        return Outcome.transient(event_id, reason) if code >= 500 else Outcome.permanent(event_id, reason)
    ref = f"{ack.get('stream')}:{ack.get('seq')}"
    return Outcome.ok(event_id, ref=ref, reason="duplicate" if ack.get("duplicate") else "")
