"""Contract of the event recorder: events, deliveries, claims, strict lanes, cursors, sink stats.

Every adapter in ``ADAPTERS`` (tests/hub/conftest.py) must pass these tests. They use the
:class:`~cloud_hub.storage.EventRecorder` interface only (plus a seeded stream): no SQL, no adapter internals.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

import pytest

from cloud_hub._exceptions import StorageError
from cloud_hub.storage import (
    Delivery,
    DeliverySelector,
    DeliveryUpdate,
    NewDelivery,
    NewEvent,
    Storage,
    Store,
    UnitOfWork,
    Writer,
)

T0 = "2026-11-22T09:00:00.000Z"
T1 = "2026-11-22T10:00:00.000Z"
T2 = "2026-11-22T11:00:00.000Z"
NOW = 1_795_000_000.0  # Unix seconds
LEASE = 30.0
SOURCE = "urn:storesync:hub"


def event(store_id: str, seq: int, *, epoch: int = 1, n: int = 0, at: str = T0) -> NewEvent:
    eid = f"{store_id}-{epoch}-{seq}-{n}"
    text = json.dumps({"id": eid, "store": store_id, "seq": seq}, separators=(",", ":"))
    return NewEvent(SOURCE, eid, store_id, epoch, seq, "com.storesync.sale.recorded", text, at)


def add(
    db: Storage, events: Sequence[NewEvent], sinks: Sequence[str] = ("a",), due: float | Sequence[float] = NOW
) -> None:
    """Store ``events`` in one unit of work, each with one delivery per sink in lane ``store_id``."""
    dues = [due] * len(events) if isinstance(due, float) else list(due)
    deliveries = [NewDelivery(i, s, e.store_id, dues[i]) for i, e in enumerate(events) for s in sinks]
    with db.transaction() as tx:
        tx.insert_events(events, deliveries)


def claim(
    db: Storage, claim_id: str, *, now: float = NOW, strict: bool = False, limit: int = 100, sink: str = "a"
) -> list[Delivery]:
    with db.transaction() as tx:
        return tx.claim_deliveries(sink, strict=strict, now=now, lease_until=now + LEASE, claim=claim_id, limit=limit)


def finish(db: Storage, claim_id: str, updates: Sequence[DeliveryUpdate], at: str = T1) -> int:
    with db.transaction() as tx:
        return tx.finish_deliveries(claim_id, updates, at)


def listed(db: Storage, selector: DeliverySelector | None = None) -> list[Delivery]:
    with db.snapshot() as tx:
        return tx.list_deliveries(selector or DeliverySelector(), limit=1_000)


def by_event(db: Storage, sink: str = "a") -> dict[str, Delivery]:
    return {d.event_id: d for d in listed(db, DeliverySelector(sink=sink))}


def keys(rows: Sequence[Delivery]) -> list[tuple[str, int]]:
    return [(d.lane, d.seq) for d in rows]


def done(rows: Sequence[Delivery]) -> list[DeliveryUpdate]:
    return [DeliveryUpdate(d.id, "done", True, NOW) for d in rows]


def seed_stream(tx: UnitOfWork, store_id: str, epoch: int, acked_through: int) -> None:
    if tx.get_store(store_id) is None:
        tx.insert_store(Store(store_id, "Europe/Berlin", T0))
    tx.insert_writer(Writer(store_id, epoch, f"{store_id}-k{epoch}", "ab" * 32, T0))
    tx.create_stream(store_id, epoch, b"\x00" * 32)
    if acked_through:
        tx.update_stream(store_id, epoch, acked_through=acked_through, head_chain=b"\x01" * 32, last_seen_at=T1)


# -- events and deliveries --------------------------------------------------------------------------------


def test_events_and_their_deliveries_round_trip(db: Storage):
    e1, e2 = event("S1", 1, at=T0), event("S1", 2, at=T1)
    with db.transaction() as tx:
        tx.insert_events([], [])  # nothing to do is not an error
        tx.insert_events([e1, e2], [NewDelivery(0, "a", "S1", NOW), NewDelivery(1, "a", "S1", NOW + 5)])
        tx.insert_events([event("S2", 1)], [NewDelivery(0, "b", "S2", NOW)])
    rows = listed(db, DeliverySelector(sink="a"))
    assert [(d.event_id, d.sink, d.store_id, d.epoch, d.seq, d.lane) for d in rows] == [
        (e1.id, "a", "S1", 1, 1, "S1"),
        (e2.id, "a", "S1", 1, 2, "S1"),
    ]
    first, second = rows
    assert (first.state, first.attempts, first.next_attempt_at, first.last_error) == ("pending", 0, NOW, None)
    assert second.next_attempt_at == NOW + 5
    assert (first.created_at, second.created_at) == (T0, T1)  # a delivery is as old as its event
    assert [d.sink for d in listed(db)] == ["a", "a", "b"]

    got = claim(db, "c1", now=NOW + 5)
    assert [(d.event_id, d.event_json, d.type, d.claim) for d in got] == [
        (e1.id, e1.event_json, e1.type, "c1"),
        (e2.id, e2.event_json, e2.type, "c1"),
    ]


def test_an_event_fans_out_to_one_delivery_per_sink(db: Storage):
    e = event("S1", 1)
    add(db, [e], sinks=("a", "b", "c"))
    rows = listed(db, DeliverySelector(event_id=e.id))
    assert sorted(d.sink for d in rows) == ["a", "b", "c"]
    assert [d.sink for d in listed(db, DeliverySelector(event_id=e.id, sink="b"))] == ["b"]


def test_a_repeated_event_is_refused_and_the_unit_of_work_rolls_back(db: Storage):
    e1 = event("S1", 1)
    add(db, [e1])
    with pytest.raises(StorageError), db.transaction() as tx:
        tx.insert_events([event("S1", 2), e1], [NewDelivery(0, "a", "S1", NOW), NewDelivery(1, "b", "S1", NOW)])
    assert [(d.event_id, d.sink) for d in listed(db)] == [(e1.id, "a")]
    # the same (source, id) inside one call is refused too
    with pytest.raises(StorageError), db.transaction() as tx:
        e3 = event("S1", 3)
        tx.insert_events([e3, e3], [NewDelivery(0, "a", "S1", NOW)])
    assert len(listed(db)) == 1


def test_the_same_sink_twice_for_one_event_is_refused(db: Storage):
    e = event("S1", 1)
    with pytest.raises(StorageError), db.transaction() as tx:
        tx.insert_events([e], [NewDelivery(0, "a", "S1", NOW), NewDelivery(0, "a", "S1", NOW)])
    assert listed(db) == []
    add(db, [e])  # the refused unit of work left nothing behind
    assert len(listed(db)) == 1


def test_list_deliveries_selects_and_pages_oldest_first(db: Storage):
    add(db, [event("S1", s) for s in range(1, 6)], sinks=("a", "b"))
    add(db, [event("S2", s) for s in range(1, 3)], sinks=("a",))
    a_s1 = listed(db, DeliverySelector(sink="a", store_id="S1"))
    assert [d.seq for d in a_s1] == [1, 2, 3, 4, 5]
    assert [d.seq for d in listed(db, DeliverySelector(sink="a", store_id="S1", from_seq=2, to_seq=4))] == [2, 3, 4]
    assert [d.seq for d in listed(db, DeliverySelector(sink="a", store_id="S1", from_seq=4))] == [4, 5]
    assert listed(db, DeliverySelector(sink="nope")) == []

    ids = [d.id for d in listed(db)]
    assert ids == sorted(ids) and len(set(ids)) == 12
    with db.snapshot() as tx:
        page1 = tx.list_deliveries(DeliverySelector(sink="a"), limit=3)
        page2 = tx.list_deliveries(DeliverySelector(sink="a"), after_id=page1[-1].id, limit=3)
        page3 = tx.list_deliveries(DeliverySelector(sink="a"), after_id=page2[-1].id, limit=3)
    assert [len(page1), len(page2), len(page3)] == [3, 3, 1]
    assert [d.id for d in page1 + page2 + page3] == [d.id for d in listed(db, DeliverySelector(sink="a"))]

    (dead,) = claim(db, "c1", limit=1)
    finish(db, "c1", [DeliveryUpdate(dead.id, "dead", True, NOW, "400")])
    assert [d.id for d in listed(db, DeliverySelector(sink="a", state="dead"))] == [dead.id]
    assert listed(db, DeliverySelector(sink="b", state="dead")) == []


# -- claims ------------------------------------------------------------------------------------------------


def test_a_claim_leases_rows_and_a_second_claim_gets_other_rows(db: Storage):
    add(db, [event("S1", s) for s in range(1, 4)], sinks=("a", "b"))
    first = claim(db, "c1", limit=2)
    assert len(first) == 2
    assert all(d.state == "in_flight" and d.claim == "c1" and d.next_attempt_at == NOW + LEASE for d in first)
    stored = by_event(db)
    assert all(stored[d.event_id].state == "in_flight" for d in first)
    second = claim(db, "c2")
    assert len(second) == 1 and {d.id for d in second}.isdisjoint(d.id for d in first)
    assert claim(db, "c3") == []
    assert [d.state for d in listed(db, DeliverySelector(sink="b"))] == ["pending"] * 3  # other sinks untouched
    assert claim(db, "c4", sink="nope") == []


def test_pending_rows_are_claimed_only_when_due(db: Storage):
    add(db, [event("S1", 1), event("S2", 1), event("S3", 1)], due=[NOW - 1, NOW, NOW + 10])
    assert [d.store_id for d in claim(db, "c1")] == ["S1", "S2"]  # due at exactly ``now`` counts
    assert claim(db, "c2", now=NOW + 9) == []
    assert [d.store_id for d in claim(db, "c3", now=NOW + 10)] == ["S3"]


def test_an_expired_lease_makes_rows_claimable_and_the_old_claim_loses_them(db: Storage):
    add(db, [event("S1", 1), event("S1", 2)])
    first = claim(db, "c1")
    assert claim(db, "c2", now=NOW + LEASE - 1) == []  # the lease still holds
    again = claim(db, "c2", now=NOW + LEASE + 1)
    assert [d.id for d in again] == [d.id for d in first]
    assert all(d.claim == "c2" and d.next_attempt_at == NOW + 2 * LEASE + 1 for d in again)
    assert finish(db, "c1", done(first)) == 0  # the late worker's results are dropped
    assert {d.state for d in listed(db)} == {"in_flight"}
    assert finish(db, "c2", done(again)) == 2
    assert {d.state for d in listed(db)} == {"done"}


def test_renewing_a_claim_restarts_its_lease_on_the_rows_it_still_holds(db: Storage):
    add(db, [event("S1", 1), event("S1", 2), event("S2", 1)])
    held = claim(db, "c1", limit=2)
    with db.transaction() as tx:
        assert tx.renew_claim("c1", NOW + 20 + LEASE) == {d.id for d in held}
        assert tx.renew_claim("nobody", NOW + 20 + LEASE) == set()
    assert [d.event_id for d in claim(db, "c2", now=NOW + LEASE + 1)] == ["S2-1-1-0"]  # renewed rows still held...
    assert [d.id for d in claim(db, "c3", now=NOW + LEASE + 21)] == [d.id for d in held]  # ...until the lease ends
    with db.transaction() as tx:
        assert tx.renew_claim("c1", NOW + 100 * LEASE) == set()  # taken over: the old claim holds nothing
        assert tx.renew_claim("c3", NOW + 100 * LEASE) == {d.id for d in held}


def test_finishing_moves_rows_to_done_pending_or_dead_and_counts_attempts(db: Storage):
    add(db, [event("S1", s) for s in range(1, 5)])
    d1, d2, d3, d4 = claim(db, "c1")
    updates = [
        DeliveryUpdate(d1.id, "done", True, NOW),
        DeliveryUpdate(d2.id, "pending", True, NOW + 60, "503 unavailable"),
        DeliveryUpdate(d3.id, "dead", True, NOW, "400 bad request"),
        DeliveryUpdate(d4.id, "pending", False, NOW + 5),  # never sent: no attempt
    ]
    assert finish(db, "c1", updates, at=T2) == 4
    assert finish(db, "c1", updates, at=T2) == 0  # finished rows are no longer held
    rows = listed(db)
    assert [(d.state, d.attempts, d.claim) for d in rows] == [
        ("done", 1, None),
        ("pending", 1, None),
        ("dead", 1, None),
        ("pending", 0, None),
    ]
    assert (rows[1].next_attempt_at, rows[1].last_error) == (NOW + 60, "503 unavailable")
    assert rows[2].last_error == "400 bad request"
    assert rows[3].next_attempt_at == NOW + 5
    assert {d.updated_at for d in rows} == {T2}

    # next_attempt_at is honoured; done and dead rows are never claimed again
    assert [d.id for d in claim(db, "c2", now=NOW + 59)] == [d4.id]
    retry = claim(db, "c3", now=NOW + 60)
    assert [d.id for d in retry] == [d2.id] and retry[0].attempts == 1
    finish(db, "c3", [DeliveryUpdate(d2.id, "pending", True, NOW + 200, "timeout")])
    assert by_event(db)[d2.event_id].attempts == 2
    assert claim(db, "c4", now=NOW + 10_000)[0].id == d2.id


# -- strict lanes ------------------------------------------------------------------------------------------


def interleaved(db: Storage) -> None:
    """Lane S1 gets seqs 1..3 and lane S2 seqs 1..2, stored interleaved."""
    for e in (event("S1", 1), event("S2", 1), event("S1", 2), event("S2", 2), event("S1", 3)):
        add(db, [e])


def test_a_strict_claim_returns_each_lane_in_seq_order(db: Storage):
    interleaved(db)
    got = claim(db, "c1", strict=True)
    assert keys(got) == [("S1", 1), ("S1", 2), ("S1", 3), ("S2", 1), ("S2", 2)]


def test_a_strict_claim_takes_a_prefix_of_each_lane_and_a_held_lane_waits(db: Storage):
    interleaved(db)
    first = claim(db, "c1", strict=True, limit=2)
    assert len(first) == 2
    lanes = {d.lane for d in first}
    for lane in lanes:
        assert [d.seq for d in first if d.lane == lane] == list(range(1, 1 + sum(d.lane == lane for d in first)))
    second = claim(db, "c2", strict=True)
    assert lanes.isdisjoint(d.lane for d in second)  # a lane whose head is leased waits for it
    for lane in {d.lane for d in second}:
        assert [d.seq for d in second if d.lane == lane][0] == 1
    # the lease runs out: the lane's head is claimable again, still first
    third = claim(db, "c3", strict=True, now=NOW + LEASE + 1)
    assert {d.lane for d in third} >= lanes
    for lane in lanes:
        assert [d.seq for d in third if d.lane == lane][0] == 1


def test_a_dead_letter_parks_its_lane_until_it_is_skipped(db: Storage):
    interleaved(db)
    rows = {(d.lane, d.seq): d for d in claim(db, "c1", strict=True)}
    finish(
        db,
        "c1",
        [
            DeliveryUpdate(rows["S1", 1].id, "dead", True, NOW, "400"),
            DeliveryUpdate(rows["S1", 2].id, "pending", False, NOW),
            DeliveryUpdate(rows["S1", 3].id, "pending", False, NOW),
            DeliveryUpdate(rows["S2", 1].id, "done", True, NOW),
            DeliveryUpdate(rows["S2", 2].id, "pending", True, NOW, "503"),
        ],
    )
    assert keys(claim(db, "c2", strict=True, now=NOW + 1)) == [("S2", 2)]  # S1 is parked, S2 flows
    finish(db, "c2", [DeliveryUpdate(rows["S2", 2].id, "done", True, NOW)])
    add(db, [event("S2", 3), event("S1", 4)])
    assert keys(claim(db, "c3", strict=True, now=NOW + 2)) == [("S2", 3)]
    assert claim(db, "c4", strict=True, now=NOW + 3) == []

    with db.transaction() as tx:
        assert tx.skip_delivery("a", rows["S1", 1].event_id, T2) is True
        assert tx.skip_delivery("a", rows["S1", 1].event_id, T2) is False  # already skipped
    assert by_event(db)[rows["S1", 1].event_id].state == "skipped"
    assert keys(claim(db, "c5", strict=True, now=NOW + 4)) == [("S1", 2), ("S1", 3), ("S1", 4)]


def test_replaying_a_dead_letter_unparks_its_lane_in_order(db: Storage):
    interleaved(db)
    rows = {(d.lane, d.seq): d for d in claim(db, "c1", strict=True)}
    finish(
        db,
        "c1",
        [DeliveryUpdate(rows["S1", 1].id, "dead", True, NOW, "400")]
        + [DeliveryUpdate(d.id, "pending", False, NOW) for k, d in rows.items() if k != ("S1", 1)],
    )
    assert [lane for lane, _ in keys(claim(db, "c2", strict=True, now=NOW + 1))] == ["S2", "S2"]
    with db.transaction() as tx:
        assert tx.replay_deliveries(DeliverySelector(sink="a", state="dead"), NOW + 2, T2) == 1
    head = by_event(db)[rows["S1", 1].event_id]
    assert (head.state, head.attempts, head.next_attempt_at, head.updated_at) == ("pending", 0, NOW + 2, T2)
    assert keys(claim(db, "c3", strict=True, now=NOW + 2)) == [("S1", 1), ("S1", 2), ("S1", 3)]


def test_a_strict_lane_waits_for_its_head_to_be_due(db: Storage):
    add(db, [event("S1", 1), event("S1", 2)])
    d1, d2 = claim(db, "c1", strict=True)
    finish(
        db,
        "c1",
        [DeliveryUpdate(d1.id, "pending", True, NOW + 60, "503"), DeliveryUpdate(d2.id, "pending", False, NOW)],
    )
    assert claim(db, "c2", strict=True, now=NOW + 30) == []  # seq 2 is due but must not overtake seq 1
    assert keys(claim(db, "c3", strict=True, now=NOW + 60)) == [("S1", 1), ("S1", 2)]


def test_a_strict_claim_does_not_take_rows_that_are_not_due(db: Storage):
    add(db, [event("S1", 1), event("S1", 2)], due=[NOW, NOW + 100])
    first = claim(db, "c1", strict=True)
    assert keys(first) == [("S1", 1)]
    assert finish(db, "c1", done(first)) == 1
    assert claim(db, "c2", strict=True, now=NOW + 99) == []  # seq 2 is the head now but not due
    assert keys(claim(db, "c3", strict=True, now=NOW + 100)) == [("S1", 2)]


# -- operator actions ------------------------------------------------------------------------------------


def test_replay_resets_matching_rows_but_not_in_flight_ones(db: Storage):
    add(db, [event("S1", s) for s in range(1, 5)], sinks=("a", "b"))
    d1, d2, d3 = claim(db, "c1", limit=3)
    finish(db, "c1", [DeliveryUpdate(d1.id, "done", True, NOW), DeliveryUpdate(d2.id, "dead", True, NOW, "x")])
    # d3 is still in flight, seq 4 is pending
    with db.transaction() as tx:
        n = tx.replay_deliveries(DeliverySelector(sink="a", store_id="S1", from_seq=1, to_seq=4), NOW + 7, T2)
    assert n == 3
    rows = by_event(db)
    assert [(rows[d.event_id].state, rows[d.event_id].attempts) for d in (d1, d2, d3)] == [
        ("pending", 0),
        ("pending", 0),
        ("in_flight", 0),
    ]
    assert rows[d1.event_id].next_attempt_at == NOW + 7
    assert finish(db, "c1", done([d3])) == 1  # the in-flight row was left to its worker
    assert {d.state for d in listed(db, DeliverySelector(sink="b"))} == {"pending"}
    with db.transaction() as tx:
        assert tx.replay_deliveries(DeliverySelector(sink="a", event_id="nope"), NOW, T2) == 0


def test_skip_takes_dead_or_pending_rows_only(db: Storage):
    add(db, [event("S1", s) for s in range(1, 5)])
    d1, d2 = claim(db, "c1", limit=2)
    finish(db, "c1", [DeliveryUpdate(d1.id, "done", True, NOW)])
    rows = listed(db)
    with db.transaction() as tx:
        assert tx.skip_delivery("a", rows[0].event_id, T2) is False  # done
        assert tx.skip_delivery("a", rows[1].event_id, T2) is False  # in flight
        assert tx.skip_delivery("a", rows[2].event_id, T2) is True  # pending
        assert tx.skip_delivery("b", rows[3].event_id, T2) is False  # no such sink
        assert tx.skip_delivery("a", "nope", T2) is False
    assert [d.state for d in listed(db)] == ["done", "in_flight", "skipped", "pending"]
    assert [d.seq for d in claim(db, "c2", now=NOW + 1)] == [4]  # skipped rows are never claimed
    assert [d.seq for d in claim(db, "c3", now=NOW + LEASE + 0.5)] == [2]


# -- cursors, register times, derive errors ------------------------------------------------------------


def test_forward_cursors_and_lag(db: Storage):
    with db.transaction() as tx:
        tx.insert_store(Store("S0", "UTC", T0))  # no stream: no lag
        seed_stream(tx, "S1", 1, 5)
        seed_stream(tx, "S1", 2, 3)
        seed_stream(tx, "S2", 1, 2)
        seed_stream(tx, "S3", 1, 0)
        assert tx.forward_cursor("S1", 1) == 0
        tx.set_forward_cursor("S2", 1, 2)
    with db.snapshot() as tx:
        lag = tx.forward_lag()
        assert tx.forward_cursor("S2", 1) == 2 and tx.forward_cursor("S2", 2) == 0
    assert sorted(lag) == [("S1", 1, 0, 5), ("S1", 2, 0, 3)]
    assert [e for s, e, _, _ in lag if s == "S1"] == [1, 2]  # oldest epoch of a store first
    with db.transaction() as tx:
        tx.set_forward_cursor("S1", 1, 4)
        tx.set_forward_cursor("S1", 1, 5)  # moves again in the same unit of work
        tx.set_forward_cursor("S1", 2, 1)
    with db.snapshot() as tx:
        assert tx.forward_lag() == [("S1", 2, 1, 3)]
        assert (tx.forward_cursor("S1", 1), tx.forward_cursor("S1", 2)) == (5, 1)


def test_the_cursor_moves_atomically_with_the_events(db: Storage):
    with db.transaction() as tx:
        seed_stream(tx, "S1", 1, 3)
        tx.set_forward_cursor("S1", 1, 1)
    with pytest.raises(RuntimeError), db.transaction() as tx:
        tx.insert_events([event("S1", 2), event("S1", 3)], [NewDelivery(0, "a", "S1", NOW)])
        tx.set_register_times("S1", {"R2": T1})
        tx.record_derive_error("S1", 1, 3, "bad record", T1)
        tx.set_forward_cursor("S1", 1, 3)
        raise RuntimeError("crash before commit")
    # a failing insert after the cursor moved rolls the cursor back too
    add(db, [event("S9", 1)])
    with pytest.raises(StorageError), db.transaction() as tx:
        tx.set_forward_cursor("S1", 1, 3)
        tx.insert_events([event("S9", 1)], [NewDelivery(0, "a", "S9", NOW)])
    with db.snapshot() as tx:
        assert tx.forward_cursor("S1", 1) == 1
        assert tx.forward_lag() == [("S1", 1, 1, 3)]
        assert tx.register_times("S1", ["R2"]) == {}
        assert tx.derive_errors() == []
        assert [d.store_id for d in tx.list_deliveries(DeliverySelector())] == ["S9"]

    with db.transaction() as tx:
        tx.insert_events([event("S1", 2), event("S1", 3)], [NewDelivery(0, "a", "S1", NOW)])
        tx.set_forward_cursor("S1", 1, 3)
    with db.snapshot() as tx:
        assert tx.forward_cursor("S1", 1) == 3
        assert tx.forward_lag() == []
        assert [d.seq for d in tx.list_deliveries(DeliverySelector(store_id="S1"))] == [2]


def test_register_times_are_upserted_per_store(db: Storage):
    with db.transaction() as tx:
        tx.set_register_times("S1", {"R1": T0, "R2": T1})
        tx.set_register_times("S2", {"R1": T2})
        tx.set_register_times("S1", {})
    with db.transaction() as tx:
        assert tx.register_times("S1", ["R1", "R2", "R3"]) == {"R1": T0, "R2": T1}
        assert tx.register_times("S1", []) == {}
        tx.set_register_times("S1", {"R1": T2, "R3": T0})
    with db.snapshot() as tx:
        assert tx.register_times("S1", ["R1", "R2", "R3", "R1"]) == {"R1": T2, "R2": T1, "R3": T0}
        assert tx.register_times("S2", ["R1", "R2"]) == {"R1": T2}
        assert tx.register_times("S3", ["R1"]) == {}


def test_derive_errors_are_kept_per_store(db: Storage):
    with db.transaction() as tx:
        tx.record_derive_error("S1", 1, 4, "KeyError: 'lines'", T0)
        tx.record_derive_error("S2", 2, 9, "ValueError: tz", T1)
        tx.record_derive_error("S1", 2, 1, "KeyError: 'total'", T2)
    with db.snapshot() as tx:
        every = tx.derive_errors()
        s1 = tx.derive_errors("S1")
        assert tx.derive_errors("S3") == []
    assert [(r.store_id, r.epoch, r.seq, r.reason, r.at) for r in every] == [
        ("S1", 1, 4, "KeyError: 'lines'", T0),
        ("S2", 2, 9, "ValueError: tz", T1),
        ("S1", 2, 1, "KeyError: 'total'", T2),
    ]
    assert [(r.epoch, r.seq) for r in s1] == [(1, 4), (2, 1)]
    assert len({r.id for r in every}) == 3


# -- sink statistics -------------------------------------------------------------------------------------


def test_sink_counts_and_open_deliveries_per_store(db: Storage):
    with db.snapshot() as tx:
        assert tx.sink_counts() == [] and tx.open_by_store() == {}
    add(db, [event("S1", 1, at=T0), event("S1", 2, at=T1), event("S1", 3, at=T2)], sinks=("a", "b"))
    add(db, [event("S2", 1, at=T1)], sinks=("a",))
    d1, d2 = claim(db, "c1", limit=2)  # S1 seqs 1 and 2 of sink a
    (b1,) = claim(db, "c2", sink="b", limit=1)
    assert (d1.seq, d2.seq, b1.seq) == (1, 2, 1)
    finish(db, "c1", [DeliveryUpdate(d1.id, "done", True, NOW)])
    finish(db, "c2", [DeliveryUpdate(b1.id, "dead", True, NOW, "400")])
    with db.transaction() as tx:
        assert tx.skip_delivery("b", event("S1", 2).id, T2)

    def nonzero(counts: dict[str, int]) -> dict[str, int]:
        return {k: v for k, v in counts.items() if v}

    with db.snapshot() as tx:
        every = tx.sink_counts()
        open_only = tx.sink_counts(include_done=False)
        per_store = tx.open_by_store()
    assert [(s.sink, nonzero(s.counts)) for s in every] == [
        ("a", {"done": 1, "in_flight": 1, "pending": 2}),
        ("b", {"dead": 1, "skipped": 1, "pending": 1}),
    ]
    assert [(s.sink, nonzero(s.counts)) for s in open_only] == [
        ("a", {"in_flight": 1, "pending": 2}),
        ("b", {"dead": 1, "pending": 1}),
    ]
    assert [s.oldest_pending_at for s in every] == [T1, T2]
    assert nonzero(per_store) == {"S1": 3, "S2": 1}

    with db.transaction() as tx:
        assert tx.skip_delivery("b", event("S1", 3).id, T2)
    with db.snapshot() as tx:
        (_, b) = tx.sink_counts()
    assert b.oldest_pending_at is None
