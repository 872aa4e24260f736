"""Failed mappings and lag in plain sight: derive errors, time fallbacks and per-store sync lag for
operators (admin API, ``/metrics``, the fleet view), and re-deriving a fixed record exactly once.

Endpoints (admin bearer token, docs/protocol.md §8):

- ``GET /v1/admin/derive-errors?store=&open=`` → ``{"derive_errors": [{id, store_id, epoch, seq, code,
  reason, at, resolved_at}]}`` (``open=1``: only those not re-derived yet).
- ``POST /v1/admin/derive-errors/{id}/rederive`` → ``{"rederived": id, "events": n}``; 404 unknown,
  409 ``already_resolved``, 422 ``derive_failed`` when it still cannot be derived.
- ``GET /v1/admin/time-fallbacks?store=&limit=`` → ``{"fallbacks": [{id, store_id, epoch, seq,
  register_id, txn_id, pos_time, used_time, method, reason, at}]}``, newest first.

Sync lag of a store: how long its oldest record not yet at the hub has waited. The agent reports its
backlog with each burst and probe (records not in that burst, and the age of the oldest of them);
the lag is that age plus the time since the report, 0 when nothing was waiting, unknown before the
first report.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import asdict
from datetime import datetime
from typing import Annotated, Any

from fastapi import FastAPI, Path, Query
from starlette.concurrency import run_in_threadpool

from . import api_models as m
from .storage import DeriveError, Storage, TimeFallback

MAX_LIST = 1_000


def _age(iso: str | None, now: float) -> float | None:
    if not iso:
        return None
    return max(0.0, now - datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp())


def sync_lag_s(backlog: Mapping[str, Any] | None, last_seen_at: str | None, now: float) -> float | None:
    """Seconds the store's oldest record not at the hub has waited (None before the first report)."""
    if backlog is None:
        return None
    if not int(backlog.get("pending") or 0):
        return 0.0
    since = _age(last_seen_at, now) or 0.0
    return float(backlog.get("oldest_pending_age_s") or 0.0) + since


def derive_error_dict(e: DeriveError) -> dict[str, Any]:
    return {**asdict(e), "code": e.code}


def fallback_dict(f: TimeFallback) -> dict[str, Any]:
    return asdict(f)


def derive_error_counts(storage: Storage) -> dict[tuple[str, str], int]:
    """Open derive errors by ``(store_id, code)``."""
    out: dict[tuple[str, str], int] = {}
    with storage.snapshot() as tx:
        for e in tx.derive_errors(open_only=True):
            out[(e.store_id, e.code)] = out.get((e.store_id, e.code), 0) + 1
    return out


def store_extras(storage: Storage, now: float) -> dict[str, dict[str, Any]]:
    """Per store: backlog, oldest pending age, sync lag, open derive errors and time fallbacks."""
    with storage.snapshot() as tx:
        summaries = tx.store_summaries()
        errors = tx.derive_errors(open_only=True)
        fallbacks = tx.time_fallback_counts()
    open_errors: dict[str, int] = {}
    for e in errors:
        open_errors[e.store_id] = open_errors.get(e.store_id, 0) + 1
    out = {}
    for s in summaries:
        backlog = s.backlog or None
        out[s.store_id] = {
            "backlog": int(backlog["pending"]) if backlog else None,
            "oldest_pending_age_s": backlog.get("oldest_pending_age_s") if backlog else None,
            "sync_lag_s": sync_lag_s(backlog, s.last_seen_at, now),
            "derive_errors": open_errors.get(s.store_id, 0),
            "time_fallbacks": fallbacks.get(s.store_id, 0),
        }
    return out


_STORE = Query(max_length=200, description="only this store")
_FALLBACKS_PAGE = m.paged(MAX_LIST, limit=f"rows at most (1 to {MAX_LIST})")


def register_routes(app: FastAPI, storage: Storage, admin_auth: Any, rederive: Callable[[int], int]) -> None:
    """The derive-error and time-fallback admin endpoints (``admin_auth``: the admin token dependency)."""

    @m.admin_get(
        app,
        admin_auth,
        "/v1/admin/derive-errors",
        m.DeriveErrors,
        summary="Stored records whose events could not be derived",
        description="Each with the store, epoch, seq, a short `code` and the reason in words; newest last.",
    )
    def admin_derive_errors(
        store: Annotated[str | None, _STORE] = None,
        open: Annotated[bool, Query(description="only those not re-derived yet")] = False,
    ) -> dict[str, Any]:
        with storage.snapshot() as tx:
            rows = tx.derive_errors(store, open_only=open)
        return {"derive_errors": [derive_error_dict(e) for e in rows]}

    @app.post(
        "/v1/admin/derive-errors/{error_id}/rederive",
        summary="Derive a fixed record's events again (exactly once)",
        description="After the cause is fixed (e.g. a sink mapping): derives the record's events and marks the "
        "error resolved. 409 `already_resolved`; 422 `derive_failed` when it still cannot be derived.",
        dependencies=[admin_auth],
        response_model=None,
        responses={200: {"model": m.Rederived}, **m.errors(400, 401, 404, 409, 422, 429, 503)},
    )
    async def admin_rederive(
        error_id: Annotated[int, Path(ge=1, le=m.MAX_INT64, description="the derive error's id")],
    ) -> dict[str, Any]:
        events = await run_in_threadpool(rederive, error_id)
        return {"rederived": error_id, "events": events}

    @m.admin_get(
        app,
        admin_auth,
        "/v1/admin/time-fallbacks",
        m.Fallbacks,
        summary="Records whose POS time was not trusted",
        description="Newest first: the POS time, the time used instead, how (`method`) and why.",
    )
    def admin_time_fallbacks(
        page: Annotated[m.Page, _FALLBACKS_PAGE], store: Annotated[str | None, _STORE] = None
    ) -> dict[str, Any]:
        with storage.snapshot() as tx:
            rows = tx.time_fallbacks(store, limit=page.limit)
        return {"fallbacks": [fallback_dict(f) for f in rows]}
