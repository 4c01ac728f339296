"""The memory proxy's ASGI app: where every request goes.

Guard (path canonicalisation, origin/host checks, auth by the route's access class, fair load
shedding, request id, access log, last-resort 500) → Dispatch → the handler that `routing_table()`
below names for the request's method and path. Anything the table does not name is LiteLLM's
management API: passed through for admin keys only.

The hot paths (chat and pass-through) run without FastAPI's middleware and router layers, which
would cost more than the rest of the proxy hop (see docs/performance.md).
"""

from __future__ import annotations

import logging
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI
from starlette.requests import Request
from starlette.types import Receive, Scope, Send

from app import chat, dashboard, dialects, logsafe, mcp_server, memory_api, objects, oversight_api, routes
from app.config import ConfigError, Settings, load_settings
from app.context import Context
from app.guard import Guard
from app.models import ModelTable
from app.oversight import Oversight
from app.proxy import Upstream, redact_url
from app.request_state import state_of
from app.retention import Retention
from app.routing import Access, RoutingTable, route
from app.slowclients import BODY_TIMEOUT, HEADER_TIMEOUT
from app.store import open_store
from app.writer import MemoryWriter

log = logsafe.logger("memory_proxy")


# What a key pinned to one scope may reach through the master key: inference, not LiteLLM's
# management API (/key, /user, /team, /model/new, /config, /spend, …), which is for admin keys.
INFERENCE_PATHS = tuple(
    f"{v}{p}"
    for v in ("", "/v1")
    for p in ("/models", "/embeddings", "/completions", "/responses", "/moderations", "/audio", "/images", "/rerank")
) + ("/v1/messages", "/v1beta/models")


# Stored-object families the proxy does not track (app/objects.py): operators only. Responses by id
# have their own routes above these.
STORED_OBJECTS = ("/responses", "/v1/responses", "/v1/messages/batches")


def routing_table() -> RoutingTable:
    """Every path the proxy owns, with who may call it and its handler."""
    open_, client, admin = Access.OPEN, Access.CLIENT, Access.ADMIN
    return RoutingTable(
        [
            route("health", "/health", "GET", open_, routes.health),
            route("readiness", "/health/readiness", "GET", open_, routes.readiness),
            route("liveness", "/health/liveliness", "GET", open_, routes.liveness),
            route("liveness", "/health/liveness", "GET", open_, routes.liveness),
            route("routing-info", "/memory-routing/info", "GET", client, routes.routing_info),
            *(route("chat", p, "POST", client, chat.chat) for p in dialects.CHAT_PATHS),
            route("memories", "/v1/memories", "GET", client, memory_api.list_memories),
            route("memories", "/v1/memories", "POST", client, memory_api.add_memory),
            route("memories", "/v1/memories", "DELETE", client, memory_api.forget_scope),
            route("memories-search", "/v1/memories/search", "GET", client, memory_api.search_memories),
            route("memories-export", "/v1/memories/export", "GET", client, memory_api.export_memories),
            route("memories-import", "/v1/memories/import", "POST", client, memory_api.import_memories),
            route("memory", "/v1/memories/{memory_id}", "GET", client, memory_api.get_memory),
            route("memory", "/v1/memories/{memory_id}", "DELETE", client, memory_api.delete_memory),
            route("mcp", "/mcp", "POST", client, mcp_server.endpoint),
            route("usage", "/v1/usage", "GET", client, oversight_api.usage),
            route("scopes", "/v1/scopes", "GET", client, oversight_api.scopes),
            route("scope", "/v1/scopes/{user_id}", "PATCH", client, oversight_api.patch_scope),
            route("metrics", "/metrics", "GET", admin, oversight_api.metrics),
            route("dashboard", "/dashboard", "GET", open_, dashboard.overview),
            route("dashboard", "/dashboard/login", "GET", open_, dashboard.login_form),
            route("dashboard", "/dashboard/login", "POST", open_, dashboard.login),
            route("dashboard", "/dashboard/logout", "POST", open_, dashboard.logout),
            route("dashboard", "/dashboard/requests", "GET", open_, dashboard.requests_page),
            route("dashboard", "/dashboard/static/dashboard.css", "GET", open_, dashboard.stylesheet),
            route("dashboard", "/dashboard/scopes/{user_id}", "GET", open_, dashboard.scope_page),
            route("dashboard", "/dashboard/scopes/{user_id}/mode", "POST", open_, dashboard.set_mode),
            route("dashboard", "/dashboard/scopes/{user_id}/retention", "POST", open_, dashboard.set_retention),
            route("dashboard", "/dashboard/scopes/{user_id}/import", "POST", open_, dashboard.import_memories),
            route("dashboard", "/dashboard/scopes/{user_id}/export", "GET", open_, dashboard.export_memories),
            route("dashboard", "/dashboard/scopes/{user_id}/memories/{memory_id}", "GET", open_, dashboard.memory_page),
            route(
                "dashboard",
                "/dashboard/scopes/{user_id}/memories/{memory_id}/delete",
                "POST",
                open_,
                dashboard.delete_memory,
            ),
            route("dashboard-unknown", "/dashboard", "*", open_, routes.not_found, prefix=True),
            route("memories-unknown", "/v1/memories", "*", client, routes.not_found, prefix=True),
            route("scopes-unknown", "/v1/scopes", "*", client, routes.not_found, prefix=True),
            route("usage-unknown", "/v1/usage", "*", client, routes.not_found, prefix=True),
            *(
                route("stored-response", f"{v}/responses/{{response_id}}{tail}", "*", client, objects.stored_response)
                for v in ("", "/v1")
                for tail in ("", "/input_items", "/cancel")
            ),
            *(route("stored-objects", p, "*", client, objects.operators_only, prefix=True) for p in STORED_OBJECTS),
            *(route("inference", p, "*", client, routes.forward, prefix=True) for p in INFERENCE_PATHS),
        ],
        fallback=route("litellm", "/", "*", admin, routes.forward),
    )


