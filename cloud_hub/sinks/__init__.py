"""Delivery sinks: one module per kind, all behind :class:`~cloud_hub.sinks.base.Sink`.

``build_sink(config)`` makes the sink a :class:`~cloud_hub.events.SinkConfig` names; a delivery
worker then calls ``await sink.deliver(batch)`` and ``await sink.aclose()`` at shutdown.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass

from ..events import SinkConfig
from .base import Outcome, PermanentSinkError, Sink, SinkError, TransientSinkError


@dataclass(frozen=True)
class SinkKind:
    """One kind of sink: where its class lives (imported only when used) and the options it needs."""

    module: str
    cls: str
    required: tuple[str, ...]


# The one list of sink kinds.
SINK_KINDS: dict[str, SinkKind] = {
    "jsonl": SinkKind("jsonl", "JsonlSink", ("path",)),
    "webhook": SinkKind("webhook", "WebhookSink", ("url",)),
    "nats": SinkKind("nats", "NatsSink", ()),
    "erpnext": SinkKind("erpnext", "ErpNextSink", ("url", "api_key", "api_secret", "company")),
    "shopify_inventory": SinkKind("shopify_inventory", "ShopifyInventorySink", ("shop_url", "access_token")),
}
KINDS = tuple(SINK_KINDS)


def build_sink(config: SinkConfig) -> Sink:
    """The sink of ``config.kind`` (its client libraries are imported only when used).

    Raises:
        ValueError: for an unknown kind or a missing option.
    """
    kind = SINK_KINDS.get(config.kind)
    if kind is None:
        raise ValueError(f"sink {config.name}: unknown kind {config.kind!r} (one of {', '.join(KINDS)})")
    sink_class: type[Sink] = getattr(importlib.import_module(f"{__name__}.{kind.module}"), kind.cls)
    return sink_class(config)


__all__ = [
    "KINDS",
    "SINK_KINDS",
    "SinkKind",
    "Outcome",
    "PermanentSinkError",
    "Sink",
    "SinkError",
    "TransientSinkError",
    "build_sink",
]
