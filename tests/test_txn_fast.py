"""The fast check of canonical transactions agrees with the full validation (sync_protocol.txn_fast)."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from storesync_harness.pos import Pos
from sync_protocol import TransactionInvalid, parse_transaction
from sync_protocol.txn_fast import canonical_txn, fast_canonical


def _canonicals() -> list[dict[str, Any]]:
    out = []
    regs = [Pos(f"R{i}", seed=11) for i in range(3)]
    for i in range(300):
        out.append(parse_transaction(regs[i % 3].mixed()).canonical())
    v2 = dict(out[0], schema="storesync.pos.v2")
    v2["lines"] = [dict(line, type="item") for line in v2["lines"]]
    out.append(parse_transaction(v2).canonical())
    jpy = {"schema": "storesync.pos.v1", "txn_id": "J-1", "register_id": "J", "kind": "sale",
           "occurred_at": "2026-11-22T10:15:03+09:00", "currency": "JPY",
           "lines": [{"sku": "A", "qty": "0.5", "unit_price": "300", "discount": "0", "tax": "15", "name": "Tee ä"}],
           "tenders": [{"type": "cash", "amount": "165"}], "total": "165"}  # fmt: skip
    out.append(parse_transaction(jpy).canonical())
    return out


CANONICAL = _canonicals()


def _full(raw: Any) -> dict[str, Any] | None:
    try:
        return parse_transaction(raw).canonical()
    except TransactionInvalid:
        return None


def test_every_canonical_transaction_takes_the_fast_path() -> None:
    kinds = set()
    for txn in CANONICAL:
        assert fast_canonical(copy.deepcopy(txn)) == txn
        kinds.add(txn["kind"])
    assert kinds == {"sale", "return", "void"}


def test_non_canonical_but_valid_input_is_converted_by_the_full_path() -> None:
    raw = copy.deepcopy(CANONICAL[0])
    raw["total"] += "0"  # "46.160": valid (a whole number of cents), not canonical
    raw["lines"][0]["qty"] += ".000"
    assert fast_canonical(raw) is None
    assert canonical_txn(raw) == CANONICAL[0]


def test_a_card_number_is_refused_even_in_canonical_form() -> None:
    raw = copy.deepcopy(CANONICAL[0])
    raw["lines"][0]["name"] = "4111 1111 1111 1111"
    with pytest.raises(TransactionInvalid) as info:
        canonical_txn(raw)
    assert "4111 1111 1111 1111" not in str(info.value)


def test_a_lone_surrogate_is_left_to_the_full_path() -> None:
    raw = copy.deepcopy(CANONICAL[0])
    raw["lines"][0]["name"] = "a\ud800"
    assert fast_canonical(raw) is None


# Values that probe every rule: wrong types, signs, places, lengths, whitespace, Unicode digits.
ODD: list[Any] = [
    None, True, 0, 1, 1.5, "", " ", "0", "1", "-1", "-0", "-0.00", "0.00", "1.5", "1.50", "1.005", "1.0001",
    "01", "00.10", "10", "0.001", "0.0001", "2.000", "1e3", " 1", "1\n", "١", "１", "9" * 16, "9" * 15 + ".00",
    "EUR", "eur", "JPY", "KWD", "sale", "return", "void", "refund", "card", "cash", "Card", "restock", "damaged",
    "item", "gift_card", "storesync.pos.v1", "storesync.pos.v2", "2026-11-22T10:15:03", "2026-11-22", "x" * 65,
    "x" * 201, "R 2", "R\n", "webshop", "4242", "424", [], {}, [{}], {"a": 1},
]  # fmt: skip


def _paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [prefix] if prefix else []
    if isinstance(value, dict):
        for k, v in value.items():
            out.extend(_paths(v, (*prefix, k)))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            out.extend(_paths(v, (*prefix, i)))
    return out


KEYS = ["name", "disposition", "type", "card_last4", "original", "voided_txn_id", "schema_", "extra"]


@st.composite
def mutated(draw: st.DrawFn) -> Any:
    raw = copy.deepcopy(draw(st.sampled_from(CANONICAL)))
    for _ in range(draw(st.integers(1, 3))):
        paths = _paths(raw)
        if not paths:
            break
        path = draw(st.sampled_from(paths))
        parent = raw
        for part in path[:-1]:
            parent = parent[part]
        action = draw(st.sampled_from(["set", "delete", "add"]))
        if action == "set":
            parent[path[-1]] = copy.deepcopy(draw(st.sampled_from(ODD)))
        elif action == "delete":
            del parent[path[-1]]
        elif isinstance(parent, dict):
            parent[draw(st.sampled_from(KEYS))] = copy.deepcopy(draw(st.sampled_from(ODD)))
    return raw


@settings(max_examples=800, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutated())
def test_fast_path_never_accepts_what_validation_refuses(raw: Any) -> None:
    full = _full(copy.deepcopy(raw))
    fast = fast_canonical(copy.deepcopy(raw))
    if fast is not None:
        assert full is not None, "the fast path accepted a transaction the validation refuses"
        assert fast == full
    assert _or_none(raw) == full


def _or_none(raw: Any) -> dict[str, Any] | None:
    try:
        return canonical_txn(raw)
    except TransactionInvalid:
        return None


ZERO_SALE: dict[str, Any] = {
    "schema": "storesync.pos.v1", "txn_id": "Z-1", "register_id": "Z", "kind": "sale",
    "occurred_at": "2026-11-22T10:15:03", "currency": "EUR",
    "lines": [{"sku": "A", "qty": "1", "unit_price": "0.00", "discount": "0.00", "tax": "0.00"}],
    "tenders": [], "total": "0.00",
}  # fmt: skip


def _zero(**changes: Any) -> dict[str, Any]:
    raw = copy.deepcopy(ZERO_SALE)
    raw.update(changes)
    return raw


def _line(**changes: Any) -> dict[str, Any]:
    return _zero(lines=[dict(ZERO_SALE["lines"][0], **changes)])


@pytest.mark.parametrize(
    "raw",
    [
        _zero(lines=[]),  # a sale needs a line
        _line(qty="0.5", unit_price="0.01"),  # half a cent
        _zero(kind="void", lines=[]),  # a void names what it voids
        _zero(voided_txn_id="Z-0"),  # only a void does
        _zero(original={"channel": "webshop", "order_id": "W-1"}),  # only a return has an original
        _line(disposition="damaged"),  # only return lines carry a disposition
        _line(type="item"),  # v1 has no line types
        _line(qty="1.0001"),  # more than 3 places
        _line(unit_price="0.001"),  # more places than cents
        _zero(tenders=[{"type": "cash", "amount": "0.00", "card_last4": "4242"}]),  # card_last4 on cash
        _zero(occurred_at="2026-11-22T25:15:03"),  # not a time
        _zero(currency="EUr"),
        _zero(total="1.00"),  # lines add up to 0.00
    ],
)
def test_consistent_sums_do_not_hide_a_broken_rule(raw: dict[str, Any]) -> None:
    assert fast_canonical(copy.deepcopy(raw)) is None
    assert _full(raw) is None


def test_the_zero_sale_itself_is_accepted_by_both() -> None:
    assert fast_canonical(copy.deepcopy(ZERO_SALE)) == _full(ZERO_SALE) == ZERO_SALE
