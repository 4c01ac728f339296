"""Anthropic Messages (`/v1/messages`): messages plus `system`, event stream, Anthropic errors."""

from __future__ import annotations

import re
from typing import Any

from app.dialects import body_fields, messages
from app.dialects.messages import append_text, content_texts, inject_near_user
from app.errors import ErrorShape
from app.sse import StreamEvent

error_shape = ErrorShape.ANTHROPIC
model = body_fields.model
set_model = body_fields.set_model
streams = body_fields.streams
upstream_target = body_fields.upstream_target
utility_request = body_fields.utility_request
turns = messages.turns
# Claude Code's environment block: "# Environment … - Primary working directory: /path".
_WORKDIR = re.compile(r"^ - Primary working directory: ([^\n]*)$", re.MULTILINE)


def present_text(body: dict[str, Any]) -> str:
    """The system prompt and every message's text."""
    return "\n".join([*content_texts(body.get("system")), messages.present_text(body)])


def inject(body: dict[str, Any], block: str, mode: str) -> bool:
    """Near the human turn, or (mode `system`) at the end of `system`."""
    if mode != "system":
        return inject_near_user(body, block, mode)
    if not any(t.role == "user" for t in turns(body)):
        return False
    body["system"] = append_text(body.get("system"), block)
    return True


def stream_event(event: dict[str, Any]) -> StreamEvent:
    """Text deltas; `message_stop` ends the reply."""
    kind = event.get("type")
    if kind == "content_block_delta":
        delta = event.get("delta") or {}
        if delta.get("type") == "text_delta" and isinstance(delta.get("text"), str):
            return StreamEvent(delta["text"])
    return StreamEvent(done=kind == "message_stop")


def reply_text(body: object) -> str | None:
    """The text blocks of a message."""
    if not isinstance(body, dict):
        return None
    blocks = body.get("content")
    if not isinstance(blocks, list):
        return None
    return "".join(b.get("text", "") for b in blocks if isinstance(b, dict) and b.get("type") == "text")


def working_directory(body: dict[str, Any]) -> str | None:
    """Claude Code's `Primary working directory:` line, from the system prompt or a `system`-role
    message (where 2.1 puts its environment block); user turns are never read."""
    system_messages = body.get("messages")
    texts = [*content_texts(body.get("system"))]
    if isinstance(system_messages, list):
        texts.extend(
            t
            for m in system_messages
            if isinstance(m, dict) and m.get("role") == "system"
            for t in content_texts(m.get("content"))
        )
    for text in texts:
        found = _WORKDIR.search(text)
        if found:
            return found.group(1)
    return None
