"""Canonical JSON: round-trips, refusals, stability."""

from __future__ import annotations

import json
import math
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


# The fast encoder (orjson) must write exactly the reference bytes; any text, including control
# characters, U+2028/2029, astral characters and lone surrogates, any key order and safe integers.
any_text = st.text(alphabet=st.characters(codec=None, min_codepoint=0, max_codepoint=0x10FFFF), max_size=12)
wide_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**53) - 5, max_value=2**53 + 5)
    | any_text
    | st.decimals(allow_nan=False, allow_infinity=False, places=2),
    lambda children: (
        st.lists(children, max_size=5) | st.tuples(children, children) | st.dictionaries(any_text, children, max_size=5)
    ),
    max_leaves=40,
)


def _reference_or_error(value: object) -> str | type[Exception]:
    from sync_protocol.canonical import _check

    try:
        return json.dumps(_check(value, ""), sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    except CanonicalEncodingError:
        return CanonicalEncodingError


@given(wide_values)
def test_fast_encoder_writes_the_reference_bytes(value: object) -> None:
    want = _reference_or_error(value)
    if want is CanonicalEncodingError:
        with pytest.raises(CanonicalEncodingError):
            canonical_dumps(value)
    else:
        assert canonical_dumps(value) == want


def test_fast_encoder_edge_cases() -> None:
    from sync_protocol.canonical import plain_dumps

    for value in (
        {"b": '\x00\x1f\x7f\u2028\u2029"\\/', "a": "é😀", "\U0001f600": 1, "\uffff": 2, "z": [1, (2, 3)]},
        {"deep": [[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]},
        {"lone": "\ud800"},
        {"n": 2**53 - 1, "m": -(2**53) + 1, "t": True, "f": False, "x": None},
    ):
        want = _reference_or_error(value)
        assert canonical_dumps(value) == want
        assert plain_dumps(value) == want
    nested: object = 1
    for _ in range(300):  # deeper than orjson's limit (254): the reference path encodes it
        nested = [nested]
    assert canonical_dumps(nested) == "[" * 300 + "1" + "]" * 300
    with pytest.raises(CanonicalEncodingError, match="a: floats"):
        canonical_dumps({"a": 1.5})
    with pytest.raises(CanonicalEncodingError, match="safe range"):
        canonical_dumps({"a": [2**53]})
    with pytest.raises(CanonicalEncodingError, match="keys must be strings"):
        canonical_dumps({1: "x"})


# loads_strict's fast path (orjson, for canonical text such as every signed body) must decode exactly
# what the reference json path decodes and refuse exactly what it refuses.
@given(wide_values, st.booleans(), st.booleans())
def test_loads_strict_fast_path_agrees_with_the_reference(value: object, refuse_floats: bool, as_bytes: bool) -> None:
    from sync_protocol.canonical import _reference_loads, loads_strict

    try:
        text = canonical_dumps(value)
    except CanonicalEncodingError:
        return
    raw: str | bytes = text.encode("utf-8", "surrogatepass") if as_bytes else text
    try:
        want = _reference_loads(raw, refuse_floats=refuse_floats)
    except (ValueError, CanonicalEncodingError) as exc:
        with pytest.raises(type(exc)):
            loads_strict(raw, refuse_floats=refuse_floats)
        return
    assert loads_strict(raw, refuse_floats=refuse_floats) == want


def test_loads_strict_refuses_what_the_fast_path_must_not_pass() -> None:
    from sync_protocol.canonical import DuplicateKey, loads_strict

    with pytest.raises(DuplicateKey):
        loads_strict('{"a":1,"a":1}')
    with pytest.raises(DuplicateKey):
        loads_strict(b'{"a":{"b":1,"b":2}}')
    for floats in ('{"a":1.5}', '{"a":[1e16]}', '{"a":"x\\"y","b":2.0}', '{"a":-0.5,"b":true}'):
        with pytest.raises(CanonicalEncodingError):
            loads_strict(floats, refuse_floats=True)
        assert loads_strict(floats) == json.loads(floats)
    assert loads_strict('{"a":1.5}') == {"a": 1.5}
    assert loads_strict('{"a":[1,"x",null,true]}', refuse_floats=True) == {"a": [1, "x", None, True]}
    assert loads_strict('{"a":"1.5e3","b":"x\\"1.5"}', refuse_floats=True) == {"a": "1.5e3", "b": 'x"1.5'}
    assert loads_strict('{"b":1, "a":2}') == {"b": 1, "a": 2}  # not canonical: the reference path decodes it
    assert math.isnan(loads_strict('{"n":NaN}')["n"])  # json accepts NaN, orjson not: the reference decides
