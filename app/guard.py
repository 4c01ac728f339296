"""The front door, as ASGI middleware: path, origin and auth checks, fair load shedding, errors, access log."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Any

from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app import logsafe
from app.auth import Principal, authenticate, presented_key, take_query_key
from app.config import Settings, is_loopback_host
from app.context import Counters
from app.errors import error_shape, is_gemini, send_error
from app.guessing import Guesses
from app.paths import BadPath, canonical_path
from app.request_state import RequestState, attach, request_id
from app.routing import Access, RoutingTable

log = logsafe.logger("memory_proxy.access")
Refusal = tuple[int, str, list[tuple[bytes, bytes]]]
# Told of every answered request: its state, status, seconds in all and to the first body byte.
Answered = Callable[[RequestState, int, float, float | None], None]


class Guard:
    """Refuses bad paths, foreign origins, rebinding hosts, unknown keys and overload before any route runs.

    It also owns the request id, the one access-log line, the timing handed to `on_answered`
    (metrics and usage), and the last word on failures: any exception a handler lets through
    becomes a 500 in the caller's dialect, logged with its traceback.
    """

    def __init__(
        self,
        app: ASGIApp,
        settings: Settings,
        counters: Counters,
        table: RoutingTable,
        on_answered: Answered | None = None,
        *,
        guesses: Guesses,
    ) -> None:
        self.app = app
        self.guesses = guesses
        self.on_answered = on_answered
        self.settings = settings
        self.counters = counters
        self.table = table
        self.inflight = 0
        self.inflight_by: dict[str, int] = {}
        limits = settings.limits
        self.per_key_limit = max(1, int(limits.max_concurrent_requests * limits.per_key_share))
        self.loopback = settings.loopback

    @property
    def state(self) -> Any:
        """The wrapped app's state (it holds the Context)."""
        return self.app.state  # type: ignore[attr-defined]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        started = time.perf_counter()
        headers = Headers(scope=scope)
        state = RequestState(request_id(headers), error_shape(scope["path"], headers))
        attach(scope, state)
        status = 0
        first_byte: float | None = None
        id_header = (b"x-request-id", state.request_id.encode())

        async def send_logged(message: Message) -> None:
            nonlocal status, first_byte
            if message["type"] == "http.response.start":
                status = message["status"]
                message = {**message, "headers": [*message.get("headers", ()), id_header]}
            elif first_byte is None and message.get("body"):
                first_byte = time.perf_counter() - started
            await send(message)

        counted: str | None = None
        try:
            refusal = self._check(scope, headers, state)
            if refusal is not None:
                code, text, extra = refusal
                return await send_error(send_logged, state.error_shape, code, text, extra)
            if state.route is not None and state.route.access is not Access.OPEN:
                counted = state.principal.name if state.principal else "-"
                self.inflight_by[counted] = self.inflight_by.get(counted, 0) + 1
            self.inflight += 1
            try:
                await self.app(scope, receive, send_logged)
            finally:
                self.inflight -= 1
                if counted is not None:
                    self._release(counted)
        except Exception:
            log.exception("request %s %s failed (request id %s)", scope["method"], scope["path"], state.request_id)
            if status == 0:  # nothing sent yet: the client still gets an answer it can parse
                message = f"internal error in the memory proxy (request id {state.request_id})"
                await send_error(send_logged, state.error_shape, 500, message)
        finally:
            elapsed = time.perf_counter() - started
            log.info(
                "%s %s scope=%s model=%s status=%s %.1fms id=%s",
                scope["method"],
                scope["path"],
                state.scope or "-",
                state.model or "-",
                status or "aborted",
                elapsed * 1000,
                state.request_id,
            )
            if self.on_answered is not None:
                try:
                    self.on_answered(state, status, elapsed, first_byte)
                except Exception:  # the answer is already sent: bookkeeping must not turn it into an error
                    log.exception("recording request %s failed", state.request_id)

    def _release(self, name: str) -> None:
        left = self.inflight_by[name] - 1
        if left:
            self.inflight_by[name] = left
        else:
            del self.inflight_by[name]

    def _authenticate(self, scope: Scope, headers: Headers, query_key: str | None) -> tuple[Principal | None, float]:
        """The caller's principal (None: no valid key), and how long it must wait when it guessed too often."""
        keys = self.settings.keys
        token = presented_key(headers, query_key) if keys else None
        if token is None:  # no keys (the anonymous owner), or no key sent: nothing is guessed
            return authenticate(keys, headers, query_key), 0.0
        address = client_address(scope)
        wait = self.guesses.wait(address, token)
        if wait:  # the key is not even compared: a guess gets no answer
            return None, wait
        principal = authenticate(keys, headers, query_key)
        if principal is None:
            self.guesses.failed(address, token)
        return principal, 0.0

    def _check(self, scope: Scope, headers: Headers, state: RequestState) -> Refusal | None:
        try:
            path, raw = canonical_path(scope.get("raw_path") or scope["path"].encode())
        except BadPath as exc:
            return 400, f"{exc}; send the path in its plain form", []
        # Everything after this point, the upstream request included, sees only the canonical path.
        scope["path"], scope["raw_path"] = path, raw
        origin = headers.get("origin")
        # The dashboard's forms post from the proxy's own origin (the Host check below still applies).
        own = path.startswith("/dashboard/") and origin == f"http://{headers.get('host', '')}"
        if origin is not None and not own and origin.lower().rstrip("/") not in self.settings.limits.allowed_origins:
            return 403, "cross-origin requests are refused; add the origin to proxy.allowed_origins", []
        if self.loopback and not is_loopback_host(host_name(headers.get("host", ""))):
            return 403, "Host header is not a loopback name (DNS rebinding guard)", []
        match = self.table.match(scope["method"], path)
        state.route = match.route
        scope["path_params"] = match.params
        query_key = None
        if is_gemini(path):  # Gemini clients may send the key as `?key=`: it goes no further than here
            scope["query_string"], query_key = take_query_key(scope.get("query_string", b""))
        principal, wait = self._authenticate(scope, headers, query_key)
        state.principal = principal
        if match.route.access is Access.OPEN:
            return None
        if wait:
            retry = str(math.ceil(wait)).encode()
            return 429, "too many failed key checks from this client; retry later", [(b"retry-after", retry)]
        if principal is None:
            return 401, "missing or invalid API key", [(b"www-authenticate", b"Bearer")]
        if not match.allowed:
            allow = ", ".join(self.table.allowed_methods(path)).encode()
            return 405, f"{scope['method']} is not allowed on {path}", [(b"allow", allow)]
        if match.route.access is Access.ADMIN and not principal.operator:
            return 403, "this key may only use inference and memory endpoints; ask for an admin key", []
        limits = self.settings.limits
        if self.inflight >= limits.max_concurrent_requests or self.inflight_by.get(principal.name, 0) >= (
            self.per_key_limit
        ):
            self.counters.overloaded += 1
            return 503, "the memory proxy is at its concurrency limit; retry shortly", [(b"retry-after", b"1")]
        return None


def client_address(scope: Scope) -> str:
    """The address a request came from (what failed key checks are counted by)."""
    client = scope.get("client")
    return client[0] if client else "-"


def host_name(host_header: str) -> str:
    """The name in a Host header, without port or IPv6 brackets."""
    if host_header.startswith("["):
        return host_header[1 : host_header.find("]")] if "]" in host_header else ""
    return host_header.rpartition(":")[0] if host_header.count(":") == 1 else host_header
