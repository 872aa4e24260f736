"""Pydantic models of the hub's HTTP answers and admin request bodies, for ``/openapi.json`` and ``/docs``.

The handlers build plain dicts (``cloud_hub.admin``, ``books``, ``deliveries``); these models document them
(``responses=`` in the routes, never ``response_model``: nothing is filtered at run time). An answer that
shows a storage record (``cloud_hub.storage.records``) takes its fields from the record's dataclass
(:func:`_record_fields`), so the two cannot drift apart.
``tests/hub/test_openapi_docs.py`` validates real answers against them with unknown fields forbidden, so
a field added to a view without its model fails there. Security schemes are declared here too, and
:func:`admin_get` with :func:`paged`, which register an admin read route (a list, optionally paged) with
its documentation.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable
from typing import Any, TypeVar, get_type_hints

from fastapi import Depends, FastAPI, Query, Request
from fastapi.security import HTTPBearer
from pydantic import BaseModel, ConfigDict, Field, create_model

from sync_protocol.wire import ErrorBody

from .auth import check_admin
from .credentials import AdminToken
from .storage import Conflict, Delivery, DeriveError, LedgerRow, Refusal, Store, StoreSummary, TimeFallback

STORE_SIGNATURE_SCHEME = {
    "type": "apiKey",
    "in": "header",
    "name": "Signature",
    "description": (
        "Stores sign each burst with their enrolled Ed25519 key as an HTTP message signature (RFC 9421): "
        '`Signature-Input: sig1=("@method" "@path" "content-digest");created=...;keyid="KEY_ID";'
        'alg="ed25519"`, `Signature: sig1=:BASE64:` and `Content-Digest: sha-256=:BASE64:` (RFC 9530) of the '
        "exact body bytes. Declared as an API key in the Signature header because OpenAPI has no scheme for "
        "message signatures; all three headers are required. docs/protocol.md §4."
    ),
}


class AdminBearer(HTTPBearer):
    """``Authorization: Bearer <admin token>`` as a FastAPI security dependency (declared in the OpenAPI).

    Args:
        token: The hub's admin token.
        required: Refuse without a right token (401); else only report whether it was given and right.
    """

    def __init__(self, token: AdminToken, *, required: bool = True) -> None:
        super().__init__(
            scheme_name="adminToken",
            description="The hub's admin token (`admin.token` in the data folder, or the replicas' shared one).",
            auto_error=False,
        )
        self.token = token
        self.required = required

    async def __call__(self, request: Request) -> bool:  # type: ignore[override]
        header = request.headers.get("authorization")
        if self.required:
            check_admin(header, self.token)  # raises Unauthorized (401, ErrorBody)
            return True
        scheme, _, given = (header or "").partition(" ")
        return scheme.lower() == "bearer" and self.token.matches(given.strip())


def errors(*codes: int) -> dict[int | str, dict[str, Any]]:
    """``responses=`` entries for error answers (all ``ErrorBody``)."""
    what = {
        400: "Bad request: the field and the reason are named",
        401: "No or a wrong credential",
        404: "Not found",
        409: "Conflicts with what the hub holds",
        413: "Body too large",
        422: "Refused as invalid",
        429: "Rate limited (`Retry-After`)",
        503: "A dependency (the database) is down or busy (`Retry-After`)",
    }
    return {code: {"model": ErrorBody, "description": what.get(code, str(code))} for code in codes}


class _Answer(BaseModel):
    model_config = ConfigDict(extra="forbid")


def _record_fields(record: type[Any], *, omit: Iterable[str] = (), **fields: Any) -> dict[str, Any]:
    """``create_model`` fields of an answer that shows a storage record: the dataclass's fields in its order,
    all required.

    Args:
        record: The dataclass from ``cloud_hub.storage.records`` the answer shows.
        omit: Record fields the answer leaves out.
        fields: A field's type as the answer shows it (``bytes`` as a hex ``str``), or a ``(type, Field(...))``
            pair; a name the record lacks adds a field after the record's.
    """
    names = {f.name for f in dataclasses.fields(record)}
    if unknown := set(omit) - names:
        raise TypeError(f"{record.__name__} has no field {', '.join(sorted(unknown))}")
    hints = get_type_hints(record)
    spec = {f.name: fields.pop(f.name, hints[f.name]) for f in dataclasses.fields(record) if f.name not in omit}
    spec.update(fields)
    return {name: kind if isinstance(kind, tuple) else (kind, ...) for name, kind in spec.items()}


class Health(_Answer):
    status: str = Field(description="always `ok` while the process serves")


class DatabaseState(_Answer):
    engine: str = Field(description="`sqlite` or `postgresql`")
    latest_schema: int
    reachable: bool | None = None
    schema_version: int | None = None


class Ready(_Answer):
    status: str = Field(description="`ready`")
    schema_version: int
    database: DatabaseState
    workers: bool = Field(description="delivery workers run in this process")


StoreLine = create_model(
    "StoreLine",
    __base__=_Answer,
    **_record_fields(
        StoreSummary,
        epoch=(int | None, Field(description="newest epoch (enrollment) of the store")),
        backlog=(int | None, Field(default=None, description="records the agent held beyond its last burst")),
        oldest_pending_age_s=(float | None, None),
        sync_lag_s=(float | None, Field(default=None, description="how long its oldest record not at the hub waited")),
        derive_errors=(int, 0),
        time_fallbacks=(int, 0),
        blocked=(bool | None, Field(default=None, description="the agent reported its sync blocked")),
        blocked_reason=(str | None, Field(default=None, description="its reason code while blocked")),
        blocked_seq=(int | None, None),
    ),
)


class Stores(_Answer):
    stores: list[StoreLine]


StreamConflict = create_model(
    "StreamConflict",
    __base__=_Answer,
    **_record_fields(Conflict, omit=("id", "store_id", "epoch"), stored_hash=str, received_hash=str),
)
StreamRefusal = create_model(
    "StreamRefusal", __base__=_Answer, **_record_fields(Refusal, omit=("id", "store_id", "epoch"))
)


class Stream(_Answer):
    epoch: int
    key_id: str | None
    hostname: str | None
    enrolled_at: str | None
    superseded_at: str | None
    acked_through: int
    head_chain: str = Field(description="hex chain value of the newest stored record")
    last_seen_at: str | None
    duplicates: int
    clock: dict[str, Any] | None = Field(description="the agent's clock estimate from its last burst")
    conflicts: list[StreamConflict]
    refusals: list[StreamRefusal]


StoreDetail = create_model("StoreDetail", __base__=_Answer, **_record_fields(Store, streams=list[Stream]))
LedgerRecord = create_model(
    "LedgerRecord",
    __base__=_Answer,
    **_record_fields(
        LedgerRow,
        omit=("store_id", "epoch", "body_hash"),
        body=(str, Field(description="the record's exact signed body (canonical JSON text)")),
        chain=str,
        sig=str,
    ),
)


class LedgerPage(_Answer):
    store_id: str
    epoch: int
    records: list[LedgerRecord]


DeriveErrorItem = create_model("DeriveErrorItem", __base__=_Answer, **_record_fields(DeriveError, code=str))


class DeriveErrors(_Answer):
    derive_errors: list[DeriveErrorItem]


class Rederived(_Answer):
    rederived: int
    events: int


FallbackItem = create_model("FallbackItem", __base__=_Answer, **_record_fields(TimeFallback))


class Fallbacks(_Answer):
    fallbacks: list[FallbackItem]


class SinkRow(_Answer):
    name: str
    configured: bool
    kind: str | None = None
    role: str | None = None
    ordering: str | None = None
    types: list[str] | None = None
    pending: int
    in_flight: int
    done: int
    dead: int
    skipped: int
    oldest_pending_age_s: float


class Sinks(_Answer):
    sinks: list[SinkRow]


DeliveryItem = create_model(
    "DeliveryItem",
    __base__=_Answer,
    **_record_fields(Delivery, omit=("lane", "event_json", "claim", "type"), next_attempt_at=str),
)


class Deliveries(_Answer):
    deliveries: list[DeliveryItem]


class Replayed(_Answer):
    replayed: int = Field(description="deliveries made pending and due now")


class Skipped(_Answer):
    skipped: int


_TEXT = Field(default=None, min_length=1, max_length=200)
_SEQ = Field(default=None, ge=0, le=2**63 - 1)


class ReplayRequest(BaseModel):
    """One event (``event_id``, optionally ``sink``); a range (``sink``, ``store_id``, seqs); a sink's ``dead``."""

    event_id: str | None = _TEXT
    sink: str | None = _TEXT
    store_id: str | None = _TEXT
    from_seq: int | None = _SEQ
    to_seq: int | None = _SEQ
    dead: bool = False


