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


class ReplyAssembler:
    """Collects the assistant's text from a response body as its bytes pass by."""

    def __init__(self, dialect: ReplyFormat, streaming: bool, max_bytes: int = 8 * 1024 * 1024) -> None:
        self.dialect = dialect
        self.streaming = streaming
        self.max_bytes = max_bytes
        self._buf = bytearray()
        self._parts: list[str] = []
        self.complete = False
        self.failed = False
        self._size = 0

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
        event = self.dialect.stream_event(obj)
        if event.text:
            self._parts.append(event.text)
        if event.failed:
            self.failed = True
        if event.done:
            self.complete = True
            if not self._parts and event.final:
                self._parts.append(event.final)

    def text(self) -> str | None:
        """The reply text once the body is complete, or None for a failed or partial one."""
        if self.failed:
            return None
        if self.streaming:
            return "".join(self._parts) if self.complete else None
        try:
            obj = orjson.loads(self._buf)
        except orjson.JSONDecodeError:
            return None
        return self.dialect.reply_text(obj)