class Dispatch:
    """Calls the handler the Guard matched; lifespan events go to FastAPI."""

    def __init__(self, api: FastAPI) -> None:
        self.api = api

    @property
    def state(self) -> Any:
        """The FastAPI app's state (it holds the Context)."""
        return self.api.state

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.api(scope, receive, send)
        scope["app"] = self.api
        request = Request(scope, receive)
        route_ = state_of(request).route
        assert route_ is not None  # the Guard matched every request it let through
        response = await route_.handler(request)
        await response(scope, receive, send)


def create_app(settings: Settings) -> Guard:
    """Build the app for `settings`; the lifespan opens the upstream client and the store."""
    context = Context(settings, ModelTable(settings.models), Upstream(settings))
    context.redactor.enabled = settings.memory.redact_secrets
    context.oversight = oversight = Oversight(settings, context)
    mcp = mcp_server.McpEndpoint(
        max_memory_chars=settings.memory.max_memory_chars, max_body_bytes=settings.limits.max_body_bytes
    )

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[dict[str, float]]:
        await context.upstream.start()
        if settings.memory.enabled:
            try:
                context.store = await open_store(settings.db_path)
                context.writer = MemoryWriter(context.store, context.redactor, settings.memory.max_memory_chars)
                context.writer.start()
                context.retention = Retention(context.store, settings.memory.retention)
                context.retention.start()
                await oversight.load()
            except Exception as exc:  # the proxy still serves chats without memory
                log.error("memory store at %s failed to open: %s", redact_url(settings.db_path), exc)
        url = f"http://{settings.host}:{settings.port}"
        # uvicorn's own "running on" line is printed twice under honcho (LiteLLM's too): say which.
        log.info("Memory Proxy ready: point clients at %s (OpenAI SDKs: %s/v1)", url, url)
        try:
            async with mcp.running():
                # The lifespan state reaches every connection's protocol (app.slowclients).
                yield {HEADER_TIMEOUT: settings.limits.header_timeout, BODY_TIMEOUT: settings.limits.body_timeout}
        finally:
            if context.retention is not None:
                await context.retention.stop()
            if context.writer is not None:
                await context.writer.stop()
            if context.store is not None:
                await context.store.close()
            await context.upstream.close()

    api = FastAPI(title="Memory Proxy", lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None)
    api.state.ctx = context
    api.state.mcp = mcp
    return Guard(
        Dispatch(api), settings, context.counters, routing_table(), oversight.answered, guesses=context.guesses
    )


def log_level() -> str:
    """MEMORY_LOG_LEVEL (default info), as uvicorn takes it."""
    return os.environ.get("MEMORY_LOG_LEVEL", "info").lower()


def configure_logging() -> None:
    """The format and level of the app's `memory_proxy` loggers."""
    logging.basicConfig(level=log_level().upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")


def __getattr__(name: str) -> Any:
    """`uvicorn app.main:app` builds the app from the environment on first access, not at import."""
    if name == "app":
        configure_logging()
        try:
            return create_app(load_settings())
        except ConfigError as exc:
            raise SystemExit(f"memory proxy: configuration error: {exc}") from None
    raise AttributeError(name)
