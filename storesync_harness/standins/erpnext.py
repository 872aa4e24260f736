"""An ERPNext site stand-in: the Frappe REST API v1 subset the ERP adapter uses.

Endpoints (as Frappe serves them):

- ``GET /api/resource/{doctype}?filters=[[field, op, value]]&fields=[...]&limit_page_length=N`` →
  ``{"data": [...]}`` (ops ``=``, ``!=``; a filter row may also be ``[doctype, field, op, value]``).
- ``GET /api/resource/{doctype}/{name}`` → ``{"data": doc}`` or 404 ``DoesNotExistError``.
- ``POST /api/resource/{doctype}`` (JSON body, or form field ``data``) → ``{"data": doc}``;
  ``docstatus: 1`` in the body submits it.
- ``POST /api/method/frappe.client.cancel`` ``{"doctype", "name"}`` → ``{"message": doc}``.

Authentication: ``Authorization: token <api_key>:<api_secret>``, else 401 ``AuthenticationError``.
Errors have Frappe's shape ``{"exc_type", "exception", "_server_messages"}``: validation 417,
missing document 404, rate limit 429 ``TooManyRequestsError`` with ``Retry-After``.

Validation enforced for Sales Invoice: mandatory customer, company, items; links (Customer,
Company, Item, Warehouse, Mode of Payment, Account) must exist; POS invoices need payments that add
up to the grand total (Σ qty × rate − discount_amount + Σ taxes); returns need negative quantities,
a submitted ``return_against`` of the same customer, and may not return more than was sold. Stock
Entry: known ``stock_entry_type``, items with positive qty and a source warehouse for issues.
``storesync_event_id`` is an ordinary (non-unique) custom field here, so a client that creates twice
gets two invoices — the tests count them.

``GET /_standin/docs/{doctype}`` lists every stored document.
"""

from __future__ import annotations

import json
from collections import defaultdict
from typing import Any
from urllib.parse import unquote

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from ..pos import SKUS
from . import Faults, Recorder, TokenBucket, control_routes, parser, serve, with_faults

COMPANY = "StoreSync Retail"
FIELDS = {
    "Sales Invoice": {
        "name", "docstatus", "customer", "company", "currency", "is_pos", "update_stock", "is_return",
        "return_against", "po_no", "posting_date", "posting_time", "set_posting_time", "set_warehouse",
        "items", "payments", "taxes", "discount_amount", "apply_discount_on", "remarks", "grand_total",
        "storesync_event_id", "storesync_order_id",
    },
    "Stock Entry": {
        "name", "docstatus", "stock_entry_type", "company", "items", "remarks", "posting_date",
        "posting_time", "set_posting_time", "storesync_event_id",
    },
}  # fmt: skip


class FrappeError(Exception):
    """An error answered in Frappe's shape."""

    def __init__(self, status: int, exc_type: str, message: str) -> None:
        super().__init__(message)
        self.status, self.exc_type, self.message = status, exc_type, message

    def response(self, headers: dict[str, str] | None = None) -> Response:
        body = {
            "exc_type": self.exc_type,
            "exception": f"frappe.exceptions.{self.exc_type}: {self.message}",
            "_server_messages": json.dumps([json.dumps({"message": self.message})]),
        }
        return JSONResponse(body, status_code=self.status, headers=headers)


def _invalid(message: str) -> FrappeError:
    return FrappeError(417, "ValidationError", message)


