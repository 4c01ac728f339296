"""OpenAI chat completions (`/v1/chat/completions`): messages, reply chunks, OpenAI errors."""

from __future__ import annotations

from typing import Any

from app.dialects import body_fields, messages
from app.dialects.messages import append_text, inject_near_user
from app.errors import ErrorShape
from app.sse import StreamEvent

error_shape = ErrorShape.OPENAI
model = body_fields.model
set_model = body_fields.set_model
streams = body_fields.streams
upstream_target = body_fields.upstream_target
utility_request = body_fields.utility_request
turns = messages.turns
present_text = messages.present_text


def inject(body: dict[str, Any], block: str, mode: str) -> bool:
    """Near the human turn, or (mode `system`) in the leading system/developer message."""
    if mode != "system":
        return inject_near_user(body, block, mode)
    if not any(t.role == "user" for t in turns(body)):
        return False
    msgs = body["messages"]
    if isinstance(msgs[0], dict) and msgs[0].get("role") in ("system", "developer"):
        msgs[0] = {**msgs[0], "content": append_text(msgs[0].get("content"), block)}
    else:
        msgs.insert(0, {"role": "system", "content": block})
    return True


def stream_event(event: dict[str, Any]) -> StreamEvent:
    """The first choice's content delta (the stream ends with `[DONE]`)."""
    text = []
    for choice in event.get("choices") or ():
        if isinstance(choice, dict) and choice.get("index", 0) == 0:
            delta = (choice.get("delta") or {}).get("content")
            if isinstance(delta, str):
                text.append(delta)
    return StreamEvent("".join(text))


def reply_text(body: object) -> str | None:
    """The first choice's message text."""
    if not isinstance(body, dict):
        return None
    choices = body.get("choices")
    if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
        return None
    message = choices[0].get("message")
    if not isinstance(message, dict):
        return None
    content = message.get("content")
    if isinstance(content, list):
        return "".join(p.get("text", "") for p in content if isinstance(p, dict) and p.get("type") == "text")
    if content is None:
        return ""  # a reply that only calls tools: no text, but the user's turn still counts
    return content if isinstance(content, str) else None


def working_directory(body: dict[str, Any]) -> str | None:
    """No client of this dialect states one: `x-memory-project` names the project."""
    return None
