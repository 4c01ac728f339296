"""The chat endpoints of every dialect: scope, model routing, recall and capture around one upstream call.

The dialect module (app/dialects/) knows the wire format; this module knows none.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any, TypeVar

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp

from app import dialects, logsafe, memory, objects, ranking, relevance, textindex
from app.bodies import JSON, TooDeep, controls_allowed, is_json_type, parse_json, strip_routing_fields
from app.context import Context, ctx
from app.dialects import Dialect, openai_responses
from app.errors import error_response
from app.headers import upstream_request_headers, with_content_type
from app.proxy import ProxyResponse, read_body_or_refusal, upstream_target
from app.request_state import state_of
from app.scopes import ForbiddenScope, InvalidScope, resolve_scope
from app.sse import ReplyAssembler
from app.store import NOTHING_HELD, NewMemory

log = logsafe.logger("memory_proxy.chat")
T = TypeVar("T")
RECALL_TIMEOUT = 2.0
# Bodies above this size are parsed, scanned and re-encoded in a worker thread: at 32 MB those
# steps take long enough to hold up every other request on the event loop.
OFFLOAD_BYTES = 256 * 1024


async def _cpu(size: int, fn: Callable[..., T], *args: Any) -> T:
    """fn(*args), in a worker thread when the body is `size` bytes and that is large."""
    return await asyncio.to_thread(fn, *args) if size > OFFLOAD_BYTES else fn(*args)


def _query(dialect: Dialect, body: dict[str, Any], strategy: str) -> str:
    return memory.query_text(dialect.turns(body), strategy)


def _select(
    dialect: Dialect, found: list[memory.Recalled], shares: dict[str, float], body: dict[str, Any], c: Context
) -> list[memory.Recalled]:
    settings = c.settings.memory.retrieval
    wanted = relevance.relevant(found, shares, settings.min_relevance)
    return memory.select(wanted, dialect.present_text(body), settings)


async def _search(c: Context, scope: str, query: str, limit: int) -> tuple[list[memory.Recalled], dict[str, float]]:
    """The scope's best matches for `query`, and each query word's share of its information there."""
    assert c.store is not None
    read = await c.store.recall(scope, query, max(limit, ranking.POOL))
    found = ranking.rerank(read.found, query)[:limit]
    if not found:
        return [], {}
    recalled = [
        memory.Recalled(m.content, m.role, m.created_at, m.id, read.held.get(m.id, NOTHING_HELD), ranking.speaker(m))
        for m, _ in found
    ]
    return recalled, relevance.weights(textindex.question_stems(query), read.docs, read.size, relevance.names(query))


def _new_turn(dialect: Dialect, body: dict[str, Any]) -> str | None:
    turn = memory.new_user_turn(dialect.turns(body))
    return turn.text if turn else None


async def _recall(c: Context, scope: str, body: dict[str, Any], dialect: Dialect, size: int) -> tuple[str, ...]:
    """The ids of the memories injected into `body` (none when nothing fits)."""
    settings = c.settings.memory.retrieval
    query = await _cpu(size, _query, dialect, body, settings.query_strategy)
    if not query or c.store is None:
        return ()
    # Twice the notes that can go in are weighed: on the dev set the gate never reached past the
    # tenth (four times as many gave the same evidence in prompt), and weighing is the costliest
    # step of recall after the store's read.
    # wait_for gives up on a slow search (the thread finishes on its own; its result is dropped).
    found, shares = await asyncio.wait_for(_search(c, scope, query, settings.max_results * 2), RECALL_TIMEOUT)
    chosen = await _cpu(size, _select, dialect, found, shares, body, c)
    if not chosen:
        return ()
    placed = await _cpu(size, dialect.inject, body, memory.render_block(chosen), settings.injection)
    return tuple(m.id for m in chosen) if placed else ()


async def chat(request: Request) -> ASGIApp:
    """POST to a chat endpoint of any dialect (chat completions, messages, responses, Gemini)."""
    c = ctx(request)
    state = state_of(request)
    assert state.principal is not None and state.route is not None  # the Guard authenticated every CLIENT route
    dialect = dialects.for_path(state.route.path)
    assert dialect is not None, "routed here only for the dialects' paths"
    shape = dialect.error_shape
    raw = await read_body_or_refusal(request, c.settings.limits.max_body_bytes, shape)
    if isinstance(raw, Response):
        return raw
    try:
        body = await _cpu(len(raw), parse_json, raw)
    except orjson.JSONDecodeError as exc:
        return error_response(shape, 400, f"request body is not valid JSON: {exc}{_label_hint(request)}")
    except TooDeep as exc:
        return error_response(shape, 400, f"request body refused: {exc}")
    if not isinstance(body, dict):
        return error_response(shape, 400, "request body must be a JSON object")
    workdir = await _cpu(len(raw), dialect.working_directory, body)
    try:
        decision = resolve_scope(c.settings.scopes, request.headers, state.principal, workdir)
        want_inject, want_capture = memory.parse_mode(request.headers.get("x-memory-mode"))
    except (InvalidScope, memory.BadMode) as exc:
        return error_response(shape, 400, str(exc))
    except ForbiddenScope as exc:
        return error_response(shape, 403, str(exc))
    if decision.ignored_directory:
        c.counters.ignored_directories += 1
    if decision.project is not None and decision.project.directory is not None and c.oversight is not None:
        c.oversight.saw_project(decision.project.scope, decision.project.directory)
    scope = decision.user_id
    state.scope, state.client = scope, decision.matched_pattern
    if (refusal := await objects.refused_reference(c, request, body, raw)) is not None:
        return refusal
    if c.oversight is not None:  # the scope's stored mode: a request may narrow it, never widen it
        scope_inject, scope_capture = memory.parse_mode(c.oversight.mode(scope))
        want_inject, want_capture = want_inject and scope_inject, want_capture and scope_capture
    allowed = controls_allowed(state.principal, c.settings.limits.admin_litellm_controls)
    # The body is JSON whatever the client's label said (`curl -d` says a form): LiteLLM must read it so.
    headers = with_content_type(
        upstream_request_headers(
            request.headers.items(), c.settings.master_key, c.settings.scopes.custom_header, litellm_allowed=allowed
        ),
        JSON,
    )
    changed = strip_routing_fields(body, allowed)
    model = dialect.model(body, request.path_params)
    if isinstance(model, str):
        model, headers, renamed = _route_model(c, model, headers, scope)
        if renamed and dialect.set_model(body, model):
            changed = True
        state.model = model
    target = upstream_target(request.scope)
    mem = c.settings.memory
    active = mem.enabled and c.store is not None and memory_for(model, c) and not dialect.utility_request(body)
    inject = active and want_inject
    capture = active and want_capture and mem.capture_enabled
    extra = [("x-memory-user-id", scope)]
    if mem.enabled and c.store is None and (want_inject or want_capture):
        c.counters.memory_errors += 1
        extra.append(("x-memory-error", "memory store unavailable"))
    user_turn = await _cpu(len(raw), _new_turn, dialect, body) if capture else None
    if inject:
        started = time.perf_counter()
        try:
            state.injected = await _recall(c, scope, body, dialect, len(raw))
            changed = changed or bool(state.injected)
        except Exception as exc:  # memory must never break a chat
            c.counters.memory_errors += 1
            reason = "recall timed out" if isinstance(exc, TimeoutError) else f"recall failed ({type(exc).__name__})"
            log.warning("scope %s: %s", scope, reason)
            extra.append(("x-memory-error", reason))
        state.recall_seconds = time.perf_counter() - started
    extra.append(("x-memory-injected", str(len(state.injected))))
    payload = await _cpu(len(raw), orjson.dumps, body) if changed else raw
    tap = on_complete = None
    if capture or c.settings.observability.usage_enabled:  # the usage log reads the reply's token counts
        assembler = state.reply = ReplyAssembler(dialect, dialect.streams(body, target), text=capture)
        tap = assembler.feed
    if capture:
        model_name = model if isinstance(model, str) else None

        def on_complete(status: int) -> None:
            if 200 <= status < 300:
                state.captured = _capture(c, scope, model_name, user_turn, assembler.text())

    recorder = None
    if dialect is openai_responses and c.store is not None:
        owner = objects.owner_of(request, state.principal, scope)
        recorder = objects.ResponseIds(c.store, owner, streaming=body.get("stream") is True)
    return ProxyResponse(
        c.upstream,
        "POST",
        dialect.upstream_target(target, model if isinstance(model, str) else None),
        headers,
        payload,
        shape,
        extra,
        tap,
        on_complete,
        reveal_internals=state.sees_internals,
        recorder=recorder,
    )


def _label_hint(request: Request) -> str:
    """For a body that is not JSON: what the client's `content-type` said, when it did not say JSON."""
    content_type = request.headers.get("content-type")
    if is_json_type(content_type):
        return ""
    said = f"says {content_type!r}" if content_type else "is missing"
    return f" (its content-type header {said}: send a JSON object, with content-type: application/json)"


