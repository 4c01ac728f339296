"""The oversight API: GET /v1/usage, GET /v1/scopes, PATCH /v1/scopes/{user_id}, GET /metrics."""

from __future__ import annotations

from typing import Any, cast

import orjson
from prometheus_client import CONTENT_TYPE_LATEST
from starlette.requests import Request
from starlette.responses import Response

from app.auth import Principal
from app.bodies import TooDeep, parse_json
from app.context import ctx
from app.errors import ErrorShape, error_response
from app.memory_api import ApiError, _body, _json, _store, handle_api_errors
from app.oversight import Oversight
from app.projects import split_scope
from app.records import iso
from app.request_state import state_of
from app.retention import InvalidLimits, scope_limits
from app.scopes import InvalidScope, validate_scope
from app.store.usage import MODES, Mode, UsageFilter
from app.usage import GROUP_BYS, parse_when, summarise


def visible_scope(principal: Principal, asked: str | None) -> str | None:
    """The one scope a caller's figures are limited to: a pinned key's own; None (all) for operators."""
    if asked is not None:
        try:
            validate_scope(asked)
        except InvalidScope as exc:
            raise ApiError(400, str(exc)) from None
    if principal.user_id is None:
        return asked
    if asked is not None and not principal.may_use(asked):
        raise ApiError(403, f"this key may not use scope {asked!r}")
    return asked or principal.user_id


def _principal(request: Request) -> Principal:
    principal = state_of(request).principal
    assert principal is not None  # the Guard authenticated every CLIENT route
    return principal


def _oversight(request: Request) -> Oversight:
    oversight = ctx(request).oversight
    assert oversight is not None  # create_app always sets it
    return oversight


def _time(request: Request, name: str) -> float | None:
    raw = request.query_params.get(name)
    return None if raw is None else parse_when(raw, name)


def usage_filter(request: Request) -> UsageFilter:
    """The scope and time window a usage call asks for, limited to what the caller may see."""
    scope = visible_scope(_principal(request), request.query_params.get("user_id"))
    return UsageFilter(scope, _time(request, "since"), _time(request, "until"))


@handle_api_errors
async def usage(request: Request) -> Response:
    """GET /v1/usage: requests, errors, tokens, memory flow and latency per day, model or scope."""
    group_by = request.query_params.get("group_by", "day")
    if group_by not in GROUP_BYS:
        raise ApiError(400, f"group_by must be one of {', '.join(GROUP_BYS)}")
    f = usage_filter(request)
    store = _store(request)
    records = await store.usage(f)
    return _json({"data": summarise(records, group_by)})


def scope_json(row: dict[str, Any], directories: dict[str, str]) -> dict[str, Any]:
    """A scope summary in the API's shape (ISO-8601 time, owner, project and its directory)."""
    last = row["last_active_at"]
    owner, project = split_scope(row["user_id"])
    where = {"owner": owner, "project": project, "directory": directories.get(row["user_id"])}
    return {**row, **where, "last_active_at": iso(last) if last is not None else None}


@handle_api_errors
async def scopes(request: Request) -> Response:
    """GET /v1/scopes: every scope the caller may see, with counts and its memory mode."""
    principal = _principal(request)
    asked = request.query_params.get("user_id")
    only = visible_scope(principal, asked)
    store = _store(request)
    # A pinned key sees its own scope and its project scopes (`<user_id>:…`).
    rows = await store.scope_summaries(None if principal.user_id is not None and asked is None else only)
    directories = _oversight(request).directories
    return _json({"data": [scope_json(r, directories) for r in rows if principal.may_use(r["user_id"])]})


@handle_api_errors
async def patch_scope(request: Request) -> Response:
    """PATCH /v1/scopes/{user_id} {"mode": …}: the scope's memory mode, effective at once."""
    scope = visible_scope(_principal(request), request.path_params["user_id"])
    assert scope is not None
    try:
        body = parse_json(await _body(request))
    except orjson.JSONDecodeError as exc:
        raise ApiError(400, f"request body is not valid JSON: {exc}") from None
    except TooDeep as exc:
        raise ApiError(400, f"request body refused: {exc}") from None
    if not isinstance(body, dict) or not ({"mode", "retention"} & body.keys()):
        raise ApiError(400, 'the body must be {"mode": …} and/or {"retention": {…}}')
    mode = body.get("mode")
    if "mode" in body and mode not in MODES:
        raise ApiError(400, f"mode must be one of {', '.join(MODES)}")
    try:
        limits = scope_limits(body["retention"]) if "retention" in body else None
    except InvalidLimits as exc:
        raise ApiError(400, str(exc)) from None
    store = _store(request)
    if mode is not None:
        await _oversight(request).set_mode(store, scope, cast(Mode, mode))
    if limits is not None:
        await store.set_scope_retention(scope, limits)
    state_of(request).scope = scope
    rows = await store.scope_summaries(scope)
    found = rows[0] if rows else {"user_id": scope, "memories": 0, "requests": 0, "last_active_at": None}
    own = (await store.scope_retention()).get(scope, (None, None))
    retention = {"max_age_days": own[0], "max_per_scope": own[1]}
    oversight = _oversight(request)
    return _json(scope_json({**found, "mode": oversight.mode(scope), "retention": retention}, oversight.directories))


async def metrics(request: Request) -> Response:
    """GET /metrics: the Prometheus text exposition (404 when metrics are switched off)."""
    c = ctx(request)
    oversight = _oversight(request)
    if oversight.metrics is None:
        return error_response(ErrorShape.OPENAI, 404, "metrics are switched off (observability.metrics.enabled)")
    oversight.litellm_up = 1.0 if (await c.upstream.probe())["status"] == "reachable" else 0.0
    return Response(oversight.metrics.render(), media_type=CONTENT_TYPE_LATEST)
