"""The web dashboard at /dashboard: server-rendered pages (Jinja2, autoescaped, no scripts), cookie sessions.

Every page checks its session; every change is a POST that carries the session's CSRF token. An
admin key (or the anonymous loopback owner) sees every scope; a pinned key only its own.
"""

from __future__ import annotations

import functools
import itertools
import math
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote

import orjson
from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.requests import ClientDisconnect, Request
from starlette.responses import HTMLResponse, RedirectResponse, Response

from app import imports
from app.auth import ANONYMOUS, Principal, authenticate
from app.context import Context, ctx
from app.errors import TOO_LARGE
from app.projects import split_scope
from app.proxy import CLIENT_GONE, BodyTooLarge, read_body
from app.records import MAX_MODEL_CHARS, RecordError, iso, memory_json, parse_numbered, split_lines
from app.retention import InvalidLimits, scope_limits
from app.scopes import InvalidScope, validate_scope
from app.sessions import COOKIE, SESSION_SECONDS, Session, Sessions
from app.store import MemoryStore, NewMemory
from app.store.usage import MODES, UsageFilter
from app.usage import day_of, summarise

TEMPLATES = Path(__file__).parent / "templates"
CHART_DAYS = 30
PAGE_SIZE = 100
STATUS = re.compile(r"[1-5][0-9][0-9]")  # ASCII digits only (str.isdigit also takes "²"); always fullmatch
FORM_LIMIT = 8 * 1024 * 1024  # imports arrive as form fields
# No scripts at all: with autoescaping, a hostile memory has nothing to run in.
HEADERS = {
    "content-security-policy": "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; "
    "frame-ancestors 'none'; base-uri 'none'",
    "x-content-type-options": "nosniff",
    "referrer-policy": "same-origin",  # no-referrer would make the browser send `Origin: null` on our own forms
    "cache-control": "no-store",
}


class Refused(Exception):
    """A dashboard request that ends with a plain error page."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def templates() -> Environment:
    """The dashboard's Jinja2 environment: every value escaped for HTML."""
    env = Environment(loader=FileSystemLoader(TEMPLATES), autoescape=select_autoescape(default=True), auto_reload=False)
    env.filters["iso"] = lambda ts: iso(ts) if ts is not None else ""
    env.filters["when"] = lambda ts: time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(ts)) if ts is not None else ""
    env.filters["q"] = lambda value: quote(str(value), safe="")
    return env


@dataclass
class View:
    """One dashboard request: its context, session, caller and (for POSTs) its form."""

    request: Request
    c: Context
    session: Session
    form: dict[str, str]

    @property
    def principal(self) -> Principal:
        """The logged-in caller."""
        return self.session.principal

    @property
    def store(self) -> MemoryStore:
        """The open store, or a 503 page."""
        if self.c.store is None:
            raise Refused(503, "the memory store is unavailable")
        return self.c.store

    def only(self) -> str | None:
        """The scope a pinned key is limited to; None for operators (every scope)."""
        return self.principal.user_id

    def scope(self, name: str) -> str:
        """A scope named in the path, if the caller may see it."""
        try:
            validate_scope(name)
        except InvalidScope as exc:
            raise Refused(400, str(exc)) from None
        if not self.principal.may_use(name):
            raise Refused(403, "this key may not see that scope")
        return name

    def render(self, name: str, status: int = 200, **data: Any) -> Response:
        """A page from the templates, with the CSRF token and the caller's role."""
        oversight = self.c.oversight
        assert oversight is not None
        html = oversight.templates.get_template(name).render(
            csrf=self.session.csrf, pinned=self.principal.user_id, anonymous=self.principal.anonymous, **data
        )
        return HTMLResponse(html, status_code=status, headers=HEADERS)


def _sessions(c: Context) -> Sessions:
    assert c.oversight is not None
    return c.oversight.sessions


def _error_page(c: Context, status: int, message: str) -> Response:
    assert c.oversight is not None
    html = c.oversight.templates.get_template("error.html").render(status=status, message=message)
    return HTMLResponse(html, status_code=status, headers=HEADERS)


def _switched_off(c: Context) -> Response:
    return _error_page(c, 404, "the dashboard is switched off (observability.dashboard.enabled)")


