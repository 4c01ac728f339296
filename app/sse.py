"""Reassembling a streamed reply from OpenAI or Anthropic SSE events, incrementally."""

from __future__ import annotations

import orjson


class ReplyAssembler:
    """Collects the assistant's text from a response body as its bytes pass by."""

    def __init__(self, anthropic: bool, streaming: bool, max_bytes: int = 8 * 1024 * 1024) -> None:
        self.anthropic = anthropic
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
        if self.anthropic:
            kind = obj.get("type")
            if kind == "content_block_delta":
                delta = obj.get("delta") or {}
                if delta.get("type") == "text_delta" and isinstance(delta.get("text"), str):
                    self._parts.append(delta["text"])
            elif kind == "message_stop":
                self.complete = True
            return
        for choice in obj.get("choices") or ():
            if isinstance(choice, dict) and choice.get("index", 0) == 0:
                text = (choice.get("delta") or {}).get("content")
                if isinstance(text, str):
                    self._parts.append(text)

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
        return reply_text(obj, self.anthropic)


def reply_text(obj: object, anthropic: bool) -> str | None:
    """The assistant text of a non-streamed OpenAI or Anthropic response body."""
    if not isinstance(obj, dict):
        return None
    if anthropic:
        blocks = obj.get("content")
        if not isinstance(blocks, list):
            return None
        return "".join(b.get("text", "") for b in blocks if isinstance(b, dict) and b.get("type") == "text")
    choices = obj.get("choices")
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
