"""Error bodies in the caller's API dialect (OpenAI or Anthropic)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import orjson
from starlette.responses import Response
from starlette.types import Send

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


def is_anthropic(path: str, headers: Mapping[str, str]) -> bool:
    """True when the caller speaks Anthropic's Messages dialect."""
    return path.startswith("/v1/messages") or "anthropic-version" in headers


TOO_LARGE = "request body is larger than the configured limit"


def error_body(anthropic: bool, status: int, message: str, code: str | None = None) -> bytes:
    """The JSON error body for `status` in the chosen dialect."""
    if anthropic:
        kind = _ERROR_TYPES.get(status, "api_error" if status >= 500 else "invalid_request_error")
        return orjson.dumps({"type": "error", "error": {"type": kind, "message": message}})
    kind = _ERROR_TYPES.get(status, "api_error" if status >= 500 else "invalid_request_error")
    return orjson.dumps({"error": {"message": message, "type": kind, "code": code or kind}})


def error_response(
    anthropic: bool,
    status: int,
    message: str,
    code: str | None = None,
    headers: Mapping[str, str] | None = None,
) -> Response:
    """A complete error response in the caller's dialect."""
    return Response(
        error_body(anthropic, status, message, code),
        status_code=status,
        media_type="application/json",
        headers=dict(headers or {}),
    )


def stream_error_event(anthropic: bool, message: str) -> bytes:
    """The SSE event that ends a stream which broke midway (never `[DONE]`)."""
    if anthropic:
        return b"event: error\ndata: " + error_body(True, 502, message) + b"\n\n"
    return b"data: " + error_body(False, 502, message, "upstream_stream_error") + b"\n\n"


async def send_error(
    send: Send, anthropic: bool, status: int, message: str, headers: Iterable[tuple[bytes, bytes]] = ()
) -> None:
    """Send a whole error response in the caller's dialect straight over ASGI."""
    body = error_body(anthropic, status, message)
    head = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()), *headers]
    await send({"type": "http.response.start", "status": status, "headers": head})
    await send({"type": "http.response.body", "body": body})