async def _form(request: Request) -> dict[str, str]:
    """An urlencoded form (the only kind the pages send); the last value of each field."""
    if not request.headers.get("content-type", "").startswith("application/x-www-form-urlencoded"):
        raise Refused(415, "forms are sent as application/x-www-form-urlencoded")
    try:
        raw = await read_body(request, FORM_LIMIT)
    except BodyTooLarge:
        raise Refused(413, TOO_LARGE) from None
    try:
        fields = parse_qs(raw.decode("utf-8"), keep_blank_values=True, strict_parsing=False)
    except UnicodeDecodeError:
        raise Refused(400, "the form is not UTF-8") from None
    return {k: v[-1] for k, v in fields.items()}


def _cookie(response: Response, token: str, request: Request) -> Response:
    response.set_cookie(
        COOKIE,
        token,
        max_age=SESSION_SECONDS,
        path="/dashboard",
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
    )
    return response


Page = Callable[[View], Awaitable[Response]]


def page(change: bool = False) -> Callable[[Page], Callable[[Request], Awaitable[Response]]]:
    """A dashboard handler: session (or log-in page), CSRF for changes, error pages."""

    def wrap(func: Page) -> Callable[[Request], Awaitable[Response]]:
        @functools.wraps(func)
        async def handler(request: Request) -> Response:
            c = ctx(request)
            if not c.settings.observability.dashboard_enabled:
                return _switched_off(c)
            sessions = _sessions(c)
            session = sessions.get(request.cookies.get(COOKIE))
            new_token = None
            if session is None:
                if c.settings.keys:
                    return RedirectResponse("/dashboard/login", status_code=303, headers=HEADERS)
                # No keys: the proxy is on loopback and its owner is anonymous.
                new_token = sessions.create(ANONYMOUS)
                session = sessions.get(new_token)
                assert session is not None
            try:
                form = await _form(request) if change else {}
                if change and not session.csrf_ok(form.get("csrf")):
                    raise Refused(403, "the form's CSRF token is missing or stale; reload the page")
                response = await func(View(request, c, session, form))
            except Refused as exc:
                response = _error_page(c, exc.status, str(exc))
            except ClientDisconnect:
                return Response(status_code=CLIENT_GONE)
            return _cookie(response, new_token, request) if new_token else response

        return handler

    return wrap


async def login_form(request: Request) -> Response:
    """GET /dashboard/login: the log-in form (a proxy key)."""
    c = ctx(request)
    if not c.settings.observability.dashboard_enabled:
        return _switched_off(c)
    if not c.settings.keys:
        return RedirectResponse("/dashboard", status_code=303, headers=HEADERS)
    assert c.oversight is not None
    html = c.oversight.templates.get_template("login.html").render(failed=False)
    return HTMLResponse(html, headers=HEADERS)


async def login(request: Request) -> Response:
    """POST /dashboard/login: a valid key starts a session (HttpOnly, SameSite=Strict cookie)."""
    c = ctx(request)
    assert c.oversight is not None
    if not c.settings.observability.dashboard_enabled:
        return _switched_off(c)
    try:
        form = await _form(request)
    except Refused as exc:
        return _error_page(c, exc.status, str(exc))
    key = form.get("key", "").strip()
    address = request.client.host if request.client else "-"
    wait = c.guesses.wait(address, key) if key else 0.0
    if wait:  # the key is not even compared: a guess gets no answer
        retry = str(math.ceil(wait))
        response = _error_page(c, 429, f"too many failed log-ins from this client; retry in {retry} s")
        response.headers["retry-after"] = retry
        return response
    principal = authenticate(c.settings.keys, {"authorization": f"Bearer {key}"}) if key else None
    if principal is None:
        if key:
            c.guesses.failed(address, key)
        html = c.oversight.templates.get_template("login.html").render(failed=True)
        return HTMLResponse(html, status_code=401, headers=HEADERS)
    response = RedirectResponse("/dashboard", status_code=303, headers=HEADERS)
    return _cookie(response, _sessions(c).create(principal), request)


@page(change=True)
async def logout(v: View) -> Response:
    """POST /dashboard/logout: end the session."""
    _sessions(v.c).drop(v.request.cookies.get(COOKIE))
    response = RedirectResponse("/dashboard/login", status_code=303, headers=HEADERS)
    response.delete_cookie(COOKIE, path="/dashboard")
    return response


