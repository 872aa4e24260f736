"""Bad input never gives a 5xx or a traceback: header parsers, drop readers, admin parameters (DESIGN §10)."""

from __future__ import annotations

import io
import json
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edge_agent.drops import load
from edge_agent.drops.csv_canonical import COLUMNS
from edge_agent.drops.formats import DropRejected
from storesync_harness.dropfiles import SHOPIFY_HEADER
from storesync_harness.processes import Hub
from sync_protocol import keys
from sync_protocol._exceptions import AuthError
from sync_protocol.httpsig import sign_request, verify_request
from sync_protocol.wire import BURSTS_PATH

from .cards_support import SCALE

KEY = keys.generate()
KEY_ID = keys.key_id(KEY)
BODY = b'{"store_id": "S1"}'
SIGNED = sign_request("POST", BURSTS_PATH, BODY, KEY, KEY_ID, created=1_700_000_000)


def lookup(key_id: str) -> Any:
    return KEY.public_key() if key_id == KEY_ID else None


def check_headers(headers: dict[str, str]) -> None:
    """verify_request either accepts or raises AuthError: never anything else."""
    try:
        verify_request("POST", BURSTS_PATH, {k.lower(): v for k, v in headers.items()}, BODY, lookup)
    except AuthError:
        pass


header_text = st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=200)
# Pieces a broken or hostile client may put into the headers.
pieces = st.sampled_from(
    [
        "sig1=", ":", "=", "==", "(", ")", '"', ";", ",", "created=", "keyid=", 'alg="ed25519"', "sha-256=",
        '"@method"', '"@path"', '"content-digest"', "abc", "A", "1e9", "-1", "99999999999999999999999", "\u0661",
    ]
)  # fmt: skip


@settings(max_examples=300 * SCALE, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(["Signature-Input", "Signature", "Content-Digest"]), header_text)
def test_any_single_header_value_is_an_auth_error_at_worst(name: str, value: str) -> None:
    check_headers(SIGNED | {name: value})


@settings(max_examples=300 * SCALE, deadline=None)
@given(
    st.sampled_from(["Signature-Input", "Signature", "Content-Digest"]),
    st.integers(0, 120),
    st.lists(pieces, min_size=1, max_size=4),
    st.booleans(),
)
def test_mutated_valid_headers_are_an_auth_error_at_worst(name: str, at: int, insert: list[str], cut: bool) -> None:
    value = SIGNED[name]
    at = min(at, len(value))
    value = value[:at] + "".join(insert) + ("" if cut else value[at:])
    check_headers(SIGNED | {name: value})


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("Signature", "sig1=:" + "A" * 85 + ":"),  # bad base64 padding
        ("Content-Digest", "sha-256=:" + "A" * 43 + ":"),
        ("Signature-Input", SIGNED["Signature-Input"].replace("created=1700000000", 'created="soon"')),
        ("Signature-Input", SIGNED["Signature-Input"].replace("created=1700000000", "created=" + "9" * 5000)),
    ],
    ids=["bad-padding", "digest-padding", "created-quoted", "created-5000-digits"],
)
def test_the_reported_malformed_headers_are_auth_errors(name: str, value: str) -> None:
    with pytest.raises(AuthError):
        verify_request("POST", BURSTS_PATH, {k.lower(): v for k, v in (SIGNED | {name: value}).items()}, BODY, lookup)


def read_all(data: bytes) -> int:
    """Read a drop file to the end; only DropRejected may escape. Returns the items read."""
    try:
        _, items = load(io.BytesIO(data))
        return sum(1 for _ in items)
    except DropRejected as exc:
        assert exc.reason and "\n" not in exc.reason
        return 0


CSV_HEADER = ",".join(COLUMNS).encode() + b"\n"
SHOPIFY = ",".join(f'"{c}"' if "," in c else c for c in SHOPIFY_HEADER).encode() + b"\n"
row_bytes = st.binary(max_size=300) | st.text(max_size=200).map(lambda s: s.encode("utf-8", "surrogatepass"))


@settings(max_examples=200 * SCALE, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.sampled_from([b"", b"{}\n", CSV_HEADER, SHOPIFY, b"\xef\xbb\xbf" + CSV_HEADER]), st.lists(row_bytes, max_size=6)
)
def test_drop_readers_never_crash(prefix: bytes, rows: list[bytes]) -> None:
    read_all(prefix + b"\n".join(rows))


def test_a_first_line_with_a_bare_carriage_return_is_refused_not_a_crash() -> None:
    """Found by ``make fuzz``: csv.Error escaped format detection for a first line of '\\r\\x01'."""
    with pytest.raises(DropRejected) as info:
        load(io.BytesIO(b"\r\x01"))
    assert "unknown format" in info.value.reason


