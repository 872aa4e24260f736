"""A Shopify Admin GraphQL stand-in for inventory: ``inventoryAdjustQuantities`` and ``inventoryItems``.

``POST /admin/api/{version}/graphql.json`` with ``{"query", "variables"}`` and the header
``X-Shopify-Access-Token`` (401 ``{"errors": "[API] Invalid API key or access token ..."}``
otherwise). What it enforces, as the documentation describes:

- Rate limit by calculated query cost: a leaky bucket (``--bucket`` points, refilled at
  ``--restore`` points/s; a mutation costs 10, a query 3). Short of points the answer is HTTP 200
  with ``errors: [{"message": "Throttled", "extensions": {"code": "THROTTLED"}}]`` and no data.
  Every answer carries ``extensions.cost`` (``requestedQueryCost``, ``actualQueryCost``,
  ``throttleStatus {maximumAvailable, currentlyAvailable, restoreRate}``).
- From version 2026-04 ``inventoryAdjustQuantities`` must carry ``@idempotent(key: "...")``. A
  repeated key with the same input returns the first result without applying it again; with a
  different input, ``userErrors`` code ``IDEMPOTENCY_KEY_PARAMETER_MISMATCH``; a key whose first
  attempt failed, ``IDEMPOTENCY_PREVIOUS_ATTEMPT_FAILED``.
- From version 2026-07 every change must name ``changeFromQuantity`` (``null`` skips the check;
  a number must equal the current quantity, else ``CHANGE_FROM_QUANTITY_STALE``).
- Variable coercion: ``delta`` must be an Int (top-level error naming the path otherwise).
- ``userErrors`` for an unknown quantity name, reason, location, inventory item, an item not
  stocked at the location, or a ``ledgerDocumentUri`` given for ``available``.

The wording of the top-level errors for a missing directive or field is the stand-in's own.
``GET /_standin/state`` returns the quantities and adjustment groups. Seeded with locations
``gid://shopify/Location/1`` and ``/2`` and one inventory item per SKU of the simulated POS
(``gid://shopify/InventoryItem/1001``, …), each stocked at both with 100 available.
"""

from __future__ import annotations

import hashlib
import json
import re
from datetime import UTC, datetime
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from ..pos import SKUS
from . import Faults, Recorder, TokenBucket, control_routes, parser, serve, with_faults

REASONS = {
    "correction", "cycle_count_available", "damaged", "movement_created", "movement_updated",
    "movement_received", "movement_canceled", "other", "promotion", "quality_control", "received",
    "reservation_created", "reservation_deleted", "reservation_updated", "restock", "safety_stock", "shrinkage",
}  # fmt: skip
NAMES = {"available", "damaged", "incoming", "quality_control", "reserved", "safety_stock", "on_hand"}
MUTATION_COST, QUERY_COST = 10, 3
_IDEMPOTENT = re.compile(r"@idempotent\s*\(\s*key\s*:\s*(?:\"((?:[^\"\\]|\\.)*)\"|\$(\w+))\s*\)")
_INT32 = 2**31 - 1


def _user_error(code: str, message: str, field: list[str]) -> dict[str, Any]:
    return {"code": code, "message": message, "field": field}


