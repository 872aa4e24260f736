"""The card-number detector (DESIGN §9): normalise, then look at every value and every key."""

from __future__ import annotations

import copy
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sync_protocol import TransactionInvalid, parse_transaction
from sync_protocol.cards import contains_pan, find_pans, gs1_check_ok, luhn_ok, mask_pans, mask_value, redact_row

from .cards_support import SCALE, TEST_PANS, pans, shows_pan, words, written

SALE: dict[str, Any] = {
    "txn_id": "R2-000917",
    "register_id": "R2",
    "kind": "sale",
    "occurred_at": "2026-11-22T10:15:03",
    "currency": "EUR",
    "lines": [{"sku": "TEE-BLK-M", "qty": "2", "unit_price": "19.90", "discount": "0.00", "tax": "6.36"}],
    "tenders": [{"type": "card", "amount": "46.16", "card_last4": "4242"}],
    "total": "46.16",
}

# The separators the attack report found passing capture, one example each.
WRITTEN = [
    "4111.1111.1111.1111",
    "4111/1111/1111/1111",
    "4111_1111_1111_1111",
    "4111   1111   1111   1111",
    "４１１１１１１１１１１１１１１１",
    "4111\u200b1111\u200b1111\u200b1111",
    "4\u200b1\u200b1\u200b1\u200b1\u200b1\u200b1\u200b1\u200b1\u200b1\u200b1\u200b1\u200b1\u200b1\u200b1\u200b1",
    "4111 - 1111 - 1111 - 1111",
    "٤١١١١١١١١١١١١١١١",
    "ref 99 4111 1111 1111 1111 / 12",
]


def refused_fields(raw: Any) -> list[str]:
    with pytest.raises(TransactionInvalid) as info:
        parse_transaction(raw)
    assert "4111" * 4 not in str(info.value)
    return [e.field for e in info.value.errors if "card number" in e.reason]


@pytest.mark.parametrize("text", WRITTEN)
def test_written_card_numbers_are_found_in_a_value_and_masked(text: str) -> None:
    assert contains_pan(text)
    raw = copy.deepcopy(SALE) | {"note": text}
    assert refused_fields(raw) == ["note"]
    masked = mask_pans(text)
    assert "•••• 1111" in masked and not shows_pan(masked, "4111111111111111")


@pytest.mark.parametrize("text", WRITTEN)
def test_a_card_number_as_a_key_is_refused_and_never_echoed(text: str) -> None:
    raw = copy.deepcopy(SALE)
    raw["tenders"][0][text] = "x"
    with pytest.raises(TransactionInvalid) as info:
        parse_transaction(raw)
    shown = json.dumps([e.as_dict() for e in info.value.errors], ensure_ascii=False)
    assert not shows_pan(shown, "4111111111111111"), shown
    assert any(e.field.startswith("tenders[0].") and "•••• 1111" in e.field for e in info.value.errors), shown


@settings(max_examples=300 * SCALE, deadline=None)
@given(st.data())
def test_any_luhn_valid_number_with_any_separators_is_caught(data: st.DataObject) -> None:
    pan = data.draw(pans())
    text = data.draw(written(pan))
    before, after = data.draw(words), data.draw(words)
    value = f"{before} {text} {after}"
    assert contains_pan(value), (pan, value)
    assert not shows_pan(mask_pans(value), pan)
    where = data.draw(st.sampled_from(["value", "key", "nested", "list"]))
    raw = copy.deepcopy(SALE)
    if where == "value":
        raw["lines"][0]["name"] = value
    elif where == "key":
        raw["lines"][0][value] = "1"
    elif where == "nested":
        raw["meta"] = {"a": {"b": value}}
    else:
        raw["tenders"][0]["refs"] = ["x", value]
    paths = list(find_pans(raw))
    assert paths, (pan, value)
    assert not any(shows_pan(p, pan) for p in paths)
    assert not shows_pan(json.dumps(mask_value(raw), ensure_ascii=False), pan)
    with pytest.raises(TransactionInvalid) as info:
        parse_transaction(raw)
    assert not shows_pan(str(info.value) + repr([e.as_dict() for e in info.value.errors]), pan)


@settings(max_examples=100 * SCALE, deadline=None)
@given(pans())
def test_a_card_number_as_a_json_number_is_caught(pan: str) -> None:
    assert list(find_pans({"note": int(pan)})) == ["note"]
    assert "•••• " + pan[-4:] == mask_value({"n": int(pan)})["n"]


@st.composite
def gtins(draw: st.DrawFn) -> str:
    """A GTIN-13/14 with a correct GS1 check digit that also passes Luhn (about one in ten does)."""
    length = draw(st.sampled_from([13, 14]))
    start = draw(st.integers(10 ** (length - 2), 10 ** (length - 1) - 1000))
    for n in range(start, start + 1000):
        stem = str(n)
        code = next(stem + d for d in "0123456789" if gs1_check_ok(stem + d))
        if luhn_ok(code):
            return code
    raise AssertionError("no GTIN passes Luhn near this one")  # pragma: no cover


@settings(max_examples=100 * SCALE, deadline=None)
@given(gtins())
def test_gtin_rule_kept_a_product_code_in_sku_is_a_product(code: str) -> None:
    raw = copy.deepcopy(SALE)
    raw["lines"][0]["sku"] = code
    assert parse_transaction(raw).lines[0].sku == code
    raw["lines"][0]["sku"] = "TEE"
    raw["lines"][0]["name"] = code  # the same digits anywhere else are a card number
    assert refused_fields(raw) == ["lines[0].name"]


@settings(max_examples=200 * SCALE, deadline=None)
@given(
    st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2099, 12, 31)),
    st.sampled_from(["seconds", "milliseconds", "microseconds"]),
    st.integers(-12, 14),
)
def test_an_iso_timestamp_is_not_a_card_number(moment: datetime, spec: str, hours: int) -> None:
    text = moment.replace(tzinfo=UTC).astimezone(__import__("datetime").timezone(timedelta(hours=hours)))
    value = text.isoformat(timespec=spec)
    assert not contains_pan(value)
    raw = copy.deepcopy(SALE) | {"occurred_at": value}
    parse_transaction(raw)


def test_ordinary_values_are_not_card_numbers() -> None:
    for text in ["R2-000917", "TEE-BLK-M", "46.16", "2026-11-22", "+49 30 1234 5678", "EAN 4006381333924"[:3]]:
        assert not contains_pan(text)
    assert mask_pans("R2-000917") == "R2-000917"


def test_redact_row_sees_through_json_escapes() -> None:
    row = '{"note": "4111\\u002e1111\\u002e1111\\u002e1111", "4111111111111111": 1}'
    out = redact_row(row)
    assert not shows_pan(out, "4111111111111111") and "•••• 1111" in out
    csv_row = "R2-1,R2,sale,4111 1111 1111 1111,EUR"
    assert not shows_pan(redact_row(csv_row), "4111111111111111")


@pytest.mark.parametrize("pan", TEST_PANS)
def test_test_pans_are_caught_bare(pan: str) -> None:
    assert contains_pan(pan) and mask_pans(pan) == f"•••• {pan[-4:]}"


def test_deep_nesting_does_not_crash_the_detector() -> None:
    deep: Any = "4111111111111111"
    for _ in range(5000):
        deep = [deep]
    assert len(list(find_pans(deep))) == 1
