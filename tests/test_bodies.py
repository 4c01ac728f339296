"""app/bodies.py: provider-routing fields a client may not steer are removed, other bytes kept; JSON
labelled as a form is relabelled."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import orjson
import pytest

from app.auth import Principal
from app.bodies import (
    FORM,
    MAX_JSON_DEPTH,
    ROUTING_FIELDS,
    TooDeep,
    clean_json_body,
    controls_allowed,
    is_control_field,
    is_json_type,
    media_type,
    parse_json,
    strip_routing_fields,
)
from tests.inprocess import marker, running, upstream_requests


def test_top_level_and_metadata_routing_fields_are_removed() -> None:
    body = {"model": "m", "api_base": "http://evil", "metadata": {"api_key": "k", "tag": "t"}, "user_config": {}}
    assert strip_routing_fields(body) is True
    assert body == {"model": "m", "metadata": {"tag": "t"}}


def test_a_clean_body_is_left_alone() -> None:
    body = {"model": "m", "messages": [], "metadata": {"api": "fine"}}
    assert strip_routing_fields(body) is False
    assert body == {"model": "m", "messages": [], "metadata": {"api": "fine"}}


def test_clean_json_body_keeps_the_original_bytes_when_nothing_changes() -> None:
    raw = b'{"model":  "m",\n "input": "x"}'
    assert clean_json_body(raw, "application/json")[0] is raw
    assert clean_json_body(b"not json", "application/json") == (b"not json", False)
    assert clean_json_body(b"[1, 2]", None) == (b"[1, 2]", False)


def test_clean_json_body_rewrites_only_when_a_field_goes() -> None:
    out, relabel = clean_json_body(orjson.dumps({"input": "x", **dict.fromkeys(ROUTING_FIELDS, "v")}), "text/plain")
    assert orjson.loads(out) == {"input": "x"} and relabel is False


@pytest.mark.parametrize("label", [FORM, "Application/X-WWW-Form-Urlencoded; charset=utf-8"])
def test_json_labelled_as_a_form_is_cleaned_and_relabelled(label: str) -> None:
    out, relabel = clean_json_body(b'{"input": "x", "api_base": "http://evil"}', label)
    assert orjson.loads(out) == {"input": "x"} and relabel is True
    assert clean_json_body(b'{"input": "x"}', label) == (b'{"input": "x"}', True)


def test_a_real_form_keeps_its_bytes_and_label() -> None:
    assert clean_json_body(b"username=a&password=b", FORM) == (b"username=a&password=b", False)
    assert clean_json_body(b"123", FORM) == (b"123", False)  # a form field named 123, not a JSON number


def test_media_types() -> None:
    assert media_type(" Application/JSON ; charset=utf-8") == "application/json"
    assert media_type(None) == media_type("") == ""
    assert is_json_type("application/json; charset=utf-8") and is_json_type("application/vnd.api+json")
    assert not is_json_type(FORM) and not is_json_type(None) and not is_json_type("text/plain")


def test_litellm_controls_are_removed_unless_allowed() -> None:
    body = {
        "model": "m",
        "num_retries": 8,
        "fallbacks": ["x"],
        "timeout": 1,
        "mock_response": "hi",
        "input_cost_per_token": 0,
        "metadata": {"user_id": "u", "tags": ["t"], "spend_logs_metadata": {}, "mine": 1},
    }
    assert strip_routing_fields(body) is True
    assert body == {"model": "m", "metadata": {"user_id": "u", "mine": 1}}
    kept = {"model": "m", "num_retries": 2, "metadata": {"tags": ["t"]}, "api_base": "http://evil"}
    assert strip_routing_fields(kept, frozenset({"num_retries", "tags"})) is True
    assert kept == {"model": "m", "num_retries": 2, "metadata": {"tags": ["t"]}}


def test_wire_fields_are_not_mistaken_for_controls() -> None:
    for name in ("model", "messages", "input", "metadata", "stream", "user", "tools", "max_tokens", "store"):
        assert not is_control_field(name), name


def test_controls_are_allowed_only_to_operators() -> None:
    listed = frozenset({"num_retries"})
    assert controls_allowed(Principal("key#0", user_id="alice"), listed) == frozenset()
    assert controls_allowed(Principal("key#1", admin=True), listed) == listed
    assert controls_allowed(None, listed) == frozenset()


def nested(depth: int) -> bytes:
    return b'{"a":' * (depth - 1) + b"[]" + b"}" * (depth - 1)


def test_json_up_to_the_limit_parses_and_past_it_is_refused() -> None:
    assert parse_json(nested(MAX_JSON_DEPTH)) is not None
    for depth in (MAX_JSON_DEPTH + 1, 1000, 5000):
        with pytest.raises(TooDeep):
            parse_json(nested(depth))
    with pytest.raises(TooDeep):
        clean_json_body(b"[" * 300 + b"]" * 300, "application/json")
    wide = orjson.dumps({"messages": [{"role": "user", "content": [{"type": "text", "text": "x"}]}] * 500})
    assert parse_json(wide)["messages"]  # many containers, shallow


def deep_chat(depth: int) -> bytes:
    content = b'{"type": "text", "text": ' * depth + b'"x"' + b"}" * depth
    return b'{"model": "fake-model", "messages": [{"role": "user", "content": [' + content + b"]}]}"


@pytest.mark.timeout(30)
@pytest.mark.parametrize("depth", [300, 1000, 2000])
async def test_every_json_route_answers_deep_nesting_with_a_400_in_dialect(tmp_path, depth: int) -> None:
    needle = marker()
    async with running(tmp_path) as p:
        for path, body, headers in (
            ("/v1/chat/completions", deep_chat(depth), {}),
            ("/v1/messages", deep_chat(depth), {"anthropic-version": "2023-06-01"}),
            ("/v1/responses", b'{"model": "m", "input": ' + b"[" * depth + b"]" * depth + b"}", {}),
            ("/v1/embeddings", b'{"model": "m", "x": "' + needle.encode() + b'", "input": ' + nested(depth) + b"}", {}),
            ("/v1/memories", b'{"content": "c", "metadata": ' + nested(depth) + b"}", {}),
            ("/v1/memories/import", b'{"content": "c", "metadata": ' + nested(depth) + b"}\n", {}),
        ):
            r = await p.client.post(path, content=body, headers={"content-type": "application/json", **headers})
            assert r.status_code == 400, (path, r.text)
            assert "nested deeper" in r.text, path
            assert (r.json().get("type") == "error") is path.startswith("/v1/messages"), path
        assert upstream_requests(needle) == []
        assert await p.memories("default") == []


@pytest.mark.e2e
@pytest.mark.timeout(300)
def test_every_parameter_the_pinned_litellm_owns_is_a_control_field() -> None:
    root = Path(__file__).resolve().parent.parent
    python = root / ".litellm" / "bin" / "python"
    if not python.exists():  # a fresh clone: build the pinned environment, as the first stack start does
        subprocess.run([str(root / "bin" / "litellm-proxy"), "--install-only"], check=True, timeout=600)
    script = "import json; from litellm.types.utils import all_litellm_params as p; print(json.dumps(sorted(set(p))))"
    env = {**os.environ, "LITELLM_LOCAL_MODEL_COST_MAP": "True"}
    out = subprocess.run([str(python), "-c", script], capture_output=True, text=True, check=True, env=env).stdout
    owned = orjson.loads(out.strip().splitlines()[-1])
    assert "num_retries" in owned and "mock_response" in owned
    removed = [n for n in owned if is_control_field(n) or n in ROUTING_FIELDS]
    assert sorted(set(owned) - set(removed)) == ["metadata"]
