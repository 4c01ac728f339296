"""app/errors.py: error bodies in the caller's dialect."""

from __future__ import annotations

import json

import pytest

from app.dialects import anthropic_messages, gemini, openai_chat
from app.errors import ErrorShape, error_body, error_response, error_shape, stream_error_event
from app.sse import ReplyAssembler

STATUSES = [400, 401, 403, 404, 413, 429, 500, 502, 503, 504]


@pytest.mark.parametrize("status", STATUSES)
def test_openai_shape(status: int) -> None:
    body = json.loads(error_body(ErrorShape.OPENAI, status, "something broke", None))
    assert set(body) == {"error"}
    assert set(body["error"]) == {"message", "type", "code"}
    assert body["error"]["message"] == "something broke"
    assert isinstance(body["error"]["type"], str) and body["error"]["type"]
    assert body["error"]["code"]


@pytest.mark.parametrize("status", STATUSES)
def test_anthropic_shape(status: int) -> None:
    body = json.loads(error_body(ErrorShape.ANTHROPIC, status, "something broke"))
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
@pytest.mark.parametrize("shape", [ErrorShape.OPENAI, ErrorShape.ANTHROPIC])
def test_error_types(status: int, kind: str, shape: ErrorShape) -> None:
    body = json.loads(error_body(shape, status, "m"))
    assert body["error"]["type"] == kind


def test_unknown_statuses_fall_back_sensibly() -> None:
    assert json.loads(error_body(ErrorShape.OPENAI, 418, "m"))["error"]["type"] == "invalid_request_error"
    assert json.loads(error_body(ErrorShape.ANTHROPIC, 599, "m"))["error"]["type"] == "api_error"


def test_openai_code_explicit() -> None:
    assert json.loads(error_body(ErrorShape.OPENAI, 400, "m", "invalid_scope"))["error"]["code"] == "invalid_scope"


def test_message_is_json_escaped() -> None:
    msg = 'quote " backslash \\ newline \n <tag>'
    for shape in ErrorShape:
        assert json.loads(error_body(shape, 400, msg))["error"]["message"] == msg


def test_error_response() -> None:
    r = error_response(ErrorShape.ANTHROPIC, 403, "scope not allowed", headers={"x-memory-user-id": "a"})
    assert r.status_code == 403
    assert r.headers["content-type"].startswith("application/json")
    assert r.headers["x-memory-user-id"] == "a"
    assert json.loads(r.body)["error"]["type"] == "permission_error"


@pytest.mark.parametrize(
    ("path", "headers", "expected"),
    [
        ("/v1/messages", {}, ErrorShape.ANTHROPIC),
        ("/v1/messages/count_tokens", {}, ErrorShape.ANTHROPIC),
        ("/v1/chat/completions", {"anthropic-version": "2023-06-01"}, ErrorShape.ANTHROPIC),
        ("/v1/chat/completions", {}, ErrorShape.OPENAI),
        ("/chat/completions", {"authorization": "Bearer x"}, ErrorShape.OPENAI),
        ("/v1/models", {}, ErrorShape.OPENAI),
        ("/v1/models/gpt-4o", {}, ErrorShape.OPENAI),
        ("/v1/memories", {}, ErrorShape.OPENAI),
        ("/v1beta/models/gemini-2.5-pro:streamGenerateContent", {}, ErrorShape.GEMINI),
        ("/v1beta/models/gemini-2.5-pro:countTokens", {}, ErrorShape.GEMINI),
        ("/v1beta/models", {}, ErrorShape.GEMINI),
        ("/v1/models/gemini-2.5-pro:generateContent", {}, ErrorShape.GEMINI),
    ],
)
def test_error_shape(path: str, headers: dict[str, str], expected: ErrorShape) -> None:
    assert error_shape(path, headers) is expected


@pytest.mark.parametrize(
    ("status", "name"),
    [
        (400, "INVALID_ARGUMENT"),
        (401, "UNAUTHENTICATED"),
        (403, "PERMISSION_DENIED"),
        (404, "NOT_FOUND"),
        (413, "INVALID_ARGUMENT"),
        (429, "RESOURCE_EXHAUSTED"),
        (500, "INTERNAL"),
        (502, "UNAVAILABLE"),
        (503, "UNAVAILABLE"),
        (504, "DEADLINE_EXCEEDED"),
        (405, "FAILED_PRECONDITION"),
    ],
)
def test_gemini_shape(status: int, name: str) -> None:
    body = json.loads(error_body(ErrorShape.GEMINI, status, "something broke"))
    assert body == {"error": {"code": status, "message": "something broke", "status": name}}


def _events(raw: bytes) -> list[list[str]]:
    text = raw.decode()
    assert text.endswith("\n\n")
    return [e.split("\n") for e in text.strip("\n").split("\n\n")]


@pytest.mark.parametrize("message", ["upstream broke", "[DONE]", "data: [DONE]\n\n"])
def test_openai_stream_error_event(message: str) -> None:
    raw = stream_error_event(ErrorShape.OPENAI, message)
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
    raw = stream_error_event(ErrorShape.ANTHROPIC, message)
    events = _events(raw)
    assert len(events) == 1
    assert events[0][0] == "event: error"
    payload = json.loads(events[0][1].removeprefix("data: "))
    assert payload["type"] == "error" and payload["error"]["message"] == message
    assert all(ln.strip() != "data: [DONE]" for ln in raw.decode().splitlines())
    if "[DONE]" not in message:
        assert b"[DONE]" not in raw


@pytest.mark.parametrize("dialect", [openai_chat, anthropic_messages, gemini])
def test_stream_error_event_marks_reply_failed(dialect) -> None:  # type: ignore[no-untyped-def]
    asm = ReplyAssembler(dialect, streaming=True)
    asm.feed(b'data: {"candidates": [{"content": {"parts": [{"text": "half a "}]}}]}\n\n')
    asm.feed(stream_error_event(dialect.error_shape, "broken"))
    assert asm.failed is True
    assert asm.text() is None
