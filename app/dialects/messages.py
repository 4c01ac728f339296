"""The `messages` list that OpenAI chat and Anthropic Messages share: turns, texts, injection."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from app.memory import Turn, human_text


def turns(body: dict[str, Any]) -> Iterator[Turn]:
    """User and assistant messages with words in them, newest first (system, tool and developer
    entries and tool-result-only turns are skipped, wherever they stand)."""
    messages = body.get("messages")
    if not isinstance(messages, list):
        return
    for i in range(len(messages) - 1, -1, -1):
        m = messages[i]
        if isinstance(m, dict) and m.get("role") in ("user", "assistant") and (text := human_text(m.get("content"))):
            yield Turn(i, m["role"], text)


def content_texts(content: Any) -> Iterator[str]:
    """Every text string in a message's content (a string or a list of parts)."""
    if isinstance(content, str):
        yield content
    elif isinstance(content, list):
        yield from (b["text"] for b in content if isinstance(b, dict) and isinstance(b.get("text"), str))


def present_text(body: dict[str, Any]) -> str:
    """Every message's text (the caller adds its dialect's system field)."""
    messages = body.get("messages")
    if not isinstance(messages, list):
        return ""
    return "\n".join(t for m in messages if isinstance(m, dict) for t in content_texts(m.get("content")))


def append_text(content: Any, text: str) -> Any:
    """`content` (a string or a list of parts) with `text` added at the end."""
    if isinstance(content, list):
        return [*content, {"type": "text", "text": text}]
    return f"{content}\n\n{text}" if content else text


def _has_tool_results(message: dict[str, Any]) -> bool:
    content = message.get("content")
    return isinstance(content, list) and any(isinstance(b, dict) and b.get("type") == "tool_result" for b in content)


def inject_near_user(body: dict[str, Any], block: str, mode: str) -> bool:
    """before_last_user and last_user_suffix; False when there is no human turn."""
    turn = next((t for t in turns(body) if t.role == "user"), None)
    if turn is None:
        return False
    messages = body["messages"]
    i = turn.position
    if mode == "before_last_user" and not _has_tool_results(messages[i]):
        # A message of its own keeps the client's cached prefix (system prompt, history) byte-identical.
        messages.insert(i, {"role": "user", "content": block})
    else:
        # Tool results must open the turn right after the assistant's tool_use: the notes go last.
        messages[i] = {**messages[i], "content": append_text(messages[i].get("content"), block)}
    return True