def chart(rows: list[dict[str, Any]], since: float) -> list[dict[str, Any]]:
    """Requests and tokens per day for the last CHART_DAYS days, with bar heights (0-100)."""
    by_day = {r["day"]: r for r in rows}
    days = [day_of(since + i * 86400) for i in range(CHART_DAYS + 1)]
    days = sorted(set(days))[-CHART_DAYS:]
    most_requests = max((by_day.get(d, {}).get("requests", 0) for d in days), default=0) or 1
    most_tokens = max((_tokens(by_day.get(d)) for d in days), default=0) or 1
    return [
        {
            "day": d,
            "requests": by_day.get(d, {}).get("requests", 0),
            "tokens": _tokens(by_day.get(d)),
            "requests_h": round(100 * by_day.get(d, {}).get("requests", 0) / most_requests),
            "tokens_h": round(100 * _tokens(by_day.get(d)) / most_tokens),
        }
        for d in days
    ]


def _tokens(row: dict[str, Any] | None) -> int:
    return (row["input_tokens"] + row["output_tokens"]) if row else 0


@page()
async def overview(v: View) -> Response:
    """GET /dashboard: scopes with counts and mode; requests and tokens per day."""
    store = v.store
    since = time.time() - CHART_DAYS * 86400
    # A pinned key sees its own scope and its project scopes (`<user_id>:…`): read all, keep those.
    may_use = v.principal.may_use
    find = v.request.query_params.get("find", "").strip()
    summaries = await store.scope_summaries(None)
    scopes = [s for s in summaries if may_use(s["user_id"]) and find.lower() in s["user_id"].lower()]
    records = [r for r in await store.usage(UsageFilter(None, since)) if may_use(r.user_id)]
    assert v.c.oversight is not None
    directories = v.c.oversight.directories
    per_scope = {r["scope"]: r for r in summarise(records, "scope")}
    for s in scopes:
        figures = per_scope.get(s["user_id"], {})
        s["tokens"] = figures.get("input_tokens", 0) + figures.get("output_tokens", 0)
        s["errors"] = figures.get("errors", 0)
        s["owner"], s["project"] = split_scope(s["user_id"])
        s["directory"] = directories.get(s["user_id"])
    days = chart(summarise(records, "day"), since)
    owners = itertools.groupby(sorted(scopes, key=lambda s: s["owner"] or ""), key=lambda s: s["owner"])
    groups = [(owner, list(rows)) for owner, rows in owners]
    return v.render("overview.html", groups=groups, days=days, chart_days=CHART_DAYS, find=find)


@page()
async def scope_page(v: View) -> Response:
    """GET /dashboard/scopes/{user_id}: memories (or search hits), mode, import and export."""
    scope = v.scope(v.request.path_params["user_id"])
    store = v.store
    q = v.request.query_params.get("q", "").strip()
    if q:
        found = await store.search(scope, q, PAGE_SIZE)
        memories = [m for m, _ in found]
    else:
        memories, _ = await store.list(scope, PAGE_SIZE, None)
    summary = await store.scope_summaries(scope)
    assert v.c.oversight is not None
    mode = v.c.oversight.mode(scope)
    count = summary[0]["memories"] if summary else 0
    age, keep = (await store.scope_retention()).get(scope, (None, None))
    retention = {"max_age_days": age, "max_per_scope": keep, "config": v.c.settings.memory.retention}
    return v.render(
        "scope.html", scope=scope, memories=memories, q=q, mode=mode, modes=MODES, count=count, retention=retention
    )


@page()
async def memory_page(v: View) -> Response:
    """GET /dashboard/scopes/{user_id}/memories/{memory_id}: one memory and the requests it was injected into."""
    scope = v.scope(v.request.path_params["user_id"])
    store = v.store
    memory = await store.get(scope, v.request.path_params["memory_id"])
    if memory is None:
        raise Refused(404, "no such memory in this scope")
    log = await store.recall_log(scope, memory.id)
    return v.render("memory.html", scope=scope, memory=memory, log=log)


@page(change=True)
async def delete_memory(v: View) -> Response:
    """POST …/memories/{memory_id}/delete: delete one memory."""
    scope = v.scope(v.request.path_params["user_id"])
    store = v.store
    if not await store.delete(scope, v.request.path_params["memory_id"]):
        raise Refused(404, "no such memory in this scope")
    return RedirectResponse(f"/dashboard/scopes/{quote(scope)}", status_code=303, headers=HEADERS)


