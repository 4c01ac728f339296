"""app/errors.py: error bodies in the caller's dialect."""

from __future__ import annotations

import json

import pytest

from app.dialects import anthropic_messages, openai_chat
from app.errors import error_body, error_response, is_anthropic, stream_error_event
from app.sse import ReplyAssembler

STATUSES = [400, 401, 403, 404, 413, 429, 500, 502, 503, 504]


@pytest.mark.parametrize("status", STATUSES)
def test_openai_shape(status: int) -> None:
    body = json.loads(error_body(False, status, "something broke", None))
    assert set(body) == {"error"}
    assert set(body["error"]) == {"message", "type", "code"}
    assert body["error"]["message"] == "something broke"
    assert isinstance(body["error"]["type"], str) and body["error"]["type"]
    assert body["error"]["code"]


@pytest.mark.parametrize("status", STATUSES)
def test_anthropic_shape(status: int) -> None:
    body = json.loads(error_body(True, status, "something broke"))
    assert set(body) == {"type", "error"}
    assert body["type"] == "error"
    assert set(body["error"]) == {"type", "message"}
    assert body["error"]["message"] == "something broke"


@pytest.mark.parametrize(
    ("status", "kind"),
    [
        (400, "invalid_request_error"),
        (401, "authentication_error"),
        (403, "permission_error"),
        (404, "not_found_error"),
        (429, "rate_limit_error"),
    ],
)
@pytest.mark.parametrize("anthropic", [False, True])
def test_error_types(status: int, kind: str, anthropic: bool) -> None:
    body = json.loads(error_body(anthropic, status, "m"))
    assert body["error"]["type"] == kind


def test_unknown_statuses_fall_back_sensibly() -> None:
    assert json.loads(error_body(False, 418, "m"))["error"]["type"] == "invalid_request_error"
    assert json.loads(error_body(True, 599, "m"))["error"]["type"] == "api_error"


def test_openai_code_explicit() -> None:
    assert json.loads(error_body(False, 400, "m", "invalid_scope"))["error"]["code"] == "invalid_scope"


def test_message_is_json_escaped() -> None:
    msg = 'quote " backslash \\ newline \n <tag>'
    assert json.loads(error_body(False, 400, msg))["error"]["message"] == msg
    assert json.loads(error_body(True, 400, msg))["error"]["message"] == msg


def test_error_response() -> None:
    r = error_response(True, 403, "scope not allowed", headers={"x-memory-user-id": "a"})
    assert r.status_code == 403
    assert r.headers["content-type"].startswith("application/json")
    assert r.headers["x-memory-user-id"] == "a"
    assert json.loads(r.body)["error"]["type"] == "permission_error"


@pytest.mark.parametrize(
    ("path", "headers", "expected"),
    [
        ("/v1/messages", {}, True),
        ("/v1/messages/count_tokens", {}, True),
        ("/v1/chat/completions", {"anthropic-version": "2023-06-01"}, True),
        ("/v1/chat/completions", {}, False),
        ("/chat/completions", {"authorization": "Bearer x"}, False),
        ("/v1/models", {}, False),
        ("/v1/memories", {}, False),
    ],
)
def test_is_anthropic(path: str, headers: dict[str, str], expected: bool) -> None:
    assert is_anthropic(path, headers) is expected


def _events(raw: bytes) -> list[list[str]]:
    text = raw.decode()
    assert text.endswith("\n\n")
    return [e.split("\n") for e in text.strip("\n").split("\n\n")]


@pytest.mark.parametrize("message", ["upstream broke", "[DONE]", "data: [DONE]\n\n"])
def test_openai_stream_error_event(message: str) -> None:
    raw = stream_error_event(False, message)
    events = _events(raw)
    assert len(events) == 1
    (line,) = events[0]
    assert line.startswith("data: ")
    assert line != "data: [DONE]"
    payload = json.loads(line[6:])
    assert payload["error"]["message"] == message
    assert all(ln.strip() != "data: [DONE]" for ln in raw.decode().splitlines())
    if "[DONE]" not in message:
        assert b"[DONE]" not in raw


@pytest.mark.parametrize("message", ["upstream broke", "[DONE]"])
def test_anthropic_stream_error_event(message: str) -> None:
    raw = stream_error_event(True, message)
    events = _events(raw)
    assert len(events) == 1
    assert events[0][0] == "event: error"
    payload = json.loads(events[0][1].removeprefix("data: "))
    assert payload["type"] == "error" and payload["error"]["message"] == message
    assert all(ln.strip() != "data: [DONE]" for ln in raw.decode().splitlines())
    if "[DONE]" not in message:
        assert b"[DONE]" not in raw


@pytest.mark.parametrize("anthropic", [False, True])
def test_stream_error_event_marks_reply_failed(anthropic: bool) -> None:
    asm = ReplyAssembler(anthropic_messages if anthropic else openai_chat, streaming=True)
    asm.feed(stream_error_event(anthropic, "broken"))
    assert asm.failed is True
    assert asm.text() is None
