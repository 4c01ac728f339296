"""The front door, as ASGI middleware: browser-origin checks, auth, load shedding, access log."""

from __future__ import annotations

import logging
import time
from typing import Any

from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.auth import authenticate
from app.config import Settings, is_loopback_host
from app.context import Counters
from app.errors import is_anthropic, send_error

log = logging.getLogger("memory_proxy.access")
OPEN_PATHS = frozenset({"/health", "/health/readiness", "/health/liveliness"})


class Guard:
    """Refuses foreign origins, rebinding hosts, unknown keys and overload before any route runs."""

    def __init__(self, app: ASGIApp, settings: Settings, counters: Counters) -> None:
        self.app = app
        self.settings = settings
        self.counters = counters
        self.inflight = 0
        self.loopback = settings.loopback

    @property
    def state(self) -> Any:
        """The wrapped app's state (it holds the Context)."""
        return self.app.state  # type: ignore[attr-defined]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        started = time.perf_counter()
        status = 0
        state = scope.setdefault("state", {})

        async def send_logged(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            refusal = self._check(scope, state)
            if refusal is not None:
                code, message, extra = refusal
                anthropic = is_anthropic(scope["path"], Headers(scope=scope))
                return await send_error(send_logged, anthropic, code, message, extra)
            self.inflight += 1
            try:
                await self.app(scope, receive, send_logged)
            finally:
                self.inflight -= 1
        finally:
            log.info(
                "%s %s scope=%s model=%s status=%s %.1fms",
                scope["method"],
                scope["path"],
                state.get("scope", "-"),
                state.get("model", "-"),
                status or "aborted",
                (time.perf_counter() - started) * 1000,
            )

    def _check(self, scope: Scope, state: dict) -> tuple[int, str, list[tuple[bytes, bytes]]] | None:
        headers = Headers(scope=scope)
        origin = headers.get("origin")
        if origin is not None and origin.lower().rstrip("/") not in self.settings.limits.allowed_origins:
            return 403, "cross-origin requests are refused; add the origin to proxy.allowed_origins", []
        if self.loopback:
            if not is_loopback_host(host_name(headers.get("host", ""))):
                return 403, "Host header is not a loopback name (DNS rebinding guard)", []
        if scope["path"] in OPEN_PATHS:
            return None
        principal = authenticate(self.settings.keys, headers)
        if principal is None:
            return 401, "missing or invalid API key", [(b"www-authenticate", b"Bearer")]
        state["principal"] = principal
        if self.inflight >= self.settings.limits.max_concurrent_requests:
            self.counters.overloaded += 1
            return 503, "the memory proxy is at its concurrency limit; retry shortly", [(b"retry-after", b"1")]
        return None


def host_name(host_header: str) -> str:
    """The name in a Host header, without port or IPv6 brackets."""
    if host_header.startswith("["):
        return host_header[1 : host_header.find("]")] if "]" in host_header else ""
    return host_header.rpartition(":")[0] if host_header.count(":") == 1 else host_header
