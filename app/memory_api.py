"""The memory REST API: list, search, add, get, delete, forget, export, import."""

from __future__ import annotations

import asyncio
import functools
import re
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response

from app import imports, ranking
from app.bodies import TooDeep, parse_json
from app.context import ctx
from app.errors import TOO_LARGE, error_response, error_shape
from app.proxy import CLIENT_GONE, BodyTooLarge, read_body
from app.records import (
    EARLIEST,
    LATEST,
    MAX_LIMIT,
    MEMORY_ID,
    RecordError,
    RecordTooLarge,
    memory_json,
    parse_numbered,
    parse_record,
    split_lines,
)
from app.request_state import state_of
from app.scopes import ForbiddenScope, InvalidScope, resolve_scope, validate_scope
from app.store import InvalidCursor, Memory, MemoryStore, NewMemory

CARDINAL = re.compile(r"[0-9]{1,7}")  # always fullmatch
CURSOR = re.compile(r"-?[0-9]{1,20}(\.[0-9]{1,20})?(e[+-]?[0-9]{1,3})?_[0-9]{1,18}")  # always fullmatch


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
    except ForbiddenScope as exc:
        raise ApiError(403, str(exc)) from None
    if not principal.may_use(scope):
        raise ApiError(403, f"this key may not use scope {scope!r}")
    state.scope = scope  # for the access log
    return scope


def _limit(request: Request, default: int) -> int:
    raw = request.query_params.get("limit")
    if raw is None:
        return default
    # ASCII only: str.isdigit() and int() also take other scripts' digits and superscripts ("²").
    if not (CARDINAL.fullmatch(raw) and 1 <= int(raw) <= MAX_LIMIT):
        raise ApiError(400, f"limit must be a whole number from 1 to {MAX_LIMIT}")
    return int(raw)


def _cursor(request: Request) -> str | None:
    """The `cursor` parameter, if it has the shape `list` issues (a time and a row number the stores can read)."""
    raw = request.query_params.get("cursor")
    if raw and not (CURSOR.fullmatch(raw) and EARLIEST <= float(raw.partition("_")[0]) <= LATEST):
        raise InvalidCursor("cursor is not one this server issued")
    return raw


def _memory_id(request: Request) -> str:
    """The path's memory id; one that no memory can have is simply not found."""
    memory_id: str = request.path_params["memory_id"]
    if not MEMORY_ID.fullmatch(memory_id):
        raise ApiError(404, "no such memory in this scope")
    return memory_id


async def _body(request: Request, limit: int | None = None) -> bytes:
    max_body = ctx(request).settings.limits.max_body_bytes
    try:
        return await read_body(request, min(max_body, limit) if limit is not None else max_body)
    except BodyTooLarge:
        raise ApiError(413, TOO_LARGE) from None


def handle_api_errors(func: Callable[[Request], Awaitable[Response]]) -> Callable[[Request], Awaitable[Response]]:
    """Turn ApiError and invalid input into error responses in the caller's dialect."""

    @functools.wraps(func)
    async def wrapper(request: Request) -> Response:
        shape = error_shape(request.scope["path"], request.headers)
        try:
            return await func(request)
        except ApiError as exc:
            return error_response(shape, exc.status, str(exc))
        except RecordTooLarge as exc:
            return error_response(shape, 413, str(exc))
        except (RecordError, InvalidCursor) as exc:  # the caller's input; anything else is a 500
            return error_response(shape, 400, str(exc))
        except ClientDisconnect:
            return Response(status_code=CLIENT_GONE)

    return wrapper


@handle_api_errors
async def list_memories(request: Request) -> Response:
    """Newest first, with cursor pagination."""
    scope = _scope(request, request.query_params.get("user_id"))
    store = _store(request)
    items, cursor = await store.list(scope, _limit(request, 50), _cursor(request))
    return _json({"data": [memory_json(m) for m in items], "next_cursor": cursor})


@handle_api_errors
async def search_memories(request: Request) -> Response:
    """Best matches first, each with a `score`."""
    scope = _scope(request, request.query_params.get("user_id"))
    q = request.query_params.get("q", "")
    if not q.strip():
        raise ApiError(400, "q is required")
    store = _store(request)
    found = await ranking.search(store, scope, q, _limit(request, 10))
    return _json({"data": [{**memory_json(m), "score": score} for m, score in found]})


@handle_api_errors
async def add_memory(request: Request) -> Response:
    """Add one memory; 201 with the stored memory (or the existing one for a duplicate)."""
    try:
        item = parse_json(await _body(request))
    except orjson.JSONDecodeError as exc:
        raise ApiError(400, f"request body is not valid JSON: {exc}") from None
    except TooDeep as exc:
        raise ApiError(400, f"request body refused: {exc}") from None
    stored, is_new = await store_memory(request, item)
    return _json(memory_json(stored), 201 if is_new else 200)


