"""What reaches the model: an echo upstream that keeps each request, and the notes found in it.

Used by bench/recall.py: the memory proxy's upstream points at `EchoUpstream`, each question goes
through POST /v1/chat/completions (`x-memory-mode: read`, so asking stores nothing), and the notes
the provider received are read back out of the recorded request.
"""

from __future__ import annotations

import html
import json
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx

_NOTE = re.compile(r"<note [^>]*>(.*?)</note>", re.DOTALL)
_REPLY = json.dumps(
    {
        "id": "chatcmpl-echo",
        "object": "chat.completion",
        "created": 0,
        "model": "echo",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "ok"}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
    }
).encode()


class EchoUpstream:
    """A loopback chat-completions provider that records the last request body it was sent."""

    def __init__(self) -> None:
        self.last: dict[str, Any] | None = None
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                size = int(self.headers.get("content-length") or 0)
                owner.last = json.loads(self.rfile.read(size))
                self.send_response(200)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(_REPLY)))
                self.end_headers()
                self.wfile.write(_REPLY)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> EchoUpstream:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


def received_notes(body: dict[str, Any]) -> list[str]:
    """The recalled notes' texts in a chat-completions request body, unescaped."""
    notes = []
    for message in body.get("messages", []):
        content = message.get("content")
        texts = [content] if isinstance(content, str) else [p.get("text", "") for p in content or []]
        for text in texts:
            notes += [html.unescape(n) for n in _NOTE.findall(text)]
    return notes


def ask(client: httpx.Client, echo: EchoUpstream, scope: str, question: str) -> tuple[int, list[str]]:
    """Ask one question through the chat endpoint in `scope`: (x-memory-injected, notes received)."""
    echo.last = None
    r = client.post(
        "/v1/chat/completions",
        json={"model": "demo", "messages": [{"role": "user", "content": question}]},
        headers={"x-memory-user-id": scope, "x-memory-mode": "read"},
    )
    r.raise_for_status()
    assert echo.last is not None, "the proxy answered without calling the upstream"
    return int(r.headers.get("x-memory-injected", "0")), received_notes(echo.last)
