"""The model and the stream flag as JSON body fields: OpenAI chat, Anthropic Messages and Responses."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def model(body: dict[str, Any], params: Mapping[str, str]) -> object:
    """The body's `model` field (None when absent)."""
    return body.get("model")


def set_model(body: dict[str, Any], name: str) -> bool:
    """Name the routed model in the body; True (the body changed)."""
    body["model"] = name
    return True


def streams(body: dict[str, Any], target: str) -> bool:
    """True when the body asks for a streamed reply."""
    return body.get("stream") is True


def upstream_target(target: str, model: str | None) -> str:
    """The client's own path and query: LiteLLM serves these dialects at the same paths."""
    return target


def utility_request(body: dict[str, Any]) -> bool:
    """Never: every request of these dialects is treated as a conversation turn."""
    return False
