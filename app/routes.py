"""Health, routing info and the catch-all pass-through to LiteLLM."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from app.bodies import clean_json_body
from app.context import ctx
from app.errors import TOO_LARGE, error_response, is_anthropic
from app.headers import upstream_request_headers
from app.proxy import BodyTooLarge, ProxyResponse, read_body_or_refusal, upstream_target
from app.scopes import InvalidScope, resolve_scope


async def _health_report(request: Request) -> tuple[bool, dict[str, Any]]:
    c = ctx(request)
    litellm = await c.upstream.probe()
    store: dict[str, Any] = {"status": "ok"}
    if not c.settings.memory.enabled:
        store = {"status": "disabled"}
    elif c.store is None:
        store = {"status": "unavailable"}
    else:
        try:
            await c.store.ping()
        except Exception as exc:
            store = {"status": "error", "error": type(exc).__name__}
    if c.writer is not None:
        store.update(
            pending_writes=c.writer.pending,
            writes_in_flight=c.writer.in_flight,
            writer_idle=c.writer.idle,
            written=c.writer.written,
            truncated=c.writer.truncated,
            write_failures=c.writer.failures,
            dropped=c.writer.dropped,
        )
        if c.writer.last_error:
            store["status"] = "error"
            store["error"] = c.writer.last_error
    store["memory_errors"] = c.counters.memory_errors
    ok = litellm["status"] == "reachable" and store["status"] in ("ok", "disabled")
    report = {"status": "healthy" if ok else "degraded", "litellm": litellm, "memory_store": store}
    report["requests_shed"] = c.counters.overloaded
    return ok, report


async def health(request: Request) -> Response:
    """GET /health: always 200; `degraded` when LiteLLM or the store is down."""
    _, report = await _health_report(request)
    return JSONResponse(report)


async def readiness(request: Request) -> Response:
    """GET /health/readiness: 503 unless LiteLLM and the store both work."""
    ok, report = await _health_report(request)
    return JSONResponse(report, status_code=200 if ok else 503)


async def routing_info(request: Request) -> Response:
    """GET /memory-routing/info: how this caller's headers resolve to a scope."""
    c = ctx(request)
    try:
        d = resolve_scope(c.settings.scopes, request.headers, request.scope["state"]["principal"])
    except InvalidScope as exc:
        return error_response(is_anthropic(request.scope["path"], request.headers), 400, str(exc))
    return JSONResponse(
        {
            "user_id": d.user_id,
            "matched_pattern": d.matched_pattern,
            "custom_header_present": d.custom_header_present,
            "is_default": d.is_default,
        }
    )


# What a key pinned to one scope may reach through the master key: inference, not LiteLLM's
# management API (/key, /user, /team, /model/new, /config, /spend, …), which is for admin keys.
INFERENCE_PATHS = tuple(
    f"{v}{p}"
    for v in ("", "/v1")
    for p in ("/models", "/embeddings", "/completions", "/responses", "/moderations", "/audio", "/images", "/rerank")
) + ("/v1/messages", "/health/liveliness")


def is_inference_path(path: str) -> bool:
    """True for the OpenAI/Anthropic inference endpoints (and their sub-paths)."""
    return any(path == p or path.startswith(p + "/") for p in INFERENCE_PATHS)


async def forward(request: Request) -> Response:
    """Every other method and path: streamed to LiteLLM and back unchanged."""
    c = ctx(request)
    anthropic = is_anthropic(request.scope["path"], request.headers)
    principal = request.scope["state"]["principal"]
    if principal.user_id is not None and not is_inference_path(request.scope["path"]):
        return error_response(anthropic, 403, "this key may only use inference endpoints; ask for an admin key")
    limit = c.settings.limits.max_body_bytes
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        return error_response(anthropic, 413, TOO_LARGE)
    exceeded = False

    async def body():
        nonlocal exceeded
        size = 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                exceeded = True
                raise BodyTooLarge
            if chunk:
                yield chunk

    has_body = request.method not in ("GET", "HEAD", "OPTIONS", "DELETE") or declared not in (None, "0")
    path = upstream_target(request.scope)
    headers = upstream_request_headers(request.headers.items(), c.settings.master_key, c.settings.scopes.custom_header)
    payload: bytes | AsyncIterator[bytes] = body() if has_body else b""
    if has_body and "json" in request.headers.get("content-type", ""):
        # JSON bodies (embeddings, completions, responses, …) can carry provider-routing fields
        # too; other bodies (file uploads) stream through untouched.
        raw = await read_body_or_refusal(request, limit, anthropic)
        if isinstance(raw, Response):
            return raw
        payload = clean_json_body(raw)
    return ProxyResponse(
        c.upstream, request.method, path, headers, payload, anthropic, body_size_exceeded=lambda: exceeded
    )
