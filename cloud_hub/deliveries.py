"""Delivery operations: list, replay, skip — as admin endpoints and as ``cloud-hub deliveries``.

Replay selectors (the same for the CLI and ``POST /v1/admin/deliveries/replay``):

- one event: ``event_id`` (every sink, or only ``sink``);
- a range: ``sink`` + ``store_id`` (+ ``from_seq``/``to_seq``), whatever the state (done ones are
  sent again; receivers drop them by event id);
- dead letters: ``sink`` + ``dead``.

Replay makes the rows pending and due now with attempts reset; rows in flight are left alone. Skip
marks one dead or pending delivery ``skipped``, which unparks a strict lane without delivering it.
"""

from __future__ import annotations

import argparse
import json
import time
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import FastAPI, Query, Request
from starlette.concurrency import run_in_threadpool

from storesync_runtime.cli import print_table
from sync_protocol.schema_doc import inline_schema, json_body

from . import api_models as m
from ._exceptions import InputError, NotFound
from .forwarding import ForwardingConfig
from .metrics import _age
from .storage import DELIVERY_STATES, Delivery, DeliverySelector, Storage, iso_utc

MAX_PAGE = 10_000


def delivery_dict(d: Delivery) -> dict[str, Any]:
    """One delivery as JSON (without the event text)."""
    return {
        "id": d.id,
        "event_id": d.event_id,
        "sink": d.sink,
        "store_id": d.store_id,
        "epoch": d.epoch,
        "seq": d.seq,
        "state": d.state,
        "attempts": d.attempts,
        "next_attempt_at": iso_utc(datetime.fromtimestamp(d.next_attempt_at, UTC)),
        "last_error": d.last_error,
        "created_at": d.created_at,
        "updated_at": d.updated_at,
    }


def sinks_view(storage: Storage, config: ForwardingConfig | None) -> dict[str, Any]:
    """Per sink: counts by state and the age of the oldest pending delivery."""
    with storage.snapshot() as tx:
        counts = {c.sink: c for c in tx.sink_counts()}
    names = [s.name for s in config.sinks] if config else []
    names += sorted(n for n in counts if n not in names)
    now = time.time()
    out = []
    for name in names:
        cfg = config.sink(name) if config else None
        c = counts.get(name)
        by_state = c.counts if c else {}
        row: dict[str, Any] = {"name": name, "configured": cfg is not None}
        if cfg is not None:
            row.update(kind=cfg.kind, role=cfg.role, ordering=cfg.ordering, types=list(cfg.types))
        row.update({s: by_state.get(s, 0) for s in DELIVERY_STATES})
        row["oldest_pending_age_s"] = round(_age(c.oldest_pending_at if c else None, now), 3)
        out.append(row)
    return {"sinks": out}


def selector(
    *,
    event_id: str | None = None,
    sink: str | None = None,
    store_id: str | None = None,
    from_seq: int | None = None,
    to_seq: int | None = None,
    state: str | None = None,
) -> DeliverySelector:
    """A checked selector for listing.

    Raises:
        InputError: unknown state or a bad range.
    """
    if state is not None and state not in DELIVERY_STATES:
        raise InputError(f"state must be one of {', '.join(DELIVERY_STATES)}", field="state")
    if from_seq is not None and to_seq is not None and from_seq > to_seq:
        raise InputError("from_seq is after to_seq", field="from_seq")
    return DeliverySelector(sink, event_id, store_id, from_seq, to_seq, state)


def replay_selector(
    *,
    event_id: str | None = None,
    sink: str | None = None,
    store_id: str | None = None,
    from_seq: int | None = None,
    to_seq: int | None = None,
    dead: bool = False,
) -> DeliverySelector:
    """The selector of a replay: one event, a range of a sink and store, or a sink's dead letters.

    Raises:
        InputError: when the request matches none of the three forms.
    """
    if event_id:
        if store_id or from_seq is not None or to_seq is not None or dead:
            raise InputError("an event replay takes only event_id and optionally sink", field="event_id")
        return selector(event_id=event_id, sink=sink)
    if not sink:
        raise InputError("name an event (event_id) or a sink", field="sink")
    if dead:
        if from_seq is not None or to_seq is not None:
            raise InputError("dead takes no seq range", field="dead")
        return selector(sink=sink, store_id=store_id, state="dead")
    if not store_id:
        raise InputError(
            "a range replay needs store_id (and optionally from_seq/to_seq); or use dead", field="store_id"
        )
    return selector(sink=sink, store_id=store_id, from_seq=from_seq, to_seq=to_seq)