class Site:
    """The documents and masters of one site."""

    def __init__(self, company: str = COMPANY) -> None:
        self.masters: dict[str, set[str]] = {
            "Company": {company},
            "Customer": {"Walk-in Customer"},
            "Item": {sku for sku, _ in SKUS},
            "Warehouse": {"Stores - SR"},
            "Mode of Payment": {"Cash", "Credit Card"},
            "Account": {"VAT - SR"},
        }
        self.docs: dict[str, list[dict[str, Any]]] = defaultdict(list)
        self.counters: dict[str, int] = defaultdict(int)

    def link(self, doctype: str, value: Any, where: str) -> None:
        if not value:
            raise FrappeError(417, "MandatoryError", f"[{where}]: {doctype} is mandatory")
        if value not in self.masters[doctype]:
            raise FrappeError(417, "LinkValidationError", f"Could not find {where}: {value}")

    def get(self, doctype: str, name: str) -> dict[str, Any]:
        for doc in self.docs[doctype]:
            if doc["name"] == name:
                return doc
        raise FrappeError(404, "DoesNotExistError", f"{doctype} {name} not found")

    def _name(self, series: str) -> str:
        self.counters[series] += 1
        return f"{series}-2026-{self.counters[series]:05d}"

    def insert(self, doctype: str, doc: dict[str, Any]) -> dict[str, Any]:
        if doctype not in FIELDS:
            raise FrappeError(404, "DoesNotExistError", f"DocType {doctype} not found")
        unknown = sorted(set(doc) - FIELDS[doctype] - {"doctype"})
        if unknown:
            raise _invalid(f"Field not permitted or unknown in {doctype}: {', '.join(unknown)}")
        docstatus = doc.get("docstatus", 0)
        if docstatus not in (0, 1):
            raise _invalid("docstatus must be 0 or 1 on insert")
        if doctype == "Sales Invoice":
            self._check_invoice(doc)
            name = self._name("ACC-SINV-RET" if doc.get("is_return") else "ACC-SINV")
        else:
            self._check_stock_entry(doc)
            name = self._name("MAT-STE")
        stored = dict(doc, doctype=doctype, name=name, docstatus=docstatus)
        self.docs[doctype].append(stored)
        return stored

    def _check_invoice(self, doc: dict[str, Any]) -> None:
        self.link("Customer", doc.get("customer"), "Customer")
        self.link("Company", doc.get("company"), "Company")
        items = doc.get("items") or []
        if not items:
            raise FrappeError(417, "MandatoryError", "[Sales Invoice]: items")
        is_return = bool(doc.get("is_return"))
        if doc.get("set_warehouse"):
            self.link("Warehouse", doc["set_warehouse"], "Warehouse")
        net = 0.0
        for i, item in enumerate(items, 1):
            self.link("Item", item.get("item_code"), "Item")
            if item.get("warehouse"):
                self.link("Warehouse", item["warehouse"], "Warehouse")
            qty, rate = item.get("qty"), item.get("rate", 0)
            if not isinstance(qty, int | float) or isinstance(qty, bool) or qty == 0:
                raise _invalid(f"Row #{i}: Quantity must be a non-zero number")
            if not isinstance(rate, int | float) or rate < 0:
                raise _invalid(f"Row #{i}: Rate cannot be negative")
            if is_return and qty > 0:
                raise _invalid(f"Row #{i}: Quantity for a return must be negative")
            if not is_return and qty < 0:
                raise _invalid(f"Row #{i}: Quantity must be positive (set Is Return for a return)")
            net += qty * rate
        net -= float(doc.get("discount_amount") or 0)
        taxes = 0.0
        for row in doc.get("taxes") or []:
            if row.get("charge_type") != "Actual":
                raise _invalid("Only 'Actual' tax rows are supported here")
            self.link("Account", row.get("account_head"), "Account")
            taxes += float(row.get("tax_amount") or 0)
        grand = round(net + taxes, 2)
        doc["grand_total"] = grand
        if doc.get("is_pos"):
            payments = doc.get("payments") or []
            if not payments:
                raise _invalid("At least one mode of payment is required for POS invoice.")
            paid = 0.0
            for row in payments:
                self.link("Mode of Payment", row.get("mode_of_payment"), "Mode of Payment")
                paid += float(row.get("amount") or 0)
            if abs(round(paid, 2) - grand) > 0.005:
                raise _invalid(f"Paid amount {round(paid, 2)} does not match Grand Total {grand}")
        if is_return and doc.get("return_against"):
            self._check_return(doc)

    def _check_return(self, doc: dict[str, Any]) -> None:
        try:
            original = self.get("Sales Invoice", doc["return_against"])
        except FrappeError:
            raise FrappeError(417, "LinkValidationError", f"Invalid Return Against: {doc['return_against']}") from None
        if original["docstatus"] != 1 or original.get("is_return"):
            raise _invalid(f"Return Against {original['name']} must be a submitted sales invoice")
        if original["customer"] != doc["customer"]:
            raise _invalid(f"Customer must be {original['customer']} as in Return Against")
        sold: dict[str, float] = defaultdict(float)
        for item in original["items"]:
            sold[item["item_code"]] += item["qty"]
        for other in self.docs["Sales Invoice"]:
            if other.get("return_against") == original["name"] and other["docstatus"] == 1:
                for item in other["items"]:
                    sold[item["item_code"]] += item["qty"]  # negative
        for i, item in enumerate(doc["items"], 1):
            code = item["item_code"]
            if code not in sold:
                raise _invalid(f"Row #{i}: Returned Item {code} does not exist in {original['name']}")
            if -item["qty"] > sold[code] + 1e-9:
                raise FrappeError(
                    417, "StockOverReturnError", f"Row #{i}: Cannot return more than {sold[code]} for Item {code}"
                )

    def _check_stock_entry(self, doc: dict[str, Any]) -> None:
        self.link("Company", doc.get("company"), "Company")
        kind = doc.get("stock_entry_type")
        if kind not in ("Material Issue", "Material Receipt", "Material Transfer"):
            raise FrappeError(417, "LinkValidationError", f"Could not find Stock Entry Type: {kind}")
        items = doc.get("items") or []
        if not items:
            raise FrappeError(417, "MandatoryError", "[Stock Entry]: items")
        for i, item in enumerate(items, 1):
            self.link("Item", item.get("item_code"), "Item")
            if not isinstance(item.get("qty"), int | float) or item["qty"] <= 0:
                raise _invalid(f"Row {i}: Qty must be greater than 0")
            if kind == "Material Issue":
                self.link("Warehouse", item.get("s_warehouse"), "Source Warehouse")

    def cancel(self, doctype: str, name: str) -> dict[str, Any]:
        doc = self.get(doctype, name)
        if doc["docstatus"] != 1:
            raise _invalid(f"Cannot cancel {doctype} {name}: it is not submitted (docstatus {doc['docstatus']})")
        doc["docstatus"] = 2
        return doc

    def query(self, doctype: str, filters: list[Any], fields: list[str], limit: int) -> list[dict[str, Any]]:
        if doctype not in FIELDS:
            raise FrappeError(404, "DoesNotExistError", f"DocType {doctype} not found")
        conds = []
        for row in filters:
            if not isinstance(row, list) or len(row) not in (3, 4):
                raise _invalid(f"Invalid filter: {row}")
            field, op, value = row[-3:]
            if field not in FIELDS[doctype]:
                raise FrappeError(417, "DataError", f"Field not permitted in query: {field}")
            if op not in ("=", "!="):
                raise _invalid(f"Operator {op} is not supported by the stand-in")
            conds.append((field, op, value))
        for field in fields:
            if field not in FIELDS[doctype]:
                raise FrappeError(417, "DataError", f"Field not permitted in query: {field}")
        out = []
        for doc in self.docs[doctype]:
            if all((doc.get(f) == v) == (op == "=") for f, op, v in conds):
                out.append({f: doc.get(f) for f in fields})
        return out[:limit] if limit > 0 else out