async def store_memory(request: Request, item: Any) -> tuple[Memory, bool]:
    """Check and store one memory object for the caller: (the stored memory or its duplicate, whether it is new)."""
    max_chars = ctx(request).settings.memory.max_memory_chars
    new = parse_record(item, "body", "note", lambda uid: _scope(request, uid), max_chars)
    store = _store(request)
    redacted = await ctx(request).redactor.memories([new])
    if not redacted:
        raise ApiError(500, "the memory could not be checked for credentials, so it was not stored")
    new = redacted[0]
    for _ in range(2):  # a second try when the duplicate was deleted between the write and the look-up
        added = await store.add_many([new])
        if added:
            return added[0], True
        existing = await store.find_duplicate(new)
        if existing is not None:
            return existing, False
        if new.id is not None:  # not a duplicate: its `id` is taken by another memory (of any scope)
            raise ApiError(409, f"a memory with id {new.id!r} already exists")
    raise ApiError(409, "the memory changed while it was written; try again")


@handle_api_errors
async def export_memories(request: Request) -> Response:
    """JSON Lines, oldest first, in the shape import takes."""
    scope = _scope(request, request.query_params.get("user_id"))
    store = _store(request)
    body = b"".join([orjson.dumps(memory_json(m)) + b"\n" async for m in store.export(scope)])
    return Response(body, media_type="application/x-ndjson")


@handle_api_errors
async def import_memories(request: Request) -> Response:
    """JSON Lines in, all or nothing: every line is checked before any is written, then written in batches.

    Parsing runs off the event loop; each batch is its own small transaction, so other scopes'
    writes interleave with a large import instead of waiting for all of it (app.imports).
    """
    limits = ctx(request).settings.memory
    data = await _body(request, limits.max_import_bytes)
    lines = await asyncio.to_thread(split_lines, data, limits.max_import_lines)
    del data  # the lines are copies: do not hold the body twice for the whole import
    parts = imports.batches(lines)

    def parse(batch: list[tuple[int, bytes]]) -> list[NewMemory]:
        return parse_numbered(batch, lambda uid: _scope(request, uid), limits.max_memory_chars)

    # The parsed records of a large import are never all in memory at once: checked, then parsed again per batch.
    await imports.check_all(parts, parse)
    added = await imports.write_all(_store(request), parts, parse, prepare=ctx(request).redactor.memories)
    return _json({"imported": added, "skipped": len(lines) - added})


async def _scope_of_memory(request: Request, store: MemoryStore, memory_id: str) -> str:
    """The scope to look for a memory id in: `user_id`, else the memory's own if the caller may see it."""
    # Admin and anonymous callers may see every scope, so an id alone finds the memory; a pinned
    # key (or a memory out of reach) falls back to the caller's own scope, where it is a 404.
    explicit = request.query_params.get("user_id")
    principal = state_of(request).principal
    assert principal is not None
    if explicit is None and principal.user_id is None:
        found = await store.scope_of(memory_id)
        if found is not None and principal.may_use(found):
            return _scope(request, found)
    return _scope(request, explicit)


@handle_api_errors
async def get_memory(request: Request) -> Response:
    """One memory of a scope the caller may see; 404 if absent or out of reach."""
    store = _store(request)
    memory_id = _memory_id(request)
    found = await store.get(await _scope_of_memory(request, store, memory_id), memory_id)
    if found is None:
        raise ApiError(404, "no such memory in this scope")
    return _json(memory_json(found))


@handle_api_errors
async def delete_memory(request: Request) -> Response:
    """204, or 404 if absent or out of reach."""
    if not await delete_one(request, _memory_id(request)):
        raise ApiError(404, "no such memory in this scope")
    return Response(status_code=204)


async def delete_one(request: Request, memory_id: str) -> bool:
    """Delete one memory the caller may see; False if absent or out of reach."""
    if not MEMORY_ID.fullmatch(memory_id):
        return False
    store = _store(request)
    return await store.delete(await _scope_of_memory(request, store, memory_id), memory_id)


@handle_api_errors
async def forget_scope(request: Request) -> Response:
    """Forget a whole scope: every row and index entry."""
    explicit = request.query_params.get("user_id")
    if not explicit:
        raise ApiError(400, "user_id is required to forget a scope")
    scope = _scope(request, explicit)
    store = _store(request)
    deleted = await store.forget(scope)
    return _json({"deleted": deleted})
