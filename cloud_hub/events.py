"""Canonical CloudEvents derived from one record, and the pure router that picks their sinks (DESIGN §6).

Events are CloudEvents 1.0 in structured mode, as plain dicts. Every value is a string, an integer
or a nested dict/list of those, so :func:`event_json` (canonical JSON) gives the same bytes for the
same record every time: ``source + id`` is stable, a resend is the same event.

Per record (``id`` = ``{store_id}:{epoch}:{seq}``):

- ``retail.pos.sale.v1`` / ``retail.pos.return.v1`` / ``retail.pos.void.v1`` — the transaction.
- ``retail.inventory.adjusted.v1`` with id suffix ``:inventory`` — sellable stock changes: a sale
  line gives ``-qty``, a return line with disposition ``restock`` (or none) gives ``+qty``. Net per
  SKU; omitted when nothing changes.
- ``retail.inventory.adjusted.v1`` with id suffix ``:writeoff`` and the extension attribute
  ``audience = "erp"`` — return lines with disposition ``damaged``. The ERP books the return (which
  puts the goods back into its warehouse) and then writes them off (``-qty``, reason ``damaged``).
  The router sends ``audience = "erp"`` events to ``role = "erp"`` sinks only: damaged goods never
  reach a sales channel's stock.

- A void reverses the sellable-stock movement of the transaction it voids (looked up by the void's
  ``register_id`` and ``voided_txn_id``, whichever burst or file the sale came in):
  ``retail.inventory.adjusted.v1`` ``:inventory`` with reason ``void``, every delta negated, and
  ``reverses`` = the voided transaction's inventory event id. Nothing when the voided sale moved no
  stock or is unknown to the hub.

Only stock lines move stock: a v2 line of ``type`` other than ``item`` (gift cards, services,
shipping, tips, adjustments such as a Shopify partial refund's ``REFUND`` line) never does, nor a line
whose SKU matches one of the hub's :class:`StockRules` patterns (``[stock] non_stock_skus`` in
``hub.toml``). The transaction event still carries every line.

Routing (:func:`route`): a sink gets an event when one of its ``types`` globs matches the type and
the rules below allow it.

- ``audience = "erp"`` events go to ``erp`` sinks only.
- A return whose ``txn.original.channel`` names another channel (``webshop``, ``amazon``, …) goes to
  ``erp``, ``stream`` and ``archive`` sinks and to the ``channel`` sinks of *that* channel only. A
  store return (no ``original``, or ``original.channel`` in :data:`STORE_CHANNELS`) goes to no
  channel sink.
- Every other event goes to every sink whose filter matches.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from fnmatch import fnmatchcase
from functools import lru_cache
from typing import Any, Literal

from sync_protocol.canonical import canonical_dumps, plain_dumps

SPECVERSION = "1.0"
SOURCE_PREFIX = "urn:storesync:store:"
TXN_TYPES = {"sale": "retail.pos.sale.v1", "return": "retail.pos.return.v1", "void": "retail.pos.void.v1"}
INVENTORY_TYPE = "retail.inventory.adjusted.v1"
INVENTORY_SUFFIX = ":inventory"
WRITEOFF_SUFFIX = ":writeoff"
STORE_CHANNELS = frozenset({"store", "pos"})
ROLES = ("erp", "channel", "stream", "archive")
NORMALIZED_FIELDS = ("occurred_at_utc", "captured_at_utc", "hub_received_at", "time_quality")

Role = Literal["erp", "channel", "stream", "archive"]
Ordering = Literal["strict", "none"]


def event_id(store_id: str, epoch: int, seq: int, suffix: str = "") -> str:
    """The stable event id ``{store_id}:{epoch}:{seq}{suffix}``."""
    return f"{store_id}:{epoch}:{seq}{suffix}"


def source_of(store_id: str) -> str:
    """The CloudEvents ``source`` of a store."""
    return SOURCE_PREFIX + store_id


def event_json(event: Mapping[str, Any]) -> str:
    """The canonical JSON text of an event (structured mode): byte-identical for the same event.

    Events hold only strings, integers, booleans, None and nested dicts/lists (checked once by
    :func:`derive_events`), so the unchecked fast encoder (:func:`~sync_protocol.canonical.plain_dumps`,
    the same bytes as sorted, compact ``json.dumps``) writes the canonical form. An event loaded from the
    hub's database (:class:`StoredEvent`) returns the stored text as it is.
    """
    text = getattr(event, "json_text", None)
    if text is not None:
        return str(text)
    return plain_dumps(event)


class StoredEvent(Mapping[str, Any]):
    """A read-only event backed by its stored text, which :func:`event_json` gives back unchanged.

    The attributes given as ``known`` (e.g. ``id``, ``source``, ``type``) are answered without
    parsing; any other key parses the text once. Sinks that only forward the text (jsonl, webhook
    structured, NATS) so never parse it.
    """

    __slots__ = ("json_text", "_known", "_doc")

    def __init__(self, text: str, known: Mapping[str, Any] | None = None) -> None:
        self.json_text = text
        self._known = dict(known or {})
        self._doc: dict[str, Any] | None = None

    def _parsed(self) -> dict[str, Any]:
        if self._doc is None:
            self._doc = json.loads(self.json_text)
        return self._doc

    def __getitem__(self, key: str) -> Any:
        if key in self._known:
            return self._known[key]
        return self._parsed()[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._parsed())

    def __len__(self) -> int:
        return len(self._parsed())


def _qty_text(value: Decimal | int) -> str:
    if type(value) is int:
        return str(value)
    text = format(value.normalize(), "f")  # type: ignore[union-attr]
    return "0" if text in ("-0", "") else text


def _qty(text: str) -> Decimal | int:
    """A canonical quantity as an int when it is whole (most are: exact and cheaper), else a Decimal."""
    if type(text) is str and text.isascii() and text.isdigit():
        return int(text)
    return Decimal(text)


def _envelope(
    body: Mapping[str, Any], norm: Mapping[str, Any], type_: str, suffix: str, data: dict[str, Any]
) -> dict[str, Any]:
    txn = body["txn"]
    return {
        "specversion": SPECVERSION,
        "id": event_id(body["store_id"], body["epoch"], body["seq"], suffix),
        "source": source_of(body["store_id"]),
        "type": type_,
        "time": norm["occurred_at_utc"],
        "subject": f"{txn['register_id']}/{txn['txn_id']}",
        "datacontenttype": "application/json",
        "partitionkey": body["store_id"],
        "data": data,
    }


def _record_data(body: Mapping[str, Any], norm: Mapping[str, Any]) -> dict[str, Any]:
    data: dict[str, Any] = {
        "store_id": body["store_id"],
        "epoch": body["epoch"],
        "seq": body["seq"],
        "kind": body["kind"],
        "origin": body.get("origin", "api"),
        "captured_at": body["captured_at"],
        "txn": body["txn"],
    }
    for name in NORMALIZED_FIELDS:
        data[name] = norm[name]
    return data


@dataclass(frozen=True)
class StockRules:
    """Which lines move stock, beyond what the transaction says.

    Attributes:
        non_stock_skus: Glob patterns (case-sensitive, e.g. ``GIFT-*``); a line whose SKU matches
            one never moves stock, whatever its type.
    """

    non_stock_skus: tuple[str, ...] = ()

    def moves_stock(self, line: Mapping[str, Any]) -> bool:
        """True for a stock line: type ``item`` (v1 lines have no type) and no non-stock SKU pattern."""
        if line.get("type", "item") != "item":
            return False
        if not self.non_stock_skus:
            return True
        sku = str(line.get("sku", ""))
        return not any(fnmatchcase(sku, pattern) for pattern in self.non_stock_skus)


NO_RULES = StockRules()


def _adjustments(lines: Iterable[Mapping[str, Any]], sign: int) -> list[dict[str, str]]:
    net: dict[str, Decimal | int] = {}
    for line in lines:
        sku = line["sku"]
        net[sku] = net.get(sku, 0) + sign * _qty(line["qty"])
    return [{"sku": sku, "delta": _qty_text(delta)} for sku, delta in sorted(net.items()) if delta != 0]


def _inventory_data(
    body: Mapping[str, Any], norm: Mapping[str, Any], reason: str, adjustments: list[dict[str, str]]
) -> dict[str, Any]:
    txn = body["txn"]
    return {
        "store_id": body["store_id"],
        "epoch": body["epoch"],
        "seq": body["seq"],
        "register_id": txn["register_id"],
        "txn_id": txn["txn_id"],
        "kind": body["kind"],
        "reason": reason,
        "caused_by": event_id(body["store_id"], body["epoch"], body["seq"]),
        "adjustments": adjustments,
        "occurred_at_utc": norm["occurred_at_utc"],
    }


def derive_events(
    body: Mapping[str, Any] | str,
    norm: Mapping[str, Any],
    *,
    check: bool = True,
    stock: StockRules = NO_RULES,
    voided: Mapping[str, Any] | None = None,
) -> list[dict[str, Any]]:
    """The CloudEvents of one record, the transaction event first.

    Args:
        body: The record body (canonical JSON text or its parsed dict); its ``txn`` should be the
            validated canonical transaction (the hub's forwarder replaces it with that).
        norm: The output of :func:`cloud_hub.timenorm.normalize_times` for this record.
        check: Check every value has a canonical JSON form. A caller that parsed the body refusing
            floats (the hub's ingest hook) may skip it: it is most of the cost.
        stock: Hub-side rules for lines that are not stock.
        voided: For a void, the movement of the voided transaction (``event_id`` and
            ``adjustments``), or None when it moved nothing or is unknown.

    Raises:
        ValueError: when the body's kind is unknown.
    """
    doc: Mapping[str, Any] = json.loads(body) if isinstance(body, str) else body
    kind = doc["kind"]
    if kind not in TXN_TYPES:
        raise ValueError(f"unknown record kind {kind!r}")
    events = [_envelope(doc, norm, TXN_TYPES[kind], "", _record_data(doc, norm))]
    lines = [ln for ln in doc["txn"].get("lines", []) if stock.moves_stock(ln)]
    if kind == "void" and voided is not None and voided.get("adjustments"):
        reversed_ = [{"sku": a["sku"], "delta": _qty_text(-Decimal(a["delta"]))} for a in voided["adjustments"]]
        data = _inventory_data(doc, norm, "void", reversed_)
        data["reverses"] = voided.get("event_id")
        events.append(_envelope(doc, norm, INVENTORY_TYPE, INVENTORY_SUFFIX, data))
    if kind == "sale":
        adj = _adjustments(lines, -1)
        if adj:
            events.append(
                _envelope(doc, norm, INVENTORY_TYPE, INVENTORY_SUFFIX, _inventory_data(doc, norm, "sale", adj))
            )
    elif kind == "return":
        restock = _adjustments((ln for ln in lines if ln.get("disposition") != "damaged"), +1)
        if restock:
            data = _inventory_data(doc, norm, "return-restock", restock)
            events.append(_envelope(doc, norm, INVENTORY_TYPE, INVENTORY_SUFFIX, data))
        damaged = _adjustments((ln for ln in lines if ln.get("disposition") == "damaged"), -1)
        if damaged:
            data = _inventory_data(doc, norm, "damaged", damaged)
            event = _envelope(doc, norm, INVENTORY_TYPE, WRITEOFF_SUFFIX, data)
            event["audience"] = "erp"
            events.append(event)
    if check:
        for event in events:
            canonical_dumps(event)  # raises on a float or unsafe integer: event_json may trust the values
    return events


# --------------------------------------------------------------------------------------------- sinks


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how patiently a sink is retried.

    Attributes:
        max_attempts: Attempts before a delivery is dead-lettered.
        base_s: First backoff step.
        cap_s: Longest backoff step.
    """

    max_attempts: int = 10
    base_s: float = 1.0
    cap_s: float = 300.0

    def backoff(self, attempt: int, rand: float) -> float:
        """Full-jitter backoff before attempt ``attempt + 1`` (``rand`` uniform in [0, 1))."""
        return rand * min(self.cap_s, self.base_s * (2 ** max(attempt - 1, 0)))


@dataclass(frozen=True)
class SinkConfig:
    """One configured sink.

    Attributes:
        name: Unique name (delivery rows refer to it).
        kind: ``jsonl``, ``webhook``, ``nats``, ``erpnext`` or ``shopify_inventory``.
        role: ``erp``, ``channel``, ``stream`` or ``archive`` (drives routing).
        types: Glob filters on the event type (``retail.pos.*``); empty means none.
        channel: The sales channel of a ``channel`` sink (``webshop``, ``amazon``, ``shopify``).
        ordering: ``strict`` (FIFO by seq per store) or ``none``.
        retry: Retry policy.
        options: Kind-specific settings (url, path, secret, …).
    """

    name: str
    kind: str
    role: Role = "stream"
    types: tuple[str, ...] = ("*",)
    channel: str | None = None
    ordering: Ordering = "none"
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    options: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, doc: Mapping[str, Any]) -> SinkConfig:
        """Build from a TOML table: known keys are fields, every other key goes to ``options``.

        Raises:
            ValueError: naming the bad field.
        """
        known = {"name", "kind", "role", "types", "channel", "ordering", "retry"}
        name = doc.get("name")
        if not isinstance(name, str) or not name:
            raise ValueError("sink: 'name' is required")
        kind = doc.get("kind")
        if not isinstance(kind, str) or not kind:
            raise ValueError(f"sink {name}: 'kind' is required")
        role = doc.get("role", "stream")
        if role not in ROLES:
            raise ValueError(f"sink {name}: role must be one of {', '.join(ROLES)}")
        ordering = doc.get("ordering", "none")
        if ordering not in ("strict", "none"):
            raise ValueError(f"sink {name}: ordering must be 'strict' or 'none'")
        types = doc.get("types", ["*"])
        if isinstance(types, str):
            types = [types]
        if not all(isinstance(t, str) for t in types):
            raise ValueError(f"sink {name}: types must be a list of glob strings")
        channel = doc.get("channel")
        if role == "channel" and not channel:
            raise ValueError(f"sink {name}: a channel sink needs 'channel'")
        r = doc.get("retry", {}) or {}
        unknown_retry = sorted(set(r) - {"max_attempts", "base_s", "cap_s"})
        if unknown_retry:
            raise ValueError(f"sink {name}: [retry] has unknown key {unknown_retry[0]!r} (max_attempts, base_s, cap_s)")
        retry = RetryPolicy(
            max_attempts=int(r.get("max_attempts", 10)),
            base_s=float(r.get("base_s", 1.0)),
            cap_s=float(r.get("cap_s", 300.0)),
        )
        if retry.max_attempts < 1 or retry.base_s <= 0 or retry.cap_s < retry.base_s:
            raise ValueError(f"sink {name}: retry needs max_attempts ≥ 1 and 0 < base_s ≤ cap_s")
        options = {k: v for k, v in doc.items() if k not in known}
        return cls(name, kind, role, tuple(types), channel, ordering, retry, options)


def _return_channel(event: Mapping[str, Any]) -> str | None:
    data = event.get("data")
    if not isinstance(data, Mapping):
        return None
    original = (data.get("txn") or {}).get("original")
    if not isinstance(original, Mapping):
        return None
    channel = original.get("channel")
    return channel if isinstance(channel, str) else None


@lru_cache(maxsize=4096)
def _type_matches(patterns: tuple[str, ...], type_: str) -> bool:
    """One of the glob ``patterns`` matches ``type_`` (few sinks and types: cached)."""
    return any(fnmatchcase(type_, pattern) for pattern in patterns)


def accepts(sink: SinkConfig, event: Mapping[str, Any]) -> bool:
    """True when ``sink`` should receive ``event``."""
    type_ = event.get("type", "")
    if not _type_matches(tuple(sink.types), type_):
        return False
    if event.get("audience") == "erp":
        return sink.role == "erp"
    if sink.role != "channel":
        return True
    if type_ == TXN_TYPES["return"]:
        channel = _return_channel(event)
        if channel is None or channel in STORE_CHANNELS:
            return False
        return sink.channel == channel
    return True


def route(sinks: Sequence[SinkConfig], event: Mapping[str, Any]) -> list[str]:
    """The names of the sinks that get ``event``, in configuration order."""
    return [s.name for s in sinks if accepts(s, event)]