def create_app(
    recorder: Recorder, api_key: str, api_secret: str, rate: float | None = None, faults: Faults | None = None
) -> Starlette:
    """The site app."""
    faults = faults or Faults()
    site = Site()
    bucket = TokenBucket(max(rate, 1.0), rate) if rate else None
    token = f"token {api_key}:{api_secret}"

    def failure(status: int, retry_after: int | None) -> Response:
        headers = {"Retry-After": str(retry_after)} if retry_after is not None else {}
        if status == 429:
            return FrappeError(429, "TooManyRequestsError", "Too Many Requests").response(headers)
        if status >= 500:
            return Response("<html><body><h1>503 Service Unavailable</h1></body></html>", status, headers=headers)
        return FrappeError(status, "ValidationError", "injected failure").response(headers)

    async def dispatch(request: Request) -> Response:
        raw = await request.body()
        entry: dict[str, Any] = {
            "method": request.method,
            "path": unquote(request.url.path),
            "query": dict(request.query_params),
            "body": raw.decode("utf-8", errors="replace"),
        }

        async def handle() -> Response:
            if request.headers.get("authorization") != token:
                return FrappeError(401, "AuthenticationError", "Invalid API key or secret").response()
            if bucket is not None and not bucket.take(1):
                wait = max(1, int(bucket.wait_for(1) + 0.999))
                return FrappeError(429, "TooManyRequestsError", "Too Many Requests").response(
                    {"Retry-After": str(wait)}
                )
            try:
                return JSONResponse(_route(site, request, raw))
            except FrappeError as exc:
                return exc.response()

        response = await with_faults(faults, failure, handle)
        entry["status"] = response.status_code
        recorder.record(entry)
        return response

    async def docs(request: Request) -> Response:
        return JSONResponse({"docs": site.docs[request.path_params["doctype"]]})

    routes = control_routes(recorder, faults) + [
        Route("/_standin/docs/{doctype}", docs),
        Route("/api/{rest:path}", dispatch, methods=["GET", "POST"]),
    ]
    return Starlette(routes=routes)