class Store:
    """Inventory state of one shop."""

    def __init__(self) -> None:
        self.locations = {"gid://shopify/Location/1", "gid://shopify/Location/2"}
        self.items = {f"gid://shopify/InventoryItem/{1001 + i}": sku for i, (sku, _) in enumerate(SKUS)}
        self.levels: dict[tuple[str, str], int] = {(loc, it): 100 for loc in self.locations for it in self.items}
        self.groups: list[dict[str, Any]] = []
        self.keys: dict[str, tuple[str, dict[str, Any]]] = {}

    def adjust(self, input_: dict[str, Any], version: str) -> dict[str, Any]:
        errors: list[dict[str, Any]] = []
        if input_.get("name") not in NAMES:
            errors.append(_user_error("INVALID_QUANTITY_NAME", "The quantity name is invalid.", ["input", "name"]))
        if input_.get("reason") not in REASONS:
            errors.append(_user_error("INVALID_REASON", "The specified reason is invalid.", ["input", "reason"]))
        uri = input_.get("referenceDocumentUri")
        if uri is not None and not re.match(r"^[a-z][a-z0-9+.-]*://.+", str(uri)):
            errors.append(
                _user_error(
                    "INVALID_REFERENCE_DOCUMENT",
                    "The reference document URI isn't a valid URI.",
                    ["input", "referenceDocumentUri"],
                )
            )
        changes = input_.get("changes") or []
        for i, ch in enumerate(changes):
            path = ["input", "changes", str(i)]
            loc, item = ch.get("locationId"), ch.get("inventoryItemId")
            if version >= "2026-07" and "changeFromQuantity" not in ch:
                errors.append(
                    _user_error(
                        "INVALID_QUANTITY_DOCUMENT",
                        "changeFromQuantity must be provided (null to skip).",
                        [*path, "changeFromQuantity"],
                    )
                )
            if loc not in self.locations:
                errors.append(
                    _user_error("INVALID_LOCATION", "The specified location could not be found.", [*path, "locationId"])
                )
            elif item not in self.items:
                errors.append(
                    _user_error(
                        "INVALID_INVENTORY_ITEM",
                        "The specified inventory item could not be found.",
                        [*path, "inventoryItemId"],
                    )
                )
            elif (loc, item) not in self.levels:
                errors.append(
                    _user_error(
                        "ITEM_NOT_STOCKED_AT_LOCATION",
                        "The item is not stocked at the location.",
                        [*path, "inventoryItemId"],
                    )
                )
            elif ch.get("changeFromQuantity") is not None and ch["changeFromQuantity"] != self.levels[(loc, item)]:
                errors.append(
                    _user_error(
                        "CHANGE_FROM_QUANTITY_STALE",
                        "The quantity has changed since it was read.",
                        [*path, "changeFromQuantity"],
                    )
                )
            if input_.get("name") == "available" and ch.get("ledgerDocumentUri") is not None:
                errors.append(
                    _user_error(
                        "INVALID_AVAILABLE_DOCUMENT",
                        "A ledger document URI is not allowed for available.",
                        [*path, "ledgerDocumentUri"],
                    )
                )
        if errors:
            return {"inventoryAdjustmentGroup": None, "userErrors": errors}
        for ch in changes:
            self.levels[(ch["locationId"], ch["inventoryItemId"])] += ch["delta"]
        group = {
            "id": f"gid://shopify/InventoryAdjustmentGroup/{len(self.groups) + 1}",
            "createdAt": datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z"),
            "reason": input_["reason"],
            "referenceDocumentUri": uri,
            "changes": [dict(ch) for ch in changes],
        }
        self.groups.append(group)
        return {
            "inventoryAdjustmentGroup": {k: group[k] for k in ("id", "createdAt", "reason", "referenceDocumentUri")},
            "userErrors": [],
        }


def _coerce(variables: dict[str, Any]) -> list[dict[str, Any]]:
    input_ = variables.get("input")
    problems: list[dict[str, Any]] = []
    if not isinstance(input_, dict):
        problems.append({"path": [], "explanation": "Expected value to not be null"})
        return problems
    for key in ("name", "reason"):
        if not isinstance(input_.get(key), str):
            problems.append({"path": [key], "explanation": "Expected value to not be null"})
    changes = input_.get("changes")
    if not isinstance(changes, list):
        problems.append({"path": ["changes"], "explanation": "Expected value to not be null"})
        return problems
    for i, ch in enumerate(changes):
        if not isinstance(ch, dict):
            problems.append({"path": ["changes", i], "explanation": "Expected value to be an object"})
            continue
        delta = ch.get("delta")
        if not isinstance(delta, int) or isinstance(delta, bool) or abs(delta) > _INT32:
            problems.append(
                {"path": ["changes", i, "delta"], "explanation": f"Could not coerce value {delta!r} to Int"}
            )
        for key in ("inventoryItemId", "locationId"):
            if not isinstance(ch.get(key), str):
                problems.append({"path": ["changes", i, key], "explanation": "Expected value to not be null"})
        cfq = ch.get("changeFromQuantity")
        if cfq is not None and (not isinstance(cfq, int) or isinstance(cfq, bool)):
            problems.append({"path": ["changes", i, "changeFromQuantity"], "explanation": "Could not coerce to Int"})
    return problems


