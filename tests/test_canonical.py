"""Canonical JSON: round-trips, refusals, stability."""

from __future__ import annotations

import json
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sync_protocol._exceptions import CanonicalEncodingError
from sync_protocol.canonical import canonical_dumps, is_canonical

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(min_value=-(2**53) + 1, max_value=2**53 - 1) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=10), children, max_size=5),
    max_leaves=30,
)


@given(json_values)
def test_round_trip_is_identity(value: object) -> None:
    text = canonical_dumps(value)
    assert json.loads(text) == value
    assert canonical_dumps(json.loads(text)) == text
    assert is_canonical(text)


@given(st.dictionaries(st.text(max_size=8), st.integers(0, 9), min_size=2, max_size=8))
def test_key_order_does_not_matter(value: dict[str, int]) -> None:
    reversed_items = dict(reversed(list(value.items())))
    assert canonical_dumps(value) == canonical_dumps(reversed_items)


def test_exact_bytes() -> None:
    assert canonical_dumps({"b": [1, "ü"], "a": None}) == '{"a":null,"b":[1,"ü"]}'


def test_decimal_renders_as_string() -> None:
    assert canonical_dumps({"x": Decimal("19.90")}) == '{"x":"19.90"}'


@pytest.mark.parametrize(
    "value, needle",
    [
        ({"price": 1.5}, "price: floats are not allowed"),
        ({"n": 2**60}, "n: integer outside the safe range"),
        ({"d": Decimal("NaN")}, "d: decimal must be finite"),
        ({1: "x"}, "object keys must be strings"),
        ({"s": {1, 2}}, "s: set has no canonical JSON form"),
    ],
)
def test_refusals_name_the_field(value: object, needle: str) -> None:
    with pytest.raises(CanonicalEncodingError, match=needle):
        canonical_dumps(value)


def test_non_canonical_text_detected() -> None:
    assert not is_canonical('{"b":1, "a":2}')
    assert not is_canonical('{"a":1.5}')
