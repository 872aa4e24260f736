"""The hub's HTTP API: a thin FastAPI layer over ingest, registry and admin (protocol.md §4, §5, §8).

Every non-2xx answer is a JSON ``ErrorBody`` (``{"error": code, "message": text, ...}``). Database work
runs in the threadpool; each worker thread has its own SQLite connection.
"""

from __future__ import annotations

import json
import logging
import math
import re
import time
import zlib
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import FastAPI, Path, Query, Request, Security
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from pydantic import ValidationError
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from sync_protocol.canonical import DuplicateKey, unique_pairs
from sync_protocol.cards import mask_pans
from sync_protocol.schema_doc import inline_schema, json_body
from sync_protocol.wire import BURSTS_PATH, ENROLL_PATH, BurstRequest, BurstResponse, EnrollRequest, EnrollResponse

from . import __version__, admin, apidocs, books, deliveries, registry
from . import api_models as m
from ._exceptions import BurstRejected, HubError, InputError, StorageError, TooLarge
from .auth import KeyCache, verify_signed_request
from .config import Hub, HubConfig, Limits, open_hub
from .delivery import DeliveryEngine
from .forwarding import Forwarder, ForwardingConfig, load_config
from .ingest import AfterStore, ingest_burst
from .metrics import CONTENT_TYPE, HubMetrics
from .ratelimit import LimitMiddleware, RateLimiter, RateLimits, parse_networks

log = logging.getLogger("cloud_hub.bursts")
MAX_ENROLL_BYTES = 64 * 1024
STORE_ID_PATH = Path(description="the store id given to `cloud-hub store add`", max_length=200)
LEDGER_PAGE = m.paged(admin.MAX_LEDGER_PAGE, after="records after this seq", limit="records at most")


