"""Reassembling a reply from a response body as it passes by: SSE framing, the dialect reads events."""

from __future__ import annotations

from typing import Any, NamedTuple, Protocol

import orjson


class StreamEvent(NamedTuple):
    """What one SSE event adds: reply text, the end of the reply, or its failure."""

    text: str = ""
    done: bool = False
    failed: bool = False
    final: str | None = None  # the whole reply, when the closing event carries it


class ReplyFormat(Protocol):
    """The part of a dialect that reads replies."""

    def stream_event(self, event: dict[str, Any]) -> StreamEvent: ...
    def reply_text(self, body: object) -> str | None: ...


_INPUT = ("prompt_tokens", "input_tokens", "promptTokenCount")
_OUTPUT = ("completion_tokens", "output_tokens", "candidatesTokenCount")


def usage_tokens(obj: dict[str, Any]) -> tuple[int | None, int | None]:
    """(input, output) tokens from a reply or stream event's `usage`, wherever the dialect puts it.

    OpenAI chat: top-level `usage`; Anthropic: `message.usage` (message_start) and `usage`
    (message_delta); Responses: `response.usage` (response.completed); Gemini: `usageMetadata`.
    """
    found: list[int | None] = [None, None]
    for holder in (obj, obj.get("message"), obj.get("response")):
        usage = (holder.get("usage") or holder.get("usageMetadata")) if isinstance(holder, dict) else None
        if not isinstance(usage, dict):
            continue
        for i, names in enumerate((_INPUT, _OUTPUT)):
            for name in names:
                value = usage.get(name)
                if isinstance(value, int) and not isinstance(value, bool) and value > (found[i] or 0):
                    found[i] = value
    return found[0], found[1]


class ReplyAssembler:
    """Collects the assistant's text from a response body as its bytes pass by."""

    def __init__(
        self, dialect: ReplyFormat, streaming: bool, max_bytes: int = 8 * 1024 * 1024, text: bool = True
    ) -> None:
        self.dialect = dialect
        self.streaming = streaming
        self.wants_text = text  # False: only token counts are wanted, so most events need no parsing
        self.max_bytes = max_bytes
        self._buf = bytearray()
        self._parts: list[str] = []
        self.complete = False
        self.failed = False
        self._size = 0
        self.input_tokens: int | None = None
        self.output_tokens: int | None = None
        self._parsed: object = None

    def feed(self, chunk: bytes) -> None:
        """Take the next raw chunk of the response body."""
        self._size += len(chunk)
        if self._size > self.max_bytes:
            self.failed = True
            self._buf.clear()
            return
        self._buf += chunk
        if self.streaming:
            self._drain_events()

    def _drain_events(self) -> None:
        while True:
            # Events end with a blank line; accept \r\n line endings too.
            buf = self._buf
            end = buf.find(b"\n\n")
            crlf = buf.find(b"\r\n\r\n")
            if crlf != -1 and (end == -1 or crlf < end):
                end, sep = crlf, 4
            elif end != -1:
                sep = 2
            else:
                return
            event = bytes(buf[:end])
            del buf[: end + sep]
            self._event(event)

    def _event(self, raw: bytes) -> None:
        if not self.wants_text and b'"usage' not in raw and b'"error"' not in raw:
            return
        data_lines = [line[5:].lstrip() for line in raw.splitlines() if line.startswith(b"data:")]
        if not data_lines:
            return
        data = b"\n".join(data_lines)
        if data == b"[DONE]":
            self.complete = True
            return
        try:
            obj = orjson.loads(data)
        except orjson.JSONDecodeError:
            return
        if not isinstance(obj, dict):
            return
        if "error" in obj and obj.get("type") in (None, "error"):
            self.failed = True
            return
        self._count(obj)
        event = self.dialect.stream_event(obj)
        if event.text:
            self._parts.append(event.text)
        if event.failed:
            self.failed = True
        if event.done:
            self.complete = True
            if not self._parts and event.final:
                self._parts.append(event.final)

    def _count(self, obj: dict[str, Any]) -> None:
        """Keep the largest token counts seen: Anthropic sends input first and output last."""
        tokens_in, tokens_out = usage_tokens(obj)
        self.input_tokens = tokens_in if tokens_in is not None else self.input_tokens
        self.output_tokens = tokens_out if tokens_out is not None else self.output_tokens

    def _body(self) -> object:
        """A whole (non-streamed) reply, parsed once."""
        if self._parsed is None and not self.failed:
            try:
                self._parsed = orjson.loads(self._buf)
            except orjson.JSONDecodeError:
                self._parsed = False
            if isinstance(self._parsed, dict):
                self._count(self._parsed)
        return self._parsed

    def text(self) -> str | None:
        """The reply text once the body is complete, or None for a failed or partial one."""
        if self.failed:
            return None
        if self.streaming:
            return "".join(self._parts) if self.complete else None
        return self.dialect.reply_text(self._body())

    def tokens(self) -> tuple[int | None, int | None]:
        """(input, output) tokens the provider reported, when it did."""
        if not self.streaming:
            self._body()
        return self.input_tokens, self.output_tokens
