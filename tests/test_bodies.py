"""app/bodies.py: provider-routing fields a client may not steer are removed, other bytes kept."""

from __future__ import annotations

import orjson

from app.bodies import ROUTING_FIELDS, clean_json_body, strip_routing_fields


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
    assert clean_json_body(raw) is raw
    assert clean_json_body(b"not json") == b"not json"
    assert clean_json_body(b"[1, 2]") == b"[1, 2]"


def test_clean_json_body_rewrites_only_when_a_field_goes() -> None:
    out = orjson.loads(clean_json_body(orjson.dumps({"input": "x", **dict.fromkeys(ROUTING_FIELDS, "v")})))
    assert out == {"input": "x"}