def _route_model(
    c: Context, requested: str, headers: list[tuple[str, str]], scope: str
) -> tuple[str, list[tuple[str, str]], bool]:
    """Model compatibility: the config's name (True when it differs), `anthropic-beta` suffixes, Supermemory headers."""
    route = c.models.route(requested)
    renamed = route.model != requested
    if route.betas:
        existing = [v for n, v in headers if n.lower() == "anthropic-beta"]
        headers = [(n, v) for n, v in headers if n.lower() != "anthropic-beta"]
        headers.append(("anthropic-beta", ",".join([*existing, *route.betas])))
    if route.supermemory:
        headers = [(n, v) for n, v in headers if n.lower() not in ("x-sm-user-id", "x-supermemory-api-key")]
        headers.append(("x-sm-user-id", scope))
        if c.settings.supermemory_api_key:
            headers.append(("x-supermemory-api-key", c.settings.supermemory_api_key))
    return route.model, headers, renamed


def memory_for(model: Any, c: Context) -> bool:
    """Whether memory applies to this model under the config's model lists."""
    mem = c.settings.memory
    return memory.memory_applies(
        model if isinstance(model, str) else "", mem.enabled_for_models, mem.disabled_for_models
    )


def _capture(c: Context, scope: str, model: str | None, user_turn: str | None, reply: str | None) -> int:
    """Queue the turn and its reply for storing; how many memories were queued."""
    if reply is None or c.writer is None:  # a failed or cut stream is never stored as a reply
        return 0
    now = time.time()
    items = []
    if user_turn:
        items.append(NewMemory(scope, "user", user_turn, now, model))
    if reply.strip():
        items.append(NewMemory(scope, "assistant", reply.strip(), now + 0.001, model))
    c.writer.submit(items)
    return len(items)
