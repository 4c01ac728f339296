"""Health, routing info and the catch-all pass-through to LiteLLM."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.types import ASGIApp

from app.bodies import JSON, MULTIPART, TooDeep, clean_json_body, controls_allowed, media_type
from app.context import ctx
from app.errors import TOO_LARGE, error_response
from app.headers import upstream_request_headers, with_content_type
from app.proxy import BodyTooLarge, ProxyResponse, Recorder, read_body_or_refusal, upstream_target
from app.request_state import state_of
from app.scopes import ForbiddenScope, InvalidScope, resolve_scope


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
            secrets_redacted=c.redactor.redacted,
            redaction_failures=c.redactor.failures,
        )
        if c.writer.last_error:
            store["status"] = "error"
            store["error"] = c.writer.last_error
    store["memory_errors"] = c.counters.memory_errors
    store["ignored_directories"] = c.counters.ignored_directories
    if c.retention is not None:
        store.update(
            retention_deleted_for_age=c.retention.deleted_for_age,
            retention_deleted_for_count=c.retention.deleted_for_count,
            retention_failures=c.retention.failures,
        )
    ok = litellm["status"] == "reachable" and store["status"] in ("ok", "disabled")
    report = {
        "status": "healthy" if ok else "degraded",
        "litellm": litellm,
        "memory_store": store,
        "requests_shed": c.counters.overloaded,
    }
    return ok, report


def _visible(request: Request, report: dict[str, Any]) -> dict[str, Any]:
    """The whole report for operators; only the verdict for everyone else (no URLs, no counters)."""
    return report if state_of(request).sees_internals else {"status": report["status"]}


async def health(request: Request) -> Response:
    """GET /health: always 200; `degraded` when LiteLLM or the store is down."""
    _, report = await _health_report(request)
    return JSONResponse(_visible(request, report))


async def readiness(request: Request) -> Response:
    """GET /health/readiness: 503 unless LiteLLM and the store both work."""
    ok, report = await _health_report(request)
    return JSONResponse(_visible(request, report), status_code=200 if ok else 503)


async def liveness(request: Request) -> Response:
    """GET /health/liveliness (LiteLLM's name) and /health/liveness: this process answers."""
    return JSONResponse("I'm alive!")


async def not_found(request: Request) -> Response:
    """A path under one of our own prefixes that names nothing: 404, never LiteLLM's."""
    return error_response(state_of(request).error_shape, 404, f"no such endpoint: {request.scope['path']}")


async def routing_info(request: Request) -> Response:
    """GET /memory-routing/info[?directory=/path]: how this caller's headers (and a chat from that
    working directory) resolve to a scope."""
    c = ctx(request)
    state = state_of(request)
    assert state.principal is not None
    try:
        d = resolve_scope(c.settings.scopes, request.headers, state.principal, request.query_params.get("directory"))
    except InvalidScope as exc:
        return error_response(state.error_shape, 400, str(exc))
    except ForbiddenScope as exc:
        return error_response(state.error_shape, 403, str(exc))
    project = d.project
    return JSONResponse(
        {
            "user_id": d.user_id,
            "matched_pattern": d.matched_pattern,
            "custom_header_present": d.custom_header_present,
            "is_default": d.is_default,
            "projects_mode": c.settings.scopes.projects.mode,
            "owner": project.owner if project else None,
            "project": project.name if project else None,
            "directory": project.directory if project else None,
            "project_signal": project.signal if project else None,
            "mode": c.oversight.mode(d.user_id) if c.oversight is not None else "on",
        }
    )


async def forward(request: Request, recorder: Recorder | None = None) -> ASGIApp:
    """Every other method and path: streamed to LiteLLM and back unchanged (`recorder` reads the reply)."""
    c = ctx(request)
    state = state_of(request)
    shape = state.error_shape
    limit = c.settings.limits.max_body_bytes
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        return error_response(shape, 413, TOO_LARGE)
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
    allowed = controls_allowed(state.principal, c.settings.limits.admin_litellm_controls)
    headers = upstream_request_headers(
        request.headers.items(), c.settings.master_key, c.settings.scopes.custom_header, litellm_allowed=allowed
    )
    payload: bytes | AsyncIterator[bytes] = body() if has_body else b""
    content_type = request.headers.get("content-type")
    if has_body and media_type(content_type) != MULTIPART:
        # LiteLLM reads every body but a form as JSON, whatever its label, so each can carry
        # provider-routing fields; uploads (multipart) stream through untouched.
        raw = await read_body_or_refusal(request, limit, shape)
        if isinstance(raw, Response):
            return raw
        try:
            payload, relabel = clean_json_body(raw, content_type, allowed)
        except TooDeep as exc:
            return error_response(shape, 400, f"request body refused: {exc}")
        if relabel:
            headers = with_content_type(headers, JSON)
    return ProxyResponse(
        c.upstream,
        request.method,
        path,
        headers,
        payload,
        shape,
        body_size_exceeded=lambda: exceeded,
        reveal_internals=state.sees_internals,
        recorder=recorder,
    )
