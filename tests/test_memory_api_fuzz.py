"""Random values in every memory-API parameter and field, on both backends: a 4xx, never a 500."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from starlette.testclient import TestClient

from app.config import Settings
from app.main import create_app

pytestmark = pytest.mark.timeout(600)

# Values near the edges the stores and the parsers have: other scripts' digits, NUL, offsets that
# move year 1 or 9999 out of range, huge and non-finite numbers, wrong JSON types.
EDGY_TEXT = st.sampled_from(
    [
        "²",
        "١٢",
        "0",
        "-1",
        "1" * 5000,
        "1e400",
        "nan",
        "inf",
        "\x00",
        "a\x00b",
        "0001-01-01T00:00:00+14:00",
        "9999-12-31T23:59:59-14:00",
        "0001-01-01",
        "2024-02-30",
        "1700000000.5_12",
        "9" * 30 + "_" + "9" * 30,
        "1e20_1",
        "nan_1",
        "-62135596800.0_99999999999999999999",
        "mem_" + "x" * 70,
        "ж" * 200,
        "\ud7ff\ue000\U0010ffff",
        "",
        " ",
    ]
)
TEXT = st.one_of(EDGY_TEXT, st.text(max_size=40), st.from_regex(r"[0-9]{1,25}", fullmatch=True))
JSON_SCALAR = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**63), max_value=2**63),
    st.floats(allow_nan=False, allow_infinity=False),
    st.sampled_from([1e300, -1e300, 2**64, -(2**64), 253402300800, -62135596801, 0.1]),
    TEXT,
)
JSON_VALUE = st.recursive(
    JSON_SCALAR, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(TEXT, inner, max_size=3), max_leaves=6
)
NAMES = st.sampled_from(["user", "note", "alice", "a" * 129])
FIELDS = ("content", "role", "created_at", "model", "metadata", "id", "user_id")
RECORD = st.fixed_dictionaries(
    {"content": st.one_of(st.just("a note on kiwi"), JSON_VALUE)},
    optional={name: st.one_of(JSON_VALUE, NAMES) for name in FIELDS if name != "content"},
)
PARAMS = st.dictionaries(st.sampled_from(["limit", "cursor", "q", "user_id", "since", "until", "group_by"]), TEXT)
GETS = ["/v1/memories", "/v1/memories/search", "/v1/memories/export", "/v1/usage", "/v1/scopes"]


@pytest.fixture
def client(store_url: str) -> Iterator[TestClient]:
    app = create_app(Settings(db_path=store_url))
    with TestClient(app, base_url="http://127.0.0.1", raise_server_exceptions=False) as c:
        yield c


def encode(value: Any) -> bytes:
    """JSON as a client may send it (integers past 64 bits included)."""
    return json.dumps(value).encode()


def assert_no_500(r: Any, anthropic: bool) -> None:
    assert r.status_code < 500, r.text
    if r.status_code >= 400:
        body = r.json()
        assert (body["type"] == "error") if anthropic else ("error" in body and "message" in body["error"])


FUZZ = settings(
    max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture]
)


@FUZZ
@given(path=st.sampled_from(GETS), params=PARAMS, anthropic=st.booleans())
def test_query_parameters_never_reach_a_500(client: TestClient, path: str, params: dict, anthropic: bool) -> None:
    headers = {"anthropic-version": "2023-06-01"} if anthropic else {}
    assert_no_500(client.get(path, params=params, headers=headers), anthropic)


@FUZZ
@given(record=st.one_of(RECORD, JSON_VALUE), anthropic=st.booleans())
def test_memory_fields_never_reach_a_500(client: TestClient, record: Any, anthropic: bool) -> None:
    headers = {"anthropic-version": "2023-06-01"} if anthropic else {}
    r = client.post("/v1/memories", content=encode(record), headers=headers)
    assert_no_500(r, anthropic)
    if r.status_code in (200, 201):  # what was stored reads back, by id and in the list
        stored = r.json()
        assert_no_500(client.get(f"/v1/memories/{stored['id']}", params={"user_id": stored["user_id"]}), anthropic)
        assert_no_500(client.get("/v1/memories", params={"user_id": stored["user_id"]}), anthropic)


@FUZZ
@given(records=st.lists(st.one_of(RECORD, JSON_VALUE), min_size=1, max_size=4), raw=st.binary(max_size=40))
def test_import_lines_never_reach_a_500(client: TestClient, records: list, raw: bytes) -> None:
    body = b"\n".join([*(encode(r) for r in records), raw])
    assert_no_500(client.post("/v1/memories/import", content=body), anthropic=False)


@FUZZ
@given(memory_id=TEXT, params=PARAMS, body=JSON_VALUE, method=st.sampled_from(["GET", "DELETE"]))
def test_ids_and_scope_changes_never_reach_a_500(
    client: TestClient, memory_id: str, params: dict, body: Any, method: str
) -> None:
    path_id = quote(memory_id, safe="") or "x"
    assert_no_500(client.request(method, f"/v1/memories/{path_id}", params=params), anthropic=False)
    r = client.patch(f"/v1/scopes/{path_id}", content=encode(body))
    assert_no_500(r, anthropic=False)
