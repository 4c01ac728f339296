"""The memory REST API: list, search, add, get, delete, forget, export, import."""

from __future__ import annotations

from typing import Any

import orjson
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response

from app.context import ctx
from app.errors import TOO_LARGE, error_response
from app.proxy import CLIENT_GONE, BodyTooLarge, read_body
from app.records import MAX_LIMIT, RecordError, parse_lines, parse_record
from app.request_state import state_of
from app.scopes import InvalidScope, resolve_scope, validate_scope
from app.store import MemoryStore


class ApiError(Exception):
    """An error answer of the memory API."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def _json(data: Any, status: int = 200) -> Response:
    return Response(orjson.dumps(data), status_code=status, media_type="application/json")


def _store(request: Request) -> MemoryStore:
    store = ctx(request).store
    if store is None:
        raise ApiError(503, "the memory store is unavailable")
    return store


def _scope(request: Request, explicit: str | None) -> str:
    """The scope a call acts on: explicit `user_id` if allowed, else the caller's own."""
    state = state_of(request)
    principal = state.principal
    assert principal is not None
    try:
        if explicit is None:
            scope = resolve_scope(ctx(request).settings.scopes, request.headers, principal).user_id
        else:
            scope = validate_scope(explicit)
    except InvalidScope as exc:
        raise ApiError(400, str(exc)) from None
    if not principal.may_use(scope):
        raise ApiError(403, f"this key may not use scope {scope!r}")
    state.scope = scope  # for the access log
    return scope


def _limit(request: Request, default: int) -> int:
    raw = request.query_params.get("limit")
    if raw is None:
        return default
    if not raw.isdigit() or not 1 <= int(raw) <= MAX_LIMIT:
        raise ApiError(400, f"limit must be a whole number from 1 to {MAX_LIMIT}")
    return int(raw)


async def _body(request: Request) -> bytes:
    try:
        return await read_body(request, ctx(request).settings.limits.max_body_bytes)
    except BodyTooLarge:
        raise ApiError(413, TOO_LARGE) from None


def handle_api_errors(func):  # type: ignore[no-untyped-def]
    """Turn ApiError and bad cursors into OpenAI-shaped error responses."""
    import functools

    @functools.wraps(func)
    async def wrapper(request: Request) -> Response:
        try:
            return await func(request)
        except ApiError as exc:
            return error_response(False, exc.status, str(exc))
        except (RecordError, ValueError) as exc:
            return error_response(False, 400, str(exc))
        except ClientDisconnect:
            return Response(status_code=CLIENT_GONE)

    return wrapper


@handle_api_errors
async def list_memories(request: Request) -> Response:
    """Newest first, with cursor pagination."""
    scope = _scope(request, request.query_params.get("user_id"))
    store = _store(request)
    items, cursor = await store.call(store.list, scope, _limit(request, 50), request.query_params.get("cursor"))
    return _json({"data": [m.to_json() for m in items], "next_cursor": cursor})


@handle_api_errors
async def search_memories(request: Request) -> Response:
    """Best matches first, each with a `score`."""
    scope = _scope(request, request.query_params.get("user_id"))
    q = request.query_params.get("q", "")
    if not q.strip():
        raise ApiError(400, "q is required")
    store = _store(request)
    found = await store.call(store.search, scope, q, _limit(request, 10))
    return _json({"data": [{**m.to_json(), "score": score} for m, score in found]})


@handle_api_errors
async def add_memory(request: Request) -> Response:
    """Add one memory; 201 with the stored memory (or the existing one for a duplicate)."""
    try:
        item = orjson.loads(await _body(request))
    except orjson.JSONDecodeError as exc:
        raise ApiError(400, f"request body is not valid JSON: {exc}") from None
    new = parse_record(item, "body", "note", lambda uid: _scope(request, uid))
    store = _store(request)
    added = await store.call(store.add_many, [new])
    if added:
        return _json(added[0].to_json(), 201)
    existing = await store.call(store.find_duplicate, new)
    return _json(existing.to_json() if existing else None, 200)


@handle_api_errors
async def export_memories(request: Request) -> Response:
    """JSON Lines, oldest first, in the shape import takes."""
    scope = _scope(request, request.query_params.get("user_id"))
    store = _store(request)
    items = await store.call(lambda: list(store.export(scope)))
    body = b"".join(orjson.dumps(m.to_json()) + b"\n" for m in items)
    return Response(body, media_type="application/x-ndjson")


@handle_api_errors
async def import_memories(request: Request) -> Response:
    """JSON Lines in; every line is checked before any is written."""
    items = parse_lines(await _body(request), lambda uid: _scope(request, uid))
    store = _store(request)
    added = await store.call(store.add_many, items)
    return _json({"imported": len(added), "skipped": len(items) - len(added)})


@handle_api_errors
async def get_memory(request: Request) -> Response:
    """One memory of the caller's scope; 404 if absent or another scope's."""
    scope = _scope(request, request.query_params.get("user_id"))
    store = _store(request)
    found = await store.call(store.get, scope, request.path_params["memory_id"])
    if found is None:
        raise ApiError(404, "no such memory in this scope")
    return _json(found.to_json())


@handle_api_errors
async def delete_memory(request: Request) -> Response:
    """204, or 404 if absent or another scope's."""
    scope = _scope(request, request.query_params.get("user_id"))
    store = _store(request)
    if not await store.call(store.delete, scope, request.path_params["memory_id"]):
        raise ApiError(404, "no such memory in this scope")
    return Response(status_code=204)


@handle_api_errors
async def forget_scope(request: Request) -> Response:
    """Forget a whole scope: every row and index entry."""
    explicit = request.query_params.get("user_id")
    if not explicit:
        raise ApiError(400, "user_id is required to forget a scope")
    scope = _scope(request, explicit)
    store = _store(request)
    deleted = await store.call(store.forget, scope)
    return _json({"deleted": deleted})