def _field(loc: Sequence[int | str]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "body"


_LONE_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError("a number is beyond a float's range")  # not echoed: it may hold a card number
    return value


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON value")


def decode_json(raw: bytes) -> Any:
    """The one parse of a request body: UTF-8 JSON, each key once per object.

    Refused as JSON readers disagree on them: a key given twice, ``NaN``/``Infinity``, a number out of
    a float's range, a lone surrogate escape.

    Raises:
        DuplicateKey: naming the key (masked when it looks like a card number).
        ValueError: not UTF-8 or not JSON, with the reason.
        RecursionError: nested too deeply.
    """
    text = raw.decode("utf-8")
    doc = json.loads(text, object_pairs_hook=unique_pairs, parse_float=_finite, parse_constant=_no_constant)
    if _LONE_SURROGATE_ESCAPE.search(text):  # rare: a \\uD800-\\uDFFF escape; paired ones decode to one character
        try:
            json.dumps(doc, ensure_ascii=False).encode("utf-8")
        except UnicodeEncodeError:
            raise ValueError("a \\u escape names half of a surrogate pair (not text)") from None
    return doc


def parse_model(model: type[Any], raw: bytes) -> Any:
    """Validate JSON bytes against a wire model, parsing them once.

    An object naming a key twice is refused (a JSON parser would silently keep one of the two values,
    so what was signed and what is read could differ); the decoded value is then validated as is.

    Raises:
        InputError: 400 ``bad_request`` naming the first bad field, or the key given twice.
        TooLarge: 413 when a list is longer than the wire model allows.
    """
    try:
        doc = decode_json(raw)
    except DuplicateKey as exc:
        message = f"body: the key {mask_pans(exc.key)!r} appears twice in one object; send each key once"
        raise InputError(message, field=mask_pans(exc.key)) from None
    except RecursionError:
        raise InputError("body is not valid JSON: nested too deeply", field="body") from None
    except ValueError as exc:
        reason = f"not UTF-8 ({exc.reason} at byte {exc.start})" if isinstance(exc, UnicodeDecodeError) else exc
        raise InputError(f"body is not valid JSON: {reason}", field="body") from None
    if not isinstance(doc, dict):
        raise InputError("body: must be a JSON object", field="body")
    try:
        return model.model_validate(doc)
    except ValidationError as exc:
        err = exc.errors(include_url=False)[0]
        field = _field(err["loc"])
        if err["type"] == "too_long" and field == "records":
            raise TooLarge(f"too many records in one burst: {err['msg']}", field="records") from None
        raise InputError(f"{field}: {err['msg']}", field=field) from None


def decode_body(raw: bytes, encoding: str | None, limits: Limits) -> bytes:
    """The request body after ``Content-Encoding`` (identity or gzip), within the size limit.

    Raises:
        TooLarge: decompressed size above the limit.
        InputError: unknown encoding or corrupt gzip data.
    """
    enc = (encoding or "identity").strip().lower()
    if enc == "identity":
        return raw
    if enc != "gzip":
        raise InputError(f"Content-Encoding {enc!r} is not supported (use gzip)", field="content-encoding")
    inflater = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
    try:
        out = inflater.decompress(raw, limits.max_decompressed_bytes + 1)
    except zlib.error as exc:
        raise InputError(f"gzip body is corrupt: {exc}", field="body") from None
    if len(out) > limits.max_decompressed_bytes:
        raise TooLarge(f"body is larger than {limits.max_decompressed_bytes} bytes when decompressed")
    if not inflater.eof or inflater.unused_data:
        raise InputError("gzip body is truncated or has trailing data", field="body")
    return out


async def read_limited(request: Request, limit: int) -> bytes:
    """The raw request body, refusing more than ``limit`` bytes.

    Raises:
        TooLarge: the body (or its declared Content-Length) exceeds ``limit``.
    """
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise TooLarge(f"body is larger than {limit} bytes")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise TooLarge(f"body is larger than {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def _error_response(exc: HubError) -> JSONResponse:
    return JSONResponse(exc.body(), status_code=exc.status, headers=exc.headers())


class BurstHandler:
    """Everything ``POST /v1/bursts`` does after the body is read; runs in a worker thread."""

    def __init__(
        self, hub: Hub, keys: KeyCache, after_store: list[AfterStore], metrics: HubMetrics | None = None
    ) -> None:
        self.hub = hub
        self.keys = keys
        self.after_store = after_store
        self.metrics = metrics
        self.limiter: RateLimiter | None = None

    def __call__(self, method: str, path: str, headers: Mapping[str, str], raw: bytes, received: datetime) -> Response:
        started = time.perf_counter()
        try:
            verified = verify_signed_request(method, path, headers, raw, self.keys)
        except BurstRejected as exc:
            if self.metrics is not None:
                self.metrics.burst(exc.status, exc.code, 0, 0)
            log.info("burst refused status=%s error=%s reason=%.200r", exc.status, exc.code, exc.error.message)
            raise
        if self.limiter is None:
            return self._ingest(headers, raw, received, verified.keyid, started)
        self.limiter.burst(verified.keyid)  # 429 for a store sending faster than its share
        self.limiter.begin(verified.keyid)  # 429 for a store with more bursts in flight than allowed
        try:
            return self._ingest(headers, raw, received, verified.keyid, started)
        finally:
            self.limiter.end(verified.keyid)

    def _ingest(
        self, headers: Mapping[str, str], raw: bytes, received: datetime, key_id: str, started: float
    ) -> Response:
        limits = self.hub.config.limits
        body = decode_body(raw, headers.get("content-encoding"), limits)
        burst: BurstRequest = parse_model(BurstRequest, body)
        if len(burst.records) > limits.max_records:
            raise TooLarge(f"{len(burst.records)} records in one burst; the limit is {limits.max_records}")
        seqs = f"{burst.first_seq}-{burst.first_seq + len(burst.records) - 1}" if burst.records else "probe"
        try:
            answer = ingest_burst(
                self.hub.storage,
                burst,
                key_id=key_id,
                hub_key=self.hub.hub_key,
                verify_all=self.hub.config.verify == "all",
                now=received,
                after_store=self.after_store,
            )
        except BurstRejected as exc:
            if self.metrics is not None:
                self.metrics.burst(
                    exc.status,
                    exc.code,
                    exc.error.stored or 0,
                    exc.error.duplicates or 0,
                    time.perf_counter() - started,
                )
            # conflicts, refused records and unknown keys need a person: logged at WARNING
            log.log(
                logging.WARNING if exc.status in (401, 403, 409, 422) else logging.INFO,
                "burst store=%s epoch=%s seqs=%s status=%s error=%s stored=%s duplicates=%s ms=%.1f",
                burst.store_id,
                burst.epoch,
                seqs,
                exc.status,
                exc.code,
                exc.error.stored,
                exc.error.duplicates,
                (time.perf_counter() - started) * 1000,
            )
            raise
        if self.metrics is not None:
            self.metrics.burst(200, None, answer.stored, answer.duplicates, time.perf_counter() - started)
        log.info(
            "burst store=%s epoch=%s seqs=%s status=200 stored=%d duplicates=%d acked_through=%d ms=%.1f",
            burst.store_id,
            burst.epoch,
            seqs,
            answer.stored,
            answer.duplicates,
            answer.acked_through,
            (time.perf_counter() - started) * 1000,
        )
        return Response(answer.model_dump_json(exclude_none=True), media_type="application/json")


def create_app(
    config: HubConfig,
    *,
    hub: Hub | None = None,
    forwarding: ForwardingConfig | None = None,
    workers: bool = True,
) -> FastAPI:
    """Build the hub application, opening (and on first use creating) the data folder.

    Args:
        config: Hub settings.
        hub: An already opened data folder (closed with the app).
        forwarding: Sinks and delivery settings (default: one jsonl sink, DATA/events.jsonl).
        workers: Run the delivery workers in the app's lifespan.
    """
    hub = hub or open_hub(config)
    forwarding = forwarding or load_config(None, config.data_dir)
    keys = KeyCache(hub.storage)
    metrics = HubMetrics(hub.storage, [s.name for s in forwarding.sinks])
    forwarder = Forwarder.from_config(forwarding)
    engine = DeliveryEngine(hub.storage, forwarding, forwarder, metrics) if workers else None
    if engine is not None:
        forwarder.notify = engine.wake
    after_store: list[AfterStore] = [forwarder]
    handle_burst = BurstHandler(hub, keys, after_store, metrics)
    limiter = RateLimiter(RateLimits.from_env())
    handle_burst.limiter = limiter

    app = FastAPI(
        title="StoreSync cloud hub",
        version=__version__,
        description=apidocs.DESCRIPTION,
        lifespan=_lifespan(hub, engine),
        docs_url=None,  # /docs is apidocs' own page: FastAPI's Swagger UI loads its assets from a CDN
        redoc_url=None,
    )
    app.add_middleware(LimitMiddleware, limiter=limiter, trusted_proxies=parse_networks(config.trusted_proxies))
    app.state.hub = hub
    app.state.after_store = after_store
    app.state.metrics = metrics
    app.state.engine = engine
    app.state.forwarding = forwarding

    _add_error_handlers(app)
    _add_health_routes(app, hub, engine, metrics)
    _add_ingest_routes(app, config, hub, keys, handle_burst)
    admin_auth = Security(m.AdminBearer(hub.admin_token))
    _add_admin_routes(app, hub, admin_auth)
    deliveries.register_routes(app, hub.storage, admin_auth, forwarding)
    books.register_routes(app, hub.storage, admin_auth, lambda error_id: forwarder.rederive(hub.storage, error_id))
    apidocs.install(app)
    return app


def _lifespan(hub: Hub, engine: DeliveryEngine | None) -> Callable[[FastAPI], AbstractAsyncContextManager[None]]:
    """Start the delivery workers with the app; stop them and close the data folder after it."""

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        if engine is not None:
            engine.start()
        try:
            yield
        finally:
            if engine is not None:
                await run_in_threadpool(engine.stop)
            hub.close()

    return lifespan


def _add_error_handlers(app: FastAPI) -> None:
    """Every non-2xx answer as a JSON ``ErrorBody``; an unexpected exception as a logged 500."""

    @app.exception_handler(HubError)
    async def _hub_error(_: Request, exc: HubError) -> JSONResponse:
        return _error_response(exc)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = "not_found" if exc.status_code == 404 else "bad_request"
        return JSONResponse({"error": code, "message": str(exc.detail)}, status_code=exc.status_code)

    @app.exception_handler(RequestValidationError)
    async def _validation_error(_: Request, exc: RequestValidationError) -> JSONResponse:
        err = exc.errors()[0]
        field = _field([p for p in err["loc"] if p not in ("query", "path", "header", "body")])
        return JSONResponse({"error": "bad_request", "message": f"{field}: {err['msg']}"}, status_code=400)

    @app.exception_handler(Exception)
    async def _internal_error(_: Request, exc: Exception) -> JSONResponse:
        logging.getLogger("cloud_hub").exception("internal error: %s", type(exc).__name__)
        return JSONResponse({"error": "internal", "message": "internal error; see the hub log"}, status_code=500)


def _add_health_routes(app: FastAPI, hub: Hub, engine: DeliveryEngine | None, metrics: HubMetrics) -> None:
    """``/healthz``, ``/readyz`` and ``/metrics``."""
    with_token = Security(m.AdminBearer(hub.admin_token, required=False))

    @app.get(
        "/healthz",
        summary="Liveness",
        description='`{"status": "ok"}` while the process serves; says nothing about the database.',
        response_model=None,
        responses={200: {"model": m.Health}},
    )
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get(
        "/readyz",
        summary="Readiness",
        description="200 when the database answers (engine, schema version) and the delivery workers run; "
        "else 503 naming what is not.",
        response_model=None,
        responses={200: {"model": m.Ready}, **m.errors(503)},
    )
    def readyz() -> JSONResponse:
        database: dict[str, Any] = {"engine": hub.storage.engine, "latest_schema": hub.storage.latest_schema}
        try:
            version = hub.storage.schema_version()
        except StorageError as exc:
            database["reachable"] = False
            return JSONResponse(
                {"error": "busy", "message": exc.message, "database": database},
                status_code=503,
                headers={"Retry-After": "1"},
            )
        database.update(reachable=True, schema_version=version)
        if engine is not None and not engine.alive():
            return JSONResponse(
                {"error": "busy", "message": "delivery workers are not running", "database": database},
                status_code=503,
            )
        return JSONResponse(
            {"status": "ready", "schema_version": version, "database": database, "workers": engine is not None}
        )

    @app.get(
        "/metrics",
        summary="Prometheus metrics (text format)",
        description="Fleet-wide series for anyone who can reach the port; with the admin token also the "
        "series labelled by store (docs/security.md). Ages as `*_age_seconds`, no `*_created` series, "
        "`storesync_build_info`.",
        response_class=Response,
        responses={200: {"description": "Prometheus text exposition format 0.0.4", "content": {"text/plain": {}}}},
        openapi_extra={"security": [{}]},  # the admin token is optional here
    )
    def metrics_endpoint(full: bool = with_token) -> Response:
        return Response(metrics.render(per_store=full), media_type=CONTENT_TYPE)


def _add_ingest_routes(app: FastAPI, config: HubConfig, hub: Hub, keys: KeyCache, handle_burst: BurstHandler) -> None:
    """``POST /v1/enroll`` and ``POST /v1/bursts`` (the stores' side of the protocol)."""

    @app.post(
        ENROLL_PATH,
        status_code=201,
        summary="Enroll a store's agent",
        description="Binds the agent's Ed25519 public key to the store named by a one-time enrollment token "
        "(`cloud-hub store add`) as a new epoch; answers the store, epoch, key id and the hub's receipt key. "
        "A retry with the same token and key after a lost answer gets the same enrollment.",
        response_model=None,
        responses={201: {"model": EnrollResponse}, **m.errors(400, 401, 413, 429, 503)},
        openapi_extra={"requestBody": json_body(inline_schema(EnrollRequest))},
    )
    async def enroll(request: Request) -> Response:
        raw = await read_limited(request, MAX_ENROLL_BYTES)
        req: EnrollRequest = parse_model(EnrollRequest, raw)
        answer = await run_in_threadpool(registry.enroll, hub.storage, req, hub_key=hub.hub_key)
        keys.invalidate(answer.key_id)
        logging.getLogger("cloud_hub.registry").info(
            "enrolled store=%s epoch=%d key_id=%s", answer.store_id, answer.epoch, answer.key_id
        )
        return Response(answer.model_dump_json(), status_code=201, media_type="application/json")

    @app.post(
        BURSTS_PATH,
        summary="Send a burst of signed records",
        description="A store's agent sends its records in seq order, signed as an HTTP message signature. "
        "The hub checks duplicates, gaps, conflicts, each chain link and signature in one transaction and "
        "answers with a signed receipt (`acked_through`). 409 `gap` names the seq it expects, 409 `conflict` "
        "a record that differs from the one held; 422 a refused record (the ones before it are stored). "
        "The body may be gzip (`Content-Encoding`). docs/protocol.md §4.",
        response_model=None,
        responses={200: {"model": BurstResponse}, **m.errors(400, 401, 409, 413, 422, 429, 503)},
        openapi_extra={"requestBody": json_body(inline_schema(BurstRequest)), "security": [{"storeSignature": []}]},
    )
    async def bursts(request: Request) -> Response:
        received = datetime.now(UTC)
        raw = await read_limited(request, config.limits.max_wire_bytes)
        return await run_in_threadpool(handle_burst, request.method, request.url.path, request.headers, raw, received)


def _add_admin_routes(app: FastAPI, hub: Hub, admin_auth: Any) -> None:
    """``/v1/admin/stores[/{store_id}[/ledger]]`` (admin bearer token: ``admin_auth``)."""

    @m.admin_get(
        app,
        admin_auth,
        "/v1/admin/stores",
        m.Stores,
        summary="Every store and how far it got",
        description="Each store's newest epoch: acked_through, last seen, duplicates, conflicts, the backlog its "
        "agent last reported, sync lag, open derive errors and time fallbacks.",
        error_codes=(401, 429, 503),
    )
    def admin_stores() -> dict[str, Any]:
        return admin.stores_view(hub.storage)

    @m.admin_get(
        app,
        admin_auth,
        "/v1/admin/stores/{store_id}",
        m.StoreDetail,
        summary="One store with every epoch",
        description="Per epoch (enrollment): key, host, progress, head chain, clock estimate, conflicts and "
        "refused records.",
        error_codes=(400, 401, 404, 429, 503),
    )
    def admin_store(store_id: Annotated[str, STORE_ID_PATH]) -> dict[str, Any]:
        return admin.store_view(hub.storage, store_id)

    @m.admin_get(
        app,
        admin_auth,
        "/v1/admin/stores/{store_id}/ledger",
        m.LedgerPage,
        summary="A page of a store's stored records",
        description="Records of one epoch with `seq > after`, in seq order: the exact signed body, chain value, "
        "signature and when the hub received it. Page on with the last seq as `after`.",
        error_codes=(400, 401, 404, 429, 503),
    )
    def admin_ledger(
        store_id: Annotated[str, STORE_ID_PATH],
        page: Annotated[m.Page, LEDGER_PAGE],
        epoch: Annotated[int | None, Query(ge=1, le=m.MAX_INT64, description="the epoch (default: the newest)")] = None,
    ) -> dict[str, Any]:
        return admin.ledger_view(hub.storage, store_id, epoch=epoch, after=page.after, limit=page.limit)
