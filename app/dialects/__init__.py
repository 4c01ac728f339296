"""The wire formats memory understands, one module each behind the `Dialect` interface."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, Protocol

from app.dialects import anthropic_messages, openai_chat, openai_responses
from app.memory import Turn
from app.sse import StreamEvent


class Dialect(Protocol):
    """What the chat path needs from a wire format: find turns, inject, read the reply, shape errors."""

    anthropic: bool  # errors in Anthropic's shape (else OpenAI's)

    def turns(self, body: dict[str, Any]) -> Iterator[Turn]:
        """The entries holding human or assistant words, newest first, scaffolding removed."""
        ...

    def present_text(self, body: dict[str, Any]) -> str:
        """Every text already in the request, to skip memories the client has in view."""
        ...

    def inject(self, body: dict[str, Any], block: str, mode: str) -> bool:
        """Place the recalled block per `injection` mode; False when there is no human turn to anchor it."""
        ...

    def stream_event(self, event: dict[str, Any]) -> StreamEvent:
        """What one decoded SSE event adds to the reply."""
        ...

    def reply_text(self, body: object) -> str | None:
        """The reply text of a non-streamed response body; None when it is not a complete reply."""
        ...

    def working_directory(self, body: dict[str, Any]) -> str | None:
        """The working directory the client states in its own environment block (never a user turn's words)."""
        ...


_BY_PATH: dict[str, Dialect] = {
    "/v1/chat/completions": openai_chat,
    "/chat/completions": openai_chat,
    "/v1/messages": anthropic_messages,
    "/v1/responses": openai_responses,
    "/responses": openai_responses,
}


CHAT_PATHS = tuple(_BY_PATH)  # the routing table sends POSTs on these to app.chat


def for_path(path: str) -> Dialect | None:
    """The dialect of a chat endpoint, or None for paths memory does not handle."""
    return _BY_PATH.get(path)