def list_deliveries(storage: Storage, sel: DeliverySelector, *, after: int = 0, limit: int = 100) -> list[Delivery]:
    """Matching deliveries, oldest first.

    Raises:
        InputError: ``limit`` out of range.
    """
    if not 1 <= limit <= MAX_PAGE:
        raise InputError(f"limit must be between 1 and {MAX_PAGE}", field="limit")
    with storage.snapshot() as tx:
        return tx.list_deliveries(sel, after_id=after, limit=limit)


def replay(storage: Storage, sel: DeliverySelector) -> int:
    """Make the matching deliveries pending and due now; how many changed."""
    with storage.transaction() as tx:
        return tx.replay_deliveries(sel, time.time(), iso_utc(datetime.now(UTC)))


def skip(storage: Storage, sink: str, event_id: str) -> None:
    """Skip one dead or pending delivery.

    Raises:
        NotFound: no dead or pending delivery of that event to that sink.
    """
    with storage.transaction() as tx:
        if not tx.skip_delivery(sink, event_id, iso_utc(datetime.now(UTC))):
            raise NotFound(f"no dead or pending delivery of {event_id} to sink {sink}")


# ------------------------------------------------------------------------------------------- HTTP


async def _json_body(request: Request) -> dict[str, Any]:
    try:
        doc = await request.json()
    except ValueError:
        raise InputError("body must be a JSON object", field="body") from None
    if not isinstance(doc, dict):
        raise InputError("body must be a JSON object", field="body")
    return doc


MAX_SEQ = 2**63 - 1
MAX_TEXT = 200


def _opt_int(doc: dict[str, Any], key: str) -> int | None:
    value = doc.get(key)
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= MAX_SEQ:
        raise InputError(f"{key} must be an integer from 0 to {MAX_SEQ}", field=key)
    return value


def _opt_str(doc: dict[str, Any], key: str) -> str | None:
    value = doc.get(key)
    if value is None:
        return None
    if not isinstance(value, str) or not 0 < len(value) <= MAX_TEXT:
        raise InputError(f"{key} must be a string of 1 to {MAX_TEXT} characters", field=key)
    return value


def _opt_bool(doc: dict[str, Any], key: str) -> bool:
    value = doc.get(key, False)
    if not isinstance(value, bool):
        raise InputError(f"{key} must be true or false", field=key)
    return value


def _q(description: str) -> Any:
    return Query(max_length=MAX_TEXT, description=description)


_DELIVERIES_PAGE = m.paged(MAX_PAGE, after="deliveries with an id after this")


def register_routes(app: FastAPI, storage: Storage, admin_auth: Any, config: ForwardingConfig | None) -> None:
    """``/v1/admin/sinks`` and ``/v1/admin/deliveries[/replay|/skip]`` (``admin_auth``: the admin token)."""
    errs = m.errors(400, 401, 429, 503)

    @m.admin_get(
        app,
        admin_auth,
        "/v1/admin/sinks",
        m.Sinks,
        summary="Every sink with its deliveries by state",
        description="Configured sinks (kind, role, ordering, event types) with counts per delivery state and "
        "the age of the oldest pending delivery; sinks no longer configured that still have rows are listed too.",
    )
    def admin_sinks() -> dict[str, Any]:
        return sinks_view(storage, config)

    @m.admin_get(
        app,
        admin_auth,
        "/v1/admin/deliveries",
        m.Deliveries,
        summary="Deliveries, oldest first",
        description="Filter by sink, state, store or event; page on with the last `id` as `after`.",
    )
    def admin_deliveries(
        page: Annotated[m.Page, _DELIVERIES_PAGE],
        sink: Annotated[str | None, _q("only this sink (its name in hub.toml)")] = None,
        state: Annotated[str | None, _q(f"only this state: {', '.join(DELIVERY_STATES)}")] = None,
        store: Annotated[str | None, _q("only this store")] = None,
        event_id: Annotated[str | None, _q("only this event")] = None,
    ) -> dict[str, Any]:
        sel = selector(sink=sink, state=state, store_id=store, event_id=event_id)
        rows = list_deliveries(storage, sel, after=page.after, limit=page.limit)
        return {"deliveries": [delivery_dict(d) for d in rows]}

    @app.post(
        "/v1/admin/deliveries/replay",
        summary="Deliver again",
        description="One event (`event_id`, optionally only to `sink`), a seq range of a store to a sink "
        "(`sink`, `store_id`, `from_seq`, `to_seq`; done ones are sent again, receivers drop them by event id), "
        "or a sink's dead letters (`sink`, `dead: true`). The rows become pending and due now.",
        dependencies=[admin_auth],
        response_model=None,
        responses={200: {"model": m.Replayed}, **errs},
        openapi_extra={"requestBody": json_body(inline_schema(m.ReplayRequest))},
    )
    async def admin_replay(request: Request) -> dict[str, Any]:
        doc = await _json_body(request)
        sel = replay_selector(
            event_id=_opt_str(doc, "event_id"),
            sink=_opt_str(doc, "sink"),
            store_id=_opt_str(doc, "store_id"),
            from_seq=_opt_int(doc, "from_seq"),
            to_seq=_opt_int(doc, "to_seq"),
            dead=_opt_bool(doc, "dead"),
        )
        return {"replayed": await run_in_threadpool(replay, storage, sel)}

    @app.post(
        "/v1/admin/deliveries/skip",
        summary="Give up on one delivery",
        description="Marks one dead or pending delivery `skipped` (it is not delivered), which unparks a strict "
        "lane held up behind it. 404 when there is no such dead or pending delivery.",
        dependencies=[admin_auth],
        response_model=None,
        responses={200: {"model": m.Skipped}, **m.errors(400, 401, 404, 429, 503)},
        openapi_extra={"requestBody": json_body(inline_schema(m.SkipRequest))},
    )
    async def admin_skip(request: Request) -> dict[str, Any]:
        doc = await _json_body(request)
        event_id, sink = _opt_str(doc, "event_id"), _opt_str(doc, "sink")
        if event_id is None or sink is None:
            raise InputError("skip needs event_id and sink", field="event_id" if event_id is None else "sink")
        await run_in_threadpool(skip, storage, sink, event_id)
        return {"skipped": 1}


