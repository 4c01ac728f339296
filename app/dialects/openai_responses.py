"""OpenAI Responses (`/v1/responses`): `input` string or items, typed events, OpenAI errors.

Only `message` items carry words; function calls, their outputs, reasoning (with
`encrypted_content`) and item types this module does not know pass through untouched.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

from app.dialects import body_fields
from app.dialects.messages import content_texts
from app.errors import ErrorShape
from app.memory import TEXT_PARTS, Turn, human_text
from app.sse import StreamEvent

error_shape = ErrorShape.OPENAI
model = body_fields.model
set_model = body_fields.set_model
streams = body_fields.streams
upstream_target = body_fields.upstream_target
utility_request = body_fields.utility_request
# Codex's environment item: a whole text part "<environment_context> <cwd>/path</cwd> …</environment_context>".
_ENVIRONMENT = re.compile(r"\s*<environment_context>(.*)</environment_context>\s*", re.DOTALL)
_CWD = re.compile(r"<cwd>([^<]*)</cwd>")


def _is_message(item: Any) -> bool:
    return isinstance(item, dict) and item.get("type", "message") == "message"


def turns(body: dict[str, Any]) -> Iterator[Turn]:
    """User and assistant messages with words in them, newest first (developer and system
    messages and every non-message item are skipped)."""
    items = body.get("input")
    if isinstance(items, str):
        if text := human_text(items):
            yield Turn(0, "user", text)
        return
    if not isinstance(items, list):
        return
    for i in range(len(items) - 1, -1, -1):
        item = items[i]
        if not _is_message(item) or item.get("role") not in ("user", "assistant"):
            continue
        if text := human_text(item.get("content")):
            yield Turn(i, item["role"], text)


def present_text(body: dict[str, Any]) -> str:
    """The instructions and every message item's text."""
    items = body.get("input")
    texts = [*content_texts(body.get("instructions"))]
    if isinstance(items, str):
        texts.append(items)
    elif isinstance(items, list):
        texts.extend(t for item in items if _is_message(item) for t in content_texts(item.get("content")))
    return "\n".join(texts)


def _user_message(text: str) -> dict[str, Any]:
    return {"type": "message", "role": "user", "content": [{"type": "input_text", "text": text}]}


def inject(body: dict[str, Any], block: str, mode: str) -> bool:
    """A user message right before the human's (`before_last_user`), a part appended to it
    (`last_user_suffix`), or the end of `instructions` (`system`)."""
    turn = next((t for t in turns(body) if t.role == "user"), None)
    if turn is None:
        return False
    if mode == "system":
        instructions = body.get("instructions")
        body["instructions"] = f"{instructions}\n\n{block}" if isinstance(instructions, str) and instructions else block
        return True
    if isinstance(body["input"], str):
        body["input"] = [{"role": "user", "content": body["input"]}]
    items = body["input"]
    if mode == "before_last_user":
        # An item of its own: `instructions` and every earlier item stay byte-identical (prompt cache).
        items.insert(turn.position, _user_message(block))
        return True
    item = items[turn.position]
    content = item.get("content")
    if isinstance(content, list):
        content = [*content, {"type": "input_text", "text": block}]
    else:
        content = f"{content}\n\n{block}"
    items[turn.position] = {**item, "content": content}
    return True


def _output_text(response: Any) -> str | None:
    """The text of a `response` object's output messages; None unless it completed."""
    if not isinstance(response, dict) or response.get("status", "completed") != "completed":
        return None
    output = response.get("output")
    if not isinstance(output, list):
        return None
    return "".join(
        part["text"]
        for item in output
        if _is_message(item) and isinstance(item.get("content"), list)
        for part in item["content"]
        if isinstance(part, dict) and part.get("type") in TEXT_PARTS and isinstance(part.get("text"), str)
    )


def stream_event(event: dict[str, Any]) -> StreamEvent:
    """Text deltas; `response.completed` ends the reply, `failed`, `incomplete` and `error` void it."""
    kind = event.get("type")
    if kind == "response.output_text.delta" and isinstance(event.get("delta"), str):
        return StreamEvent(event["delta"])
    if kind == "response.completed":
        return StreamEvent(done=True, final=_output_text(event.get("response")))
    return StreamEvent(failed=kind in ("response.failed", "response.incomplete", "error"))


def reply_text(body: object) -> str | None:
    """The output text of a completed response object (failed, incomplete or queued: None)."""
    return _output_text(body)


def working_directory(body: dict[str, Any]) -> str | None:
    """Codex's `<cwd>`, from an `<environment_context>` part of a user or developer message that
    holds no human words and comes before the first human turn (where Codex puts it)."""
    items = body.get("input")
    if not isinstance(items, list):
        return None
    for item in items:
        if not _is_message(item) or item.get("role") not in ("user", "developer"):
            continue
        if item.get("role") == "user" and human_text(item.get("content")):
            return None  # the human's words begin: anything after is not the client's block
        for text in content_texts(item.get("content")):
            block = _ENVIRONMENT.fullmatch(text)
            cwd = _CWD.search(block.group(1)) if block else None
            if cwd:
                return cwd.group(1)
    return None
