"""The memory proxy's ASGI app: where every request goes.

Request path: Guard (origin/host checks, auth, load shedding, access log) → Dispatch →
  POST /v1/chat/completions, /chat/completions, /v1/messages
                                        → chat.chat (scope, recall, inject, forward, capture)
  /health, /health/readiness            → routes.health / routes.readiness (no auth)
  /memory-routing/info                  → routes.routing_info
  /v1/memories…                         → memory_api (scoped memory CRUD), via FastAPI
  anything else                         → routes.forward (raw pass-through to LiteLLM)

The hot paths (chat and pass-through) are dispatched straight to their handlers: FastAPI's
middleware and router layers cost more than the rest of the proxy hop (see docs/performance.md).
"""

from __future__ import annotations

import logging
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from app import chat, memory_api, routes
from app.config import ConfigError, Settings, load_settings
from app.context import Context
from app.errors import error_response
from app.guard import Guard
from app.models import ModelTable
from app.proxy import Upstream, redact_url
from app.store import open_store
from app.writer import MemoryWriter

log = logging.getLogger("memory_proxy")


CHAT_PATHS = frozenset({"/v1/chat/completions", "/chat/completions", "/v1/messages"})
OWN_PATHS = frozenset({"/health", "/health/readiness", "/memory-routing/info", "/v1/memories"})


class Dispatch:
    """Sends chat and pass-through requests straight to their handlers; the rest to FastAPI."""

    def __init__(self, api: FastAPI) -> None:
        self.api = api

    @property
    def state(self) -> Any:
        """The FastAPI app's state (it holds the Context)."""
        return self.api.state

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "")
        if scope["type"] != "http" or path in OWN_PATHS or path.startswith("/v1/memories/"):
            return await self.api(scope, receive, send)
        handler = chat.chat if scope["method"] == "POST" and path in CHAT_PATHS else routes.forward
        scope["app"] = self.api
        response = await handler(Request(scope, receive))
        await response(scope, receive, send)


async def _http_error(request: Request, exc: Exception) -> Response:
    """FastAPI's own errors (unknown memory route, wrong method) in the OpenAI error shape."""
    status = exc.status_code if isinstance(exc, HTTPException) else 500
    return error_response(False, status, str(getattr(exc, "detail", "")) or "error")


def create_app(settings: Settings) -> Guard:
    """Build the app for `settings`; the lifespan opens the upstream client and the store."""
    context = Context(settings, ModelTable(settings.models), Upstream(settings))

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await context.upstream.start()
        if settings.memory.enabled:
            try:
                context.store = await open_store(settings.db_path)
                context.writer = MemoryWriter(context.store, settings.memory.max_memory_chars)
                context.writer.start()
            except Exception as exc:  # the proxy still serves chats without memory
                log.error("memory store at %s failed to open: %s", redact_url(settings.db_path), exc)
        try:
            yield
        finally:
            if context.writer is not None:
                await context.writer.stop()
            if context.store is not None:
                await context.store.close()
            await context.upstream.close()

    api = FastAPI(title="Memory Proxy", lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None)
    api.state.ctx = context
    api.add_exception_handler(HTTPException, _http_error)
    api.add_route("/health", routes.health, methods=["GET"])
    api.add_route("/health/readiness", routes.readiness, methods=["GET"])
    api.add_route("/memory-routing/info", routes.routing_info, methods=["GET"])
    api.include_router(memory_api.router)
    return Guard(Dispatch(api), settings, context.counters)


def __getattr__(name: str) -> Any:
    """`uvicorn app.main:app` builds the app from the environment on first access, not at import."""
    if name == "app":
        level = os.environ.get("MEMORY_LOG_LEVEL", "info").upper()
        logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
        try:
            return create_app(load_settings())
        except ConfigError as exc:
            raise SystemExit(f"memory proxy: configuration error: {exc}") from None
    raise AttributeError(name)
