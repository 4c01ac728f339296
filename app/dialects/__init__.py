"""The wire formats memory understands, one module each behind the `Dialect` interface."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any, Protocol

from app.dialects import anthropic_messages, gemini, openai_chat, openai_responses
from app.errors import ErrorShape
from app.memory import Turn
from app.sse import StreamEvent


class Dialect(Protocol):
    """What the chat path needs from a wire format: the model, find turns, inject, read the reply, shape errors."""

    error_shape: ErrorShape

    def model(self, body: dict[str, Any], params: Mapping[str, str]) -> object:
        """The model the request names (a body field, or a path parameter of the route)."""
        ...

    def set_model(self, body: dict[str, Any], name: str) -> bool:
        """Name the routed model where the dialect carries it; True when that changed the body."""
        ...

    def streams(self, body: dict[str, Any], target: str) -> bool:
        """True when the reply comes as server-sent events (`target` is the path and query)."""
        ...

    def upstream_target(self, target: str, model: str | None) -> str:
        """Where LiteLLM serves this request (path and query) for the routed `model`."""
        ...

    def utility_request(self, body: dict[str, Any]) -> bool:
        """True for a call the client makes for its own ends (a classifier, a JSON check), not a
        turn of the conversation: memory neither injects into it nor stores it."""
        ...

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
    **dict.fromkeys(gemini.PATHS, gemini),
}


CHAT_PATHS = tuple(_BY_PATH)  # the routing table sends POSTs on these to app.chat ({model}: one segment)


def for_path(route_path: str) -> Dialect | None:
    """The dialect of a chat route (its path as the routing table names it), or None for other paths."""
    return _BY_PATH.get(route_path)