@page(change=True)
async def set_mode(v: View) -> Response:
    """POST /dashboard/scopes/{user_id}/mode: pause (off), resume (on), read or write."""
    scope = v.scope(v.request.path_params["user_id"])
    mode = v.form.get("mode")
    if mode not in MODES:
        raise Refused(400, f"mode must be one of {', '.join(MODES)}")
    assert v.c.oversight is not None
    await v.c.oversight.set_mode(v.store, scope, mode)
    return RedirectResponse(f"/dashboard/scopes/{quote(scope)}", status_code=303, headers=HEADERS)


@page(change=True)
async def set_retention(v: View) -> Response:
    """POST /dashboard/scopes/{user_id}/retention: the scope's own limits (empty: the config's; 0: none)."""
    scope = v.scope(v.request.path_params["user_id"])
    raw: dict[str, Any] = {}
    for name, kind in (("max_age_days", float), ("max_per_scope", int)):
        text = v.form.get(name, "").strip()
        try:
            raw[name] = kind(text) if text else None
        except ValueError:
            raise Refused(400, f"{name} must be a number, 0 (no limit) or empty (the config's)") from None
    try:
        await v.store.set_scope_retention(scope, scope_limits(raw))
    except InvalidLimits as exc:
        raise Refused(400, str(exc)) from None
    return RedirectResponse(f"/dashboard/scopes/{quote(scope)}", status_code=303, headers=HEADERS)


@page(change=True)
async def import_memories(v: View) -> Response:
    """POST /dashboard/scopes/{user_id}/import: JSON Lines pasted into the form, into this scope."""
    scope = v.scope(v.request.path_params["user_id"])

    def into_scope(named: str | None) -> str:
        if named is not None and named != scope:
            raise InvalidScope(f"a line names scope {named[:140]!r}; this page imports into {scope!r}")
        return scope

    limits = v.c.settings.memory

    def parse(batch: list[tuple[int, bytes]]) -> list[NewMemory]:
        return parse_numbered(batch, into_scope, limits.max_memory_chars)

    try:
        lines = split_lines(v.form.get("lines", "").encode(), limits.max_import_lines)
        parts = imports.batches(lines)
        await imports.check_all(parts, parse)
    except RecordError as exc:
        raise Refused(400, str(exc)) from None
    added = await imports.write_all(v.store, parts, parse, prepare=v.c.redactor.memories)
    return v.render("imported.html", scope=scope, imported=added, skipped=len(lines) - added)


@page()
async def export_memories(v: View) -> Response:
    """GET /dashboard/scopes/{user_id}/export: the scope's memories as a JSON Lines download."""
    scope = v.scope(v.request.path_params["user_id"])
    store = v.store
    items = [m async for m in store.export(scope)]
    body = b"".join(orjson.dumps(memory_json(m)) + b"\n" for m in items)
    disposition = f'attachment; filename="{quote(scope)}-memories.jsonl"'
    return Response(body, media_type="application/x-ndjson", headers={**HEADERS, "content-disposition": disposition})


@page()
async def requests_page(v: View) -> Response:
    """GET /dashboard/requests: recent requests, filterable by scope, model and status."""
    params = v.request.query_params
    scope = params.get("scope", "").strip() or None
    if scope is not None:
        v.scope(scope)
    only = scope or v.only()  # v.scope let a pinned key name only its own scopes
    status_raw = params.get("status", "").strip()
    if status_raw and not STATUS.fullmatch(status_raw):
        raise Refused(400, "status must be a three-digit HTTP status")
    model = params.get("model", "").strip() or None
    if model is not None and (len(model) > MAX_MODEL_CHARS or "\x00" in model):
        raise Refused(400, f"model must be at most {MAX_MODEL_CHARS} characters, without NUL")
    f = UsageFilter(only, model=model, status=int(status_raw) if status_raw else None)
    store = v.store
    rows = await store.recent_usage(f, PAGE_SIZE)
    return v.render("requests.html", rows=rows, scope=scope or "", model=model or "", status_filter=status_raw)


async def stylesheet(request: Request) -> Response:
    """GET /dashboard/static/dashboard.css: the pages' only asset."""
    return Response((TEMPLATES / "dashboard.css").read_bytes(), media_type="text/css", headers=HEADERS)
