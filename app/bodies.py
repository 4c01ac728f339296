"""Request-body hygiene: fields a client must never use to steer LiteLLM's provider routing."""

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


def clean_json_body(raw: bytes) -> bytes:
    """The body without routing fields; the original bytes when there were none (or not JSON)."""
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return raw  # LiteLLM answers malformed JSON in its own words
    if isinstance(body, dict) and strip_routing_fields(body):
        return orjson.dumps(body)
    return raw
