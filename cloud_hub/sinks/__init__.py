"""Delivery sinks: one module per kind, all behind :class:`~cloud_hub.sinks.base.Sink`.

``build_sink(config)`` makes the sink a :class:`~cloud_hub.events.SinkConfig` names; a delivery
worker then calls ``await sink.deliver(batch)`` and ``await sink.aclose()`` at shutdown.
"""

from __future__ import annotations

from ..events import SinkConfig
from .base import Outcome, PermanentSinkError, Sink, SinkError, TransientSinkError

KINDS = ("jsonl", "webhook", "nats", "erpnext", "shopify_inventory")


def build_sink(config: SinkConfig) -> Sink:
    """The sink of ``config.kind`` (its client libraries are imported only when used).

    Raises:
        ValueError: for an unknown kind or a missing option.
    """
    if config.kind == "jsonl":
        from .jsonl import JsonlSink

        return JsonlSink(config)
    if config.kind == "webhook":
        from .webhook import WebhookSink

        return WebhookSink(config)
    if config.kind == "nats":
        from .nats import NatsSink

        return NatsSink(config)
    if config.kind == "erpnext":
        from .erpnext import ErpNextSink

        return ErpNextSink(config)
    if config.kind == "shopify_inventory":
        from .shopify_inventory import ShopifyInventorySink

        return ShopifyInventorySink(config)
    raise ValueError(f"sink {config.name}: unknown kind {config.kind!r} (one of {', '.join(KINDS)})")


__all__ = ["KINDS", "Outcome", "PermanentSinkError", "Sink", "SinkError", "TransientSinkError", "build_sink"]
