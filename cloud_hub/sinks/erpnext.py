"""Reference ERP adapter: ERPNext (Frappe REST API v1).

What each event becomes:

=================================  ============================================================
``retail.pos.sale.v1``             a submitted POS Sales Invoice (``is_pos=1``, ``update_stock=1``,
                                   ``docstatus=1``), items, payments, taxes as one ``Actual`` row,
                                   line discounts as the invoice ``discount_amount``
``retail.pos.return.v1``           a submitted return invoice (``is_return=1``, negative qty and
                                   amounts) with ``return_against`` = the original invoice when
                                   found: a store sale by ``storesync_order_id``, another
                                   channel's order by ``channel_order_field`` (default ``po_no``);
                                   not found → a standalone credit note (remarks say so)
``retail.pos.void.v1``             the voided sale's invoice is cancelled
                                   (``POST /api/method/frappe.client.cancel``)
``…:inventory`` (adjusted)         skipped as ok: ``update_stock=1`` already moved the stock
``…:writeoff`` (damaged returns)   a submitted Stock Entry ``Material Issue`` from the warehouse
=================================  ============================================================

Exactly once: the invoice and stock entry carry the custom field ``storesync_event_id`` (create it as
a Custom Field of type Data, ideally unique, on Sales Invoice and Stock Entry; likewise
``storesync_order_id`` = ``{store_id}/{txn_id}`` on Sales Invoice). Before creating, the sink looks
the document up with ``GET /api/resource/{doctype}?filters=[["storesync_event_id","=",id]]``, so a
retry after an unknown outcome (timeout, dropped connection) never creates a second one. A 409
(unique field) is answered by the same lookup.

Options: ``url``, ``api_key``, ``api_secret`` (sent as ``Authorization: token key:secret``),
``company``, ``customer`` (default ``Walk-in Customer``), ``warehouse`` and per-store
``warehouses``, ``modes_of_payment`` (tender type → Mode of Payment; default cash → Cash, card →
Credit Card), ``tax_account`` (needed when a line has tax), ``timezone`` for posting date/time
(default UTC), ``channel_order_field``, ``timeout_s``.

Errors: 401/403/404/417 (ValidationError) are permanent; 408/429/5xx and transport failures are
transient (``Retry-After`` honoured).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import datetime
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

import httpx

from ..events import INVENTORY_SUFFIX, STORE_CHANNELS, WRITEOFF_SUFFIX, SinkConfig
from .base import (
    Outcome,
    PermanentSinkError,
    Sink,
    SinkError,
    TransientSinkError,
    blocked,
    classify_status,
    map_transport_errors,
)

EVENT_FIELD = "storesync_event_id"
ORDER_FIELD = "storesync_order_id"
DEFAULT_MODES = {"cash": "Cash", "card": "Credit Card"}


def frappe_message(resp: httpx.Response) -> str:
    """The human message of a Frappe error response (``_server_messages`` / ``exception``)."""
    try:
        doc = resp.json()
    except ValueError:
        return resp.text[:200]
    if not isinstance(doc, dict):
        return str(doc)[:200]
    raw = doc.get("_server_messages")
    if isinstance(raw, str):
        try:
            msgs = [json.loads(m).get("message", m) for m in json.loads(raw)]
            return "; ".join(str(m) for m in msgs)[:300]
        except (ValueError, AttributeError, TypeError):
            pass
    return str(doc.get("exception") or doc.get("exc_type") or doc.get("message") or "")[:300]


def _num(text: str | Decimal) -> float:
    return float(Decimal(text))


class ErpNextSink(Sink):
    """Book POS transactions in ERPNext, each at most once."""

    kind = "erpnext"

    def __init__(self, config: SinkConfig, client: httpx.AsyncClient | None = None) -> None:
        super().__init__(config)
        o = self.options
        for key in ("url", "api_key", "api_secret", "company"):
            if not o.get(key):
                raise ValueError(f"sink {config.name}: erpnext needs '{key}'")
        self.base = str(o["url"]).rstrip("/")
        self.company = str(o["company"])
        self.customer = str(o.get("customer", "Walk-in Customer"))
        self.warehouse = str(o["warehouse"]) if o.get("warehouse") else None
        self.warehouses = {str(k): str(v) for k, v in dict(o.get("warehouses", {})).items()}
        self.modes = dict(DEFAULT_MODES, **{str(k): str(v) for k, v in dict(o.get("modes_of_payment", {})).items()})
        self.tax_account = str(o["tax_account"]) if o.get("tax_account") else None
        self.zone = ZoneInfo(str(o.get("timezone", "UTC")))
        self.channel_order_field = str(o.get("channel_order_field", "po_no"))
        headers = {"Authorization": f"token {o['api_key']}:{o['api_secret']}", "Accept": "application/json"}
        self._own_client = client is None
        self._client = client or httpx.AsyncClient(timeout=float(o.get("timeout_s", 15.0)))
        self._headers = headers

    async def aclose(self) -> None:
        if self._own_client:
            await self._client.aclose()

    # ------------------------------------------------------------------------------------ HTTP

    async def _call(self, method: str, path: str, **kw: Any) -> httpx.Response:
        with map_transport_errors(f"{method} {path}"):
            resp = await self._client.request(method, self.base + path, headers=self._headers, **kw)
        err = classify_status(resp.status_code, resp.headers, f"{method} {path}")
        if err is None or resp.status_code == 409:
            return resp
        if isinstance(err, PermanentSinkError):
            raise PermanentSinkError(f"{err.reason}: {frappe_message(resp)}")
        raise err

    async def find(self, doctype: str, field: str, value: str) -> dict[str, Any] | None:
        """The first document whose ``field`` equals ``value`` (name and docstatus), or None."""
        params = {
            "filters": json.dumps([[field, "=", value]]),
            "fields": json.dumps(["name", "docstatus"]),
            "limit_page_length": "1",
        }
        resp = await self._call("GET", f"/api/resource/{doctype}", params=params)
        rows = resp.json().get("data") or []
        return dict(rows[0]) if rows else None

    async def create_once(self, doctype: str, event_id: str, doc: dict[str, Any]) -> str:
        """Create ``doc`` unless a document with this event id exists; the document name."""
        found = await self.find(doctype, EVENT_FIELD, event_id)
        if found is not None:
            return str(found["name"])
        resp = await self._call("POST", f"/api/resource/{doctype}", json=dict(doc, **{EVENT_FIELD: event_id}))
        if resp.status_code == 409:
            found = await self.find(doctype, EVENT_FIELD, event_id)
            if found is None:
                raise TransientSinkError(f"POST {doctype}: 409 but no document with this event id yet")
            return str(found["name"])
        return str(resp.json()["data"]["name"])

    # ------------------------------------------------------------------------------ documents

    def _warehouse(self, store_id: str) -> str | None:
        return self.warehouses.get(store_id, self.warehouse)

    def _posting(self, data: Mapping[str, Any]) -> dict[str, Any]:
        local = datetime.fromisoformat(str(data["occurred_at_utc"]).replace("Z", "+00:00")).astimezone(self.zone)
        return {
            "posting_date": local.date().isoformat(),
            "posting_time": local.time().replace(microsecond=0).isoformat(),
            "set_posting_time": 1,
        }

    def invoice(self, event: Mapping[str, Any], return_against: str | None = None) -> dict[str, Any]:
        """The Sales Invoice document of a sale or return event.

        Raises:
            PermanentSinkError: when a tender has no mode of payment or tax has no account.
        """
        data = event["data"]
        txn = data["txn"]
        sign = -1 if txn["kind"] == "return" else 1
        store = data["store_id"]
        wh = self._warehouse(store)
        items, discount, tax = [], Decimal(0), Decimal(0)
        for line in txn["lines"]:
            item: dict[str, Any] = {
                "item_code": line["sku"],
                "qty": sign * _num(line["qty"]),
                "rate": _num(line["unit_price"]),
            }
            if wh:
                item["warehouse"] = wh
            items.append(item)
            discount += Decimal(line.get("discount", "0"))
            tax += Decimal(line.get("tax", "0"))
        payments = []
        for tender in txn["tenders"]:
            mode = self.modes.get(tender["type"])
            if mode is None:
                raise PermanentSinkError(f"no Mode of Payment configured for tender type {tender['type']!r}")
            payments.append({"mode_of_payment": mode, "amount": sign * _num(tender["amount"])})
        doc: dict[str, Any] = {
            "customer": self.customer,
            "company": self.company,
            "currency": txn["currency"],
            "is_pos": 1,
            "update_stock": 1,
            "items": items,
            "payments": payments,
            ORDER_FIELD: f"{store}/{txn['txn_id']}",
            "remarks": f"StoreSync {event['id']}: register {txn['register_id']}, txn {txn['txn_id']}",
            "docstatus": 1,
            **self._posting(data),
        }
        if wh:
            doc["set_warehouse"] = wh
        if discount:
            doc["apply_discount_on"] = "Net Total"
            doc["discount_amount"] = sign * float(discount)
        if tax:
            if not self.tax_account:
                raise PermanentSinkError("lines carry tax but the sink has no 'tax_account'")
            doc["taxes"] = [
                {
                    "charge_type": "Actual",
                    "account_head": self.tax_account,
                    "description": "POS tax",
                    "tax_amount": sign * float(tax),
                }
            ]
        if sign < 0:
            doc["is_return"] = 1
            if return_against:
                doc["return_against"] = return_against
            else:
                doc["remarks"] += " (original invoice not found: standalone credit note)"
        return doc

    async def _original(self, event: Mapping[str, Any]) -> str | None:
        data = event["data"]
        original = data["txn"].get("original")
        if not original:
            return None
        channel = original["channel"]
        if channel in STORE_CHANNELS:
            found = await self.find("Sales Invoice", ORDER_FIELD, f"{data['store_id']}/{original['order_id']}")
        else:
            found = await self.find("Sales Invoice", self.channel_order_field, str(original["order_id"]))
        return str(found["name"]) if found and found.get("docstatus") == 1 else None

    async def _void(self, event: Mapping[str, Any]) -> str:
        data = event["data"]
        key = f"{data['store_id']}/{data['txn']['voided_txn_id']}"
        found = await self.find("Sales Invoice", ORDER_FIELD, key)
        if found is None:
            raise TransientSinkError(f"voided sale {key} has no invoice yet", retry_after=60)
        if found.get("docstatus") != 2:
            await self._call(
                "POST",
                "/api/method/frappe.client.cancel",
                json={"doctype": "Sales Invoice", "name": found["name"]},
            )
        return str(found["name"])

    async def _writeoff(self, event: Mapping[str, Any]) -> str:
        data = event["data"]
        wh = self._warehouse(data["store_id"])
        if not wh:
            raise PermanentSinkError("a write-off needs 'warehouse' (or 'warehouses') configured")
        items = [{"item_code": a["sku"], "qty": abs(_num(a["delta"])), "s_warehouse": wh} for a in data["adjustments"]]
        doc = {
            "stock_entry_type": "Material Issue",
            "company": self.company,
            "items": items,
            "remarks": f"StoreSync {event['id']}: damaged on return {data['txn_id']}",
            "docstatus": 1,
            **self._posting(data),
        }
        return await self.create_once("Stock Entry", str(event["id"]), doc)

    async def deliver_one(self, event: Mapping[str, Any]) -> Outcome:
        """Book one event; never raises for the ERP's answers."""
        eid = str(event["id"])
        try:
            if eid.endswith(INVENTORY_SUFFIX):
                return Outcome.ok(eid, reason="skipped: stock moves with the invoice (update_stock=1)")
            if eid.endswith(WRITEOFF_SUFFIX):
                return Outcome.ok(eid, ref=await self._writeoff(event))
            kind = event["data"]["kind"]
            if kind == "void":
                return Outcome.ok(eid, ref=await self._void(event))
            against = await self._original(event) if kind == "return" else None
            return Outcome.ok(eid, ref=await self.create_once("Sales Invoice", eid, self.invoice(event, against)))
        except SinkError as exc:
            return exc.outcome(eid)
        except (KeyError, TypeError, ValueError) as exc:
            return Outcome.permanent(eid, f"cannot map event to ERPNext: {type(exc).__name__}: {exc}")

    async def deliver(self, events: Sequence[Mapping[str, Any]]) -> list[Outcome]:
        """One event at a time, in order; a strict lane stops at the first failure."""
        out: list[Outcome] = []
        for i, event in enumerate(events):
            outcome = await self.deliver_one(event)
            out.append(outcome)
            if not outcome.done and self.config.ordering == "strict":
                return out + blocked(events, i + 1, f"{outcome.event_id} failed first")
        return out