@settings(max_examples=100 * SCALE, deadline=None)
@given(st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=20),
                    lambda c: st.lists(c, max_size=4) | st.dictionaries(st.text(max_size=8), c, max_size=4),
                    max_leaves=20))  # fmt: skip
def test_jsonl_reader_takes_any_json_value(doc: Any) -> None:
    read_all((json.dumps(doc) + "\n").encode())


def test_malformed_signature_headers_give_401_and_one_log_line(hub: Hub) -> None:
    good = sign_request("POST", BURSTS_PATH, BODY, KEY, KEY_ID)
    cases = [
        {"Signature": "sig1=:" + "A" * 85 + ":"},
        {"Content-Digest": "sha-256=:" + "A" * 43 + ":"},
        {"Signature-Input": good["Signature-Input"].replace("created=", 'created="x";c=')},
        {"Signature-Input": 'sig1=("@method");created=abc'},
    ]
    before = hub.log_path.read_text()
    for change in cases:
        r = httpx.post(hub.url + BURSTS_PATH, content=BODY, headers=good | change, timeout=10)
        assert r.status_code in (400, 401), (change, r.status_code, r.text)
        assert r.json()["error"] in ("unauthenticated", "bad_request")
    log = hub.log_path.read_text()[len(before) :]
    assert "Traceback" not in log
    assert log.count("burst refused status=401") == len(cases), log


@pytest.mark.parametrize(
    ("path", "param"),
    [
        ("/v1/admin/stores/S1/ledger?after=1e20", "after"),
        ("/v1/admin/stores/S1/ledger?after=" + str(2**64), "after"),
        ("/v1/admin/stores/S1/ledger?limit=-1", "limit"),
        ("/v1/admin/stores/S1/ledger?epoch=" + str(2**70), "epoch"),
        ("/v1/admin/deliveries?after=" + str(2**64), "after"),
        ("/v1/admin/deliveries?limit=0", "limit"),
        ("/v1/admin/deliveries?sink=" + "x" * 500, "sink"),
        ("/v1/admin/time-fallbacks?limit=1001", "limit"),
    ],
    ids=[
        "after-float",
        "after-2^64",
        "limit-negative",
        "epoch-2^70",
        "deliveries-after-2^64",
        "limit-0",
        "sink-long",
        "fallbacks-limit-1001",
    ],
)
def test_admin_parameters_out_of_range_are_400_naming_the_parameter(hub: Hub, path: str, param: str) -> None:
    hub.add_store("S1")
    r = httpx.get(hub.url + path, headers={"Authorization": f"Bearer {hub.admin_token}"}, timeout=10)
    assert r.status_code == 400, r.text
    assert r.json()["message"].startswith(param), r.text


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"sink": ["jsonl"]}, "sink"),
        ({"event_id": {"a": 1}}, "event_id"),
        ({"store_id": "S1", "from_seq": 2**64}, "from_seq"),
        ({"store_id": "S1", "from_seq": 1.5}, "from_seq"),
        ({"store_id": "S1", "dead": "yes"}, "dead"),
    ],
)
def test_admin_replay_body_of_the_wrong_type_is_400_naming_the_field(
    hub: Hub, body: dict[str, Any], param: str
) -> None:
    r = httpx.post(
        hub.url + "/v1/admin/deliveries/replay",
        json=body,
        headers={"Authorization": f"Bearer {hub.admin_token}"},
        timeout=10,
    )
    assert r.status_code == 400, r.text
    assert param in r.json()["message"], r.text


def test_metrics_show_per_store_series_only_with_the_admin_token(hub: Hub) -> None:
    hub.add_store("SECRET1")
    key = keys.generate()
    token = hub.add_store("SECRET2")
    assert httpx.post(hub.url + "/v1/enroll", json={"token": token, "public_key": keys.public_hex(key)}).is_success
    open_ = httpx.get(hub.url + "/metrics", timeout=10)
    assert open_.status_code == 200
    assert "SECRET" not in open_.text and 'store="' not in open_.text
    assert "storesync_ingest_bursts" in open_.text or "storesync_deliveries" in open_.text  # fleet series stay
    wrong = httpx.get(hub.url + "/metrics", headers={"Authorization": "Bearer nope"}, timeout=10)
    assert "SECRET" not in wrong.text
    full = httpx.get(hub.url + "/metrics", headers={"Authorization": f"Bearer {hub.admin_token}"}, timeout=10)
    assert 'store="SECRET2"' in full.text


def test_an_id_past_64_bits_is_400_not_500(hub: Hub) -> None:
    """Found by the schemathesis run: a derive-error id past 2^63 reached SQL and answered 500."""
    r = httpx.post(
        hub.url + "/v1/admin/derive-errors/68985889824388415488/rederive",
        headers={"Authorization": f"Bearer {hub.admin_token}"},
        timeout=10,
    )
    assert r.status_code == 400 and r.json()["message"].startswith("error_id"), r.text