class SkipRequest(BaseModel):
    """The dead or pending delivery to give up on."""

    event_id: str = Field(min_length=1, max_length=200)
    sink: str = Field(min_length=1, max_length=200)


# ------------------------------------------------------------------------------------------- admin read routes

MAX_INT64 = 2**63 - 1  # ids, seqs and limits are SQL BIGINTs: larger is a 400 naming the parameter, never a 500
_Route = TypeVar("_Route", bound=Callable[..., Any])


def admin_get(
    app: FastAPI,
    admin_auth: Any,
    path: str,
    model: type[BaseModel],
    *,
    summary: str,
    description: str,
    error_codes: Iterable[int] = (400, 401, 429, 503),
) -> Callable[[_Route], _Route]:
    """Register the decorated function as ``GET path``, an admin read route (mostly lists): the admin token
    (``admin_auth``) required, ``summary`` and ``description`` for the OpenAPI, ``model`` documenting the 200
    answer and ``error_codes`` the error answers. A paged list takes ``page: Annotated[Page, paged(...)]``."""
    return app.get(
        path,
        summary=summary,
        description=description,
        dependencies=[admin_auth],
        response_model=None,
        responses={200: {"model": model}, **errors(*error_codes)},
    )


@dataclasses.dataclass(frozen=True, slots=True)
class Page:
    """Which page of a list: rows after ``after`` (an id or seq), ``limit`` at most."""

    after: int
    limit: int


def paged(max_limit: int, *, after: str | None = None, limit: str = "rows at most", default: int = 100) -> Any:
    """The bounded ``limit`` (1 to ``max_limit``) and, when ``after`` describes it, ``after`` (0 to 2^63-1) query
    parameters of a paged admin list route, as one FastAPI dependency giving a :class:`Page`."""
    limit_q = Query(default, ge=1, le=max_limit, description=limit)
    if after is None:

        async def first_page(limit: int = limit_q) -> Page:
            return Page(0, limit)

        return Depends(first_page)
    after_q = Query(0, ge=0, le=MAX_INT64, description=after)

    async def page(after: int = after_q, limit: int = limit_q) -> Page:
        return Page(after, limit)

    return Depends(page)