# -------------------------------------------------------------------------------------------- CLI


def add_cli(sub: Any, data_dir_arg: Any) -> None:
    """``cloud-hub deliveries list|replay|skip``."""
    p = sub.add_parser("deliveries", help="list, replay or skip deliveries to sinks")
    dsub = p.add_subparsers(dest="deliveries_command", required=True, parser_class=type(p))
    ls = dsub.add_parser("list", help="list deliveries, oldest first")
    ls.add_argument("--sink", help="only this sink (its name in hub.toml)")
    ls.add_argument("--store", help="only this store")
    ls.add_argument("--state", choices=DELIVERY_STATES, help="only deliveries in this state")
    ls.add_argument("--event", help="only this event id")
    ls.add_argument("--limit", type=int, default=100, help="rows at most (default 100)")
    ls.add_argument("--json", action="store_true", help="print one JSON object")
    data_dir_arg(ls)
    rp = dsub.add_parser("replay", help="deliver again: one event, a seq range of a store, or dead letters")
    rp.add_argument("--event", help="replay this event id")
    rp.add_argument("--sink", help="to this sink only")
    rp.add_argument("--store", help="replay this store's events (with --from-seq/--to-seq)")
    rp.add_argument("--from-seq", type=int, help="first ledger seq of --store to replay")
    rp.add_argument("--to-seq", type=int, help="last ledger seq of --store to replay")
    rp.add_argument("--dead", action="store_true", help="every dead letter of --sink")
    rp.add_argument("--json", action="store_true", help="print one JSON object")
    data_dir_arg(rp)
    sk = dsub.add_parser("skip", help="give up on one dead or pending delivery (unparks a strict lane)")
    sk.add_argument("--event", required=True, help="the event id to give up on")
    sk.add_argument("--sink", required=True, help="the sink it was going to")
    sk.add_argument("--json", action="store_true", help="print one JSON object")
    data_dir_arg(sk)


def run_cli(args: argparse.Namespace, storage: Storage) -> int:
    """Run a ``cloud-hub deliveries`` subcommand on an opened database."""
    if args.deliveries_command == "list":
        sel = selector(sink=args.sink, store_id=args.store, state=args.state, event_id=args.event)
        rows = list_deliveries(storage, sel, limit=args.limit)
        if args.json:
            print(json.dumps({"deliveries": [delivery_dict(d) for d in rows]}))
            return 0
        if not rows:
            print("No deliveries match.")
            return 0
        head = ("EVENT", "SINK", "STORE", "SEQ", "STATE", "ATTEMPTS", "LAST_ERROR")
        table = [
            (d.event_id, d.sink, d.store_id, str(d.seq), d.state, str(d.attempts), d.last_error or "") for d in rows
        ]
        print_table(head, table)
        return 0
    if args.deliveries_command == "replay":
        sel = replay_selector(
            event_id=args.event,
            sink=args.sink,
            store_id=args.store,
            from_seq=args.from_seq,
            to_seq=args.to_seq,
            dead=args.dead,
        )
        n = replay(storage, sel)
        print(json.dumps({"replayed": n}) if args.json else f"{n} deliveries pending again.")
        return 0
    skip(storage, args.sink, args.event)
    if args.json:
        print(json.dumps({"skipped": 1, "event": args.event, "sink": args.sink}))
    else:
        print(f"Skipped {args.event} for sink {args.sink}.")
    return 0
