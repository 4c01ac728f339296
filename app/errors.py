"""Error bodies in the caller's API dialect (OpenAI, Anthropic or Gemini)."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from enum import StrEnum

import orjson
from starlette.responses import Response
from starlette.types import Send


class ErrorShape(StrEnum):
    """Which API's error body a caller understands."""

    OPENAI = "openai"
    ANTHROPIC = "anthropic"
    GEMINI = "gemini"


_ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    502: "api_error",
    503: "overloaded_error",
    504: "timeout_error",
}
# google.rpc status names for HTTP statuses, as the Gemini API (and LiteLLM's Gemini routes) send them.
_GOOGLE_STATUS = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    409: "ABORTED",
    413: "INVALID_ARGUMENT",
    429: "RESOURCE_EXHAUSTED",
    499: "CANCELLED",
    501: "UNIMPLEMENTED",
    502: "UNAVAILABLE",
    503: "UNAVAILABLE",
    504: "DEADLINE_EXCEEDED",
}
# The Gemini API's own paths: everything under /v1beta/, and `/v1/models/{model}:{method}`.
_GEMINI_PATH = re.compile(r"/v1beta/.*|/v1/models/[^/]+:\w+")


def is_gemini(path: str) -> bool:
    """True for a path of the Gemini API (where `x-goog-api-key` and `?key=` carry the key)."""
    return _GEMINI_PATH.fullmatch(path) is not None


def error_shape(path: str, headers: Mapping[str, str]) -> ErrorShape:
    """The error dialect of a caller, from its path (and Anthropic's version header)."""
    if path.startswith("/v1/messages") or "anthropic-version" in headers:
        return ErrorShape.ANTHROPIC
    return ErrorShape.GEMINI if is_gemini(path) else ErrorShape.OPENAI


TOO_LARGE = "request body is larger than the configured limit"


def error_body(shape: ErrorShape, status: int, message: str, code: str | None = None) -> bytes:
    """The JSON error body for `status` in the caller's dialect."""
    if shape is ErrorShape.GEMINI:
        name = _GOOGLE_STATUS.get(status, "INTERNAL" if status >= 500 else "FAILED_PRECONDITION")
        return orjson.dumps({"error": {"code": status, "message": message, "status": name}})
    kind = _ERROR_TYPES.get(status, "api_error" if status >= 500 else "invalid_request_error")
    if shape is ErrorShape.ANTHROPIC:
        return orjson.dumps({"type": "error", "error": {"type": kind, "message": message}})
    return orjson.dumps({"error": {"message": message, "type": kind, "code": code or kind}})


def error_response(
    shape: ErrorShape,
    status: int,
    message: str,
    code: str | None = None,
    headers: Mapping[str, str] | None = None,
) -> Response:
    """A complete error response in the caller's dialect."""
    return Response(
        error_body(shape, status, message, code),
        status_code=status,
        media_type="application/json",
        headers=dict(headers or {}),
    )


def stream_error_event(shape: ErrorShape, message: str) -> bytes:
    """The SSE event that ends a stream which broke midway (never `[DONE]`)."""
    if shape is ErrorShape.ANTHROPIC:
        return b"event: error\ndata: " + error_body(shape, 502, message) + b"\n\n"
    return b"data: " + error_body(shape, 502, message, "upstream_stream_error") + b"\n\n"


async def send_error(
    send: Send, shape: ErrorShape, status: int, message: str, headers: Iterable[tuple[bytes, bytes]] = ()
) -> None:
    """Send a whole error response in the caller's dialect straight over ASGI."""
    body = error_body(shape, status, message)
    head = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()), *headers]
    await send({"type": "http.response.start", "status": status, "headers": head})
    await send({"type": "http.response.body", "body": body})
