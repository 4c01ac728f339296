"""Request-body hygiene: what LiteLLM reads as JSON, and fields a client must never use to steer its routing."""

from __future__ import annotations

from typing import Any

import orjson

# Provider-routing fields a client must not steer (LiteLLM CVE-2024-6587): LiteLLM would honour them.
ROUTING_FIELDS = frozenset(
    {
        "api_base",
        "base_url",
        "api_key",
        "api_version",
        "organization",
        "aws_access_key_id",
        "aws_secret_access_key",
        "aws_region_name",
        "vertex_credentials",
        "azure_ad_token",
        "user_config",
    }
)


def strip_routing_fields(body: dict[str, Any]) -> bool:
    """Remove client-supplied provider-routing fields (top level and `metadata`); True if any."""
    found = [k for k in body if k in ROUTING_FIELDS]
    for k in found:
        del body[k]
    meta = body.get("metadata")
    if isinstance(meta, dict):
        nested = [k for k in meta if k in ROUTING_FIELDS]
        for k in nested:
            del meta[k]
        found += nested
    return bool(found)


JSON = "application/json"
FORM = "application/x-www-form-urlencoded"
MULTIPART = "multipart/form-data"


def media_type(content_type: str | None) -> str:
    """The bare media type of a `content-type` value: no parameters, lower case ("" when absent)."""
    return (content_type or "").split(";", 1)[0].strip().lower()


def is_json_type(content_type: str | None) -> bool:
    """True for `application/json` and its `+json` relatives."""
    kind = media_type(content_type)
    return kind == JSON or kind.endswith("+json")


def clean_json_body(raw: bytes, content_type: str | None) -> tuple[bytes, bool]:
    """The pass-through body without routing fields, and whether it must go upstream as `application/json`.

    LiteLLM parses every body as JSON except a form's, whatever its content-type says, so every body
    that parses is cleaned. A JSON body labelled as a form (`curl -d` without `-H content-type`) is
    relabelled: LiteLLM would read it as form fields. Anything else keeps its bytes and label.
    """
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return raw, False  # a real form, or malformed JSON that LiteLLM answers in its own words
    relabel = media_type(content_type) == FORM and isinstance(body, (dict, list))
    if isinstance(body, dict) and strip_routing_fields(body):
        return orjson.dumps(body), relabel
    return raw, relabel
