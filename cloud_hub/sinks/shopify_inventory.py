"""Reference channel adapter: Shopify inventory via the Admin GraphQL API.

Only ``retail.inventory.adjusted.v1`` events change anything; other events are ok without a call.
A batch's inventory deltas are coalesced per (Shopify location, inventory item) — a sale of 2 and a
restock of 1 of the same SKU in one store become one ``delta: -1`` — and sent as
``inventoryAdjustQuantities`` mutations (quantity name ``available``) with the
``@idempotent(key: …)`` directive, required from API version 2026-04. From 2026-07 every change
must name ``changeFromQuantity`` explicitly; we pass ``null`` (no compare-and-swap: POS sales are
facts, not a view of stock to reconcile).

The idempotency key is a UUID derived from the sorted ids of the events in the mutation, so the
same batch always carries the same key. After an unknown outcome (timeout, dropped connection) the
sink remembers that mutation and, when any of its events comes back, resends exactly it (same
variables, same key) before anything else, so Shopify applies it once whatever the new batch holds.
That memory is per process: after a hub restart the engine's redelivery relies on batches
being re-formed the same way, or on Shopify's own key window, to stay exactly-once.

The "short window" of coalescing is the batch: the delivery engine should linger ``window_s``
(option, default 2 s; exposed as :attr:`ShopifyInventorySink.linger_s`) to collect a lane's events
before calling :meth:`deliver`.

Options: ``shop_url`` (``https://{shop}.myshopify.com``), ``access_token`` (header
``X-Shopify-Access-Token``), ``api_version`` (default ``2026-07``), ``locations`` (store id →
``gid://shopify/Location/…``; unmapped stores are skipped as ok), ``inventory_items`` (SKU →
``gid://shopify/InventoryItem/…``; other SKUs are looked up with ``inventoryItems(query: "sku:…")``
and skipped when Shopify does not stock them), ``reason`` (default ``correction``),
``max_changes`` (per mutation, default 250), ``timeout_s``.

Errors: ``THROTTLED`` (top-level GraphQL error, with ``extensions.cost.throttleStatus``) and HTTP
429/5xx are transient, retried after the time the bucket needs to refill; ``userErrors`` and other
GraphQL errors, 401/403/404 are permanent. A fractional quantity cannot be sent (Shopify counts
whole units): that event is permanent.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Mapping, Sequence
from decimal import Decimal
from typing import Any

import httpx

from ..events import INVENTORY_TYPE, SinkConfig
from .base import (
    Outcome,
    PermanentSinkError,
    Sink,
    SinkError,
    TransientSinkError,
    classify_status,
    map_transport_errors,
)

DEFAULT_API_VERSION = "2026-07"
MUTATION = """mutation StoreSyncAdjust($input: InventoryAdjustQuantitiesInput!) {
  inventoryAdjustQuantities(input: $input) @idempotent(key: %s) {
    inventoryAdjustmentGroup { id createdAt reason referenceDocumentUri }
    userErrors { field message code }
  }
}"""
SKU_QUERY = """query StoreSyncSku($q: String!) {
  inventoryItems(first: 1, query: $q) { edges { node { id sku } } }
}"""


def idempotency_key(event_ids: Sequence[str]) -> str:
    """A UUID derived from the set of event ids: the same batch always gets the same key."""
    digest = hashlib.sha256("\n".join(sorted(set(event_ids))).encode("utf-8")).digest()
    return str(uuid.UUID(bytes=digest[:16], version=5))


def throttle_wait(doc: Mapping[str, Any], requested: float = 10.0) -> float:
    """Seconds until the bucket holds the requested cost, from ``extensions.cost``."""
    cost = (doc.get("extensions") or {}).get("cost") or {}
    status = cost.get("throttleStatus") or {}
    need = float(cost.get("requestedQueryCost") or requested)
    have = float(status.get("currentlyAvailable") or 0.0)
    rate = float(status.get("restoreRate") or 50.0)
    return max(0.5, (need - have) / rate) if rate > 0 else 1.0


class ShopifyInventorySink(Sink):
    """Coalesce inventory deltas and adjust Shopify's ``available`` quantities."""

    kind = "shopify_inventory"

    def __init__(self, config: SinkConfig, client: httpx.AsyncClient | None = None) -> None:
        super().__init__(config)
        o = self.options
        for key in ("shop_url", "access_token"):
            if not o.get(key):
                raise ValueError(f"sink {config.name}: shopify_inventory needs '{key}'")
        version = str(o.get("api_version", DEFAULT_API_VERSION))
        self.endpoint = f"{str(o['shop_url']).rstrip('/')}/admin/api/{version}/graphql.json"
        self.api_version = version
        self.locations = {str(k): str(v) for k, v in dict(o.get("locations", {})).items()}
        self.items: dict[str, str | None] = {str(k): str(v) for k, v in dict(o.get("inventory_items", {})).items()}
        self.reason = str(o.get("reason", "correction"))
        self.max_changes = max(1, int(o.get("max_changes", 250)))
        self.linger_s = float(o.get("window_s", 2.0))
        self._headers = {"X-Shopify-Access-Token": str(o["access_token"]), "Content-Type": "application/json"}
        self._own_client = client is None
        self._client = client or httpx.AsyncClient(timeout=float(o.get("timeout_s", 15.0)))
        self._in_doubt: dict[str, tuple[str, dict[str, Any]]] = {}  # event id → (key, input)
        self._settled: set[str] = set()

    async def aclose(self) -> None:
        if self._own_client:
            await self._client.aclose()

    async def graphql(self, query: str, variables: Mapping[str, Any]) -> dict[str, Any]:
        """POST one GraphQL document; the ``data`` object.

        Raises:
            TransientSinkError: THROTTLED, 429, 5xx or a transport failure.
            PermanentSinkError: other HTTP or GraphQL errors.
        """
        with map_transport_errors("POST Shopify GraphQL"):
            resp = await self._client.post(
                self.endpoint, json={"query": query, "variables": dict(variables)}, headers=self._headers
            )
        err = classify_status(resp.status_code, resp.headers, "POST Shopify GraphQL")
        if err is not None:
            raise err
        doc = resp.json()
        errors = doc.get("errors")
        if errors:
            codes = {((e.get("extensions") or {}).get("code")) for e in errors if isinstance(e, dict)}
            if "THROTTLED" in codes:
                raise TransientSinkError("Shopify THROTTLED", retry_after=throttle_wait(doc))
            if "INTERNAL_SERVER_ERROR" in codes:
                raise TransientSinkError("Shopify internal error")
            raise PermanentSinkError(f"Shopify GraphQL error: {errors[0].get('message', errors[0])}")
        return dict(doc.get("data") or {})

    async def _item_id(self, sku: str) -> str | None:
        if sku not in self.items:
            data = await self.graphql(SKU_QUERY, {"q": f"sku:{json.dumps(sku)}"})
            edges = ((data.get("inventoryItems") or {}).get("edges")) or []
            node = edges[0]["node"] if edges else None
            self.items[sku] = str(node["id"]) if node and node.get("sku") == sku else None
        return self.items[sku]

    async def _adjust(self, key: str, input_: dict[str, Any]) -> str:
        data = await self.graphql(MUTATION % json.dumps(key), {"input": input_})
        payload = data.get("inventoryAdjustQuantities") or {}
        user_errors = payload.get("userErrors") or []
        if user_errors:
            first = user_errors[0]
            if first.get("code") == "IDEMPOTENCY_CONCURRENT_REQUEST":
                raise TransientSinkError("Shopify: same idempotency key still in progress", retry_after=1.0)
            raise PermanentSinkError(f"Shopify userErrors: {first.get('code')}: {first.get('message')}")
        group = payload.get("inventoryAdjustmentGroup") or {}
        return str(group.get("id", ""))

    async def _send(self, event_ids: list[str], input_: dict[str, Any]) -> Outcome:
        key = idempotency_key(event_ids)
        try:
            ref = await self._adjust(key, input_)
        except TransientSinkError as exc:
            if exc.unknown:
                for eid in event_ids:
                    self._in_doubt[eid] = (key, input_)
            return Outcome.transient("", exc.reason, exc.retry_after)
        except PermanentSinkError as exc:
            return Outcome.permanent("", exc.reason)
        for eid in event_ids:
            self._in_doubt.pop(eid, None)
        return Outcome.ok("", ref=ref)

    async def _replay_in_doubt(self, ids: list[str], result: dict[str, Outcome]) -> None:
        for eid in ids:
            if eid in result or eid not in self._in_doubt:
                continue
            key, input_ = self._in_doubt[eid]
            members = [i for i, (k, _) in self._in_doubt.items() if k == key]
            try:
                ref = await self._adjust(key, input_)
            except SinkError as exc:
                for i in members:
                    if i in ids:
                        result[i] = exc.outcome(i)
                continue
            for i in members:
                self._in_doubt.pop(i, None)
                if i in ids:
                    result[i] = Outcome.ok(i, ref=ref, reason="resent after unknown outcome")
                else:
                    self._settled.add(i)

    async def deliver(self, events: Sequence[Mapping[str, Any]]) -> list[Outcome]:
        """Coalesce the batch's inventory deltas into as few mutations as possible."""
        result: dict[str, Outcome] = {}
        ids = [str(e["id"]) for e in events]
        await self._replay_in_doubt(ids, result)
        pending: list[tuple[str, list[tuple[str, str, int]]]] = []  # (event id, [(loc, item, delta)])
        for event in events:
            eid = str(event["id"])
            if eid in result:
                continue
            if eid in self._settled:
                self._settled.discard(eid)
                result[eid] = Outcome.ok(eid, reason="applied by an earlier resend")
                continue
            if event.get("type") != INVENTORY_TYPE:
                result[eid] = Outcome.ok(eid, reason="skipped: not an inventory event")
                continue
            data = event["data"]
            location = self.locations.get(str(data["store_id"]))
            if location is None:
                result[eid] = Outcome.ok(eid, reason="skipped: store has no Shopify location")
                continue
            try:
                changes = []
                for adj in data["adjustments"]:
                    delta = Decimal(adj["delta"])
                    if delta != delta.to_integral_value():
                        raise PermanentSinkError(f"fractional quantity {delta} of {adj['sku']}")
                    item = await self._item_id(str(adj["sku"]))
                    if item is not None:
                        changes.append((location, item, int(delta)))
            except SinkError as exc:
                result[eid] = exc.outcome(eid)
                continue
            if not changes:
                result[eid] = Outcome.ok(eid, reason="skipped: no SKU stocked in Shopify")
                continue
            pending.append((eid, changes))
        for group in self._groups(pending):
            group_ids = [eid for eid, _ in group]
            input_ = self._input(group_ids, group)
            if not input_["changes"]:
                for eid in group_ids:
                    result[eid] = Outcome.ok(eid, reason="deltas cancel out")
                continue
            outcome = await self._send(group_ids, input_)
            for eid in group_ids:
                result[eid] = Outcome(eid, outcome.status, outcome.reason, outcome.retry_after, outcome.ref)
        return [result[i] for i in ids]

    def _groups(
        self, pending: list[tuple[str, list[tuple[str, str, int]]]]
    ) -> list[list[tuple[str, list[tuple[str, str, int]]]]]:
        groups: list[list[tuple[str, list[tuple[str, str, int]]]]] = []
        keys: set[tuple[str, str]] = set()
        for entry in pending:
            new = {(loc, item) for loc, item, _ in entry[1]}
            if groups and len(keys | new) <= self.max_changes:
                groups[-1].append(entry)
                keys |= new
            else:
                groups.append([entry])
                keys = set(new)
        return groups

    def _input(self, group_ids: list[str], group: list[tuple[str, list[tuple[str, str, int]]]]) -> dict[str, Any]:
        net: dict[tuple[str, str], int] = {}
        for _, changes in group:
            for loc, item, delta in changes:
                net[(loc, item)] = net.get((loc, item), 0) + delta
        changes_out: list[dict[str, Any]] = []
        for (loc, item), delta in net.items():
            if delta == 0:
                continue
            change: dict[str, Any] = {"delta": delta, "inventoryItemId": item, "locationId": loc}
            if self.api_version >= "2026-07":
                change["changeFromQuantity"] = None
            changes_out.append(change)
        return {
            "name": "available",
            "reason": self.reason,
            "referenceDocumentUri": f"gid://storesync/InventoryBatch/{idempotency_key(group_ids)}",
            "changes": changes_out,
        }