def create_app(
    recorder: Recorder, token: str, bucket_size: float = 1000.0, restore: float = 100.0, faults: Faults | None = None
) -> Starlette:
    """The shop app."""
    faults = faults or Faults()
    store = Store()
    bucket = TokenBucket(bucket_size, restore)

    def failure(status: int, retry_after: int | None) -> Response:
        headers = {"Retry-After": str(retry_after)} if retry_after is not None else {}
        return JSONResponse(
            {"errors": "Service unavailable" if status >= 500 else "Injected failure"},
            status_code=status,
            headers=headers,
        )

    def cost(requested: int, actual: int | None) -> dict[str, Any]:
        return {
            "cost": {
                "requestedQueryCost": requested,
                "actualQueryCost": actual,
                "throttleStatus": {
                    "maximumAvailable": bucket.capacity,
                    "currentlyAvailable": round(bucket.available(), 1),
                    "restoreRate": bucket.rate,
                },
            }
        }

    async def graphql(request: Request) -> Response:
        version = request.path_params["version"]
        raw = await request.body()
        entry: dict[str, Any] = {"path": request.url.path, "body": raw.decode("utf-8", errors="replace")}

        async def handle() -> Response:
            if request.headers.get("x-shopify-access-token") != token:
                return JSONResponse(
                    {"errors": "[API] Invalid API key or access token (unrecognized login or wrong password)"}, 401
                )
            if not re.fullmatch(r"20\d\d-(01|04|07|10)", version) or version < "2025-01":
                return JSONResponse({"errors": "Not Found"}, 404)
            try:
                doc = json.loads(raw)
                query, variables = doc["query"], doc.get("variables") or {}
                assert isinstance(query, str) and isinstance(variables, dict)
            except (ValueError, KeyError, AssertionError):
                return JSONResponse({"errors": {"query": "Required parameter missing or invalid"}}, 400)
            is_mutation = "inventoryAdjustQuantities" in query
            requested = MUTATION_COST if is_mutation else QUERY_COST
            if not bucket.take(requested):
                return JSONResponse(
                    {
                        "errors": [
                            {
                                "message": "Throttled",
                                "extensions": {
                                    "code": "THROTTLED",
                                    "documentation": "https://shopify.dev/api/usage/rate-limits",
                                },
                            }
                        ],
                        "extensions": cost(requested, None),
                    }
                )
            if is_mutation:
                return JSONResponse(_mutation(store, query, variables, version) | {"extensions": cost(requested, 10)})
            if "inventoryItems" in query:
                q = str(variables.get("q", ""))
                m = re.fullmatch(r'sku:"?(.*?)"?', q)
                sku = m.group(1) if m else None
                edges = [{"node": {"id": gid, "sku": s}} for gid, s in store.items.items() if s == sku][:1]
                return JSONResponse({"data": {"inventoryItems": {"edges": edges}}, "extensions": cost(requested, 3)})
            return JSONResponse(
                {
                    "errors": [
                        {"message": "Field doesn't exist on type 'QueryRoot'", "extensions": {"code": "undefinedField"}}
                    ]
                }
            )

        response = await with_faults(faults, failure, handle)
        entry["status"] = response.status_code
        entry["response"] = bytes(response.body).decode("utf-8", errors="replace")
        recorder.record(entry)
        return response

    async def state(_: Request) -> Response:
        levels = [
            {"locationId": loc, "inventoryItemId": it, "sku": store.items[it], "available": q}
            for (loc, it), q in sorted(store.levels.items())
        ]
        return JSONResponse({"levels": levels, "groups": store.groups})

    routes = control_routes(recorder, faults) + [
        Route("/_standin/state", state),
        Route("/admin/api/{version}/graphql.json", graphql, methods=["POST"]),
    ]
    return Starlette(routes=routes)


def _mutation(store: Store, query: str, variables: dict[str, Any], version: str) -> dict[str, Any]:
    m = _IDEMPOTENT.search(query)
    key = None
    if m:
        key = m.group(1) if m.group(1) is not None else variables.get(m.group(2))
    if version >= "2026-04" and not key:
        return {
            "errors": [
                {
                    "message": "The @idempotent directive with a key is required for inventoryAdjustQuantities.",
                    "extensions": {"code": "BAD_REQUEST"},
                }
            ]
        }
    problems = _coerce(variables)
    if problems:
        return {
            "errors": [
                {
                    "message": "Variable $input of type InventoryAdjustQuantitiesInput! was provided invalid value",
                    "extensions": {"value": variables.get("input"), "problems": problems},
                }
            ]
        }
    input_ = variables["input"]
    fingerprint = hashlib.sha256(json.dumps(input_, sort_keys=True).encode()).hexdigest()
    if key is not None and key in store.keys:
        seen_fp, result = store.keys[key]
        if seen_fp != fingerprint:
            err = _user_error(
                "IDEMPOTENCY_KEY_PARAMETER_MISMATCH",
                "The same idempotency key cannot be used with different operation parameters.",
                [],
            )
            return {"data": {"inventoryAdjustQuantities": {"inventoryAdjustmentGroup": None, "userErrors": [err]}}}
        if result["userErrors"]:
            err = _user_error(
                "IDEMPOTENCY_PREVIOUS_ATTEMPT_FAILED",
                "A previous request with this idempotency key failed. Retry with a new key.",
                [],
            )
            return {"data": {"inventoryAdjustQuantities": {"inventoryAdjustmentGroup": None, "userErrors": [err]}}}
        return {"data": {"inventoryAdjustQuantities": result}}
    result = store.adjust(input_, version)
    if key is not None:
        store.keys[key] = (fingerprint, result)
    return {"data": {"inventoryAdjustQuantities": result}}


def main(argv: list[str] | None = None) -> None:
    p = parser("Shopify Admin GraphQL (inventory) stand-in")
    p.add_argument("--token", default="shpat_standin")
    p.add_argument("--bucket", type=float, default=1000.0, help="cost points the bucket holds")
    p.add_argument("--restore", type=float, default=100.0, help="points restored per second")
    args = p.parse_args(argv)
    serve(create_app(Recorder(args.record), args.token, args.bucket, args.restore), args.host, args.port)


if __name__ == "__main__":
    main()
