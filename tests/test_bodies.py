"""app/bodies.py: provider-routing fields a client may not steer are removed, other bytes kept; JSON
labelled as a form is relabelled."""

from __future__ import annotations

import orjson
import pytest

from app.bodies import FORM, ROUTING_FIELDS, clean_json_body, is_json_type, media_type, strip_routing_fields


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