def _route(site: Site, request: Request, raw: bytes) -> dict[str, Any]:
    path = unquote(request.url.path)
    if path == "/api/method/frappe.client.cancel" and request.method == "POST":
        args = _body(request, raw)
        return {"message": site.cancel(str(args.get("doctype")), str(args.get("name")))}
    if not path.startswith("/api/resource/"):
        raise FrappeError(404, "DoesNotExistError", f"{path} not found")
    parts = path[len("/api/resource/") :].split("/", 1)
    doctype = parts[0]
    if len(parts) == 2:
        if request.method != "GET":
            raise FrappeError(405, "ValidationError", "Method not allowed")
        return {"data": site.get(doctype, parts[1])}
    if request.method == "POST":
        return {"data": site.insert(doctype, _body(request, raw))}
    q = request.query_params
    try:
        filters = json.loads(q.get("filters", "[]"))
        fields = json.loads(q.get("fields", '["name"]'))
        limit = int(q.get("limit_page_length", "20"))
    except ValueError:
        raise _invalid("filters and fields must be JSON") from None
    return {"data": site.query(doctype, filters, fields, limit)}


def _body(request: Request, raw: bytes) -> dict[str, Any]:
    try:
        if request.headers.get("content-type", "").startswith("application/json"):
            doc = json.loads(raw or b"{}")
        else:
            from urllib.parse import parse_qs

            doc = json.loads(parse_qs(raw.decode()).get("data", ["{}"])[0])
    except ValueError:
        raise _invalid("request body is not valid JSON") from None
    if not isinstance(doc, dict):
        raise _invalid("request body must be a JSON object")
    return doc


def main(argv: list[str] | None = None) -> None:
    p = parser("ERPNext REST API stand-in")
    p.add_argument("--api-key", default="storesync")
    p.add_argument("--api-secret", default="secret")
    p.add_argument("--rate", type=float, default=None, help="requests per second before 429")
    args = p.parse_args(argv)
    serve(create_app(Recorder(args.record), args.api_key, args.api_secret, args.rate), args.host, args.port)


if __name__ == "__main__":
    main()
