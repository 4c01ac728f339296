"""Forwarding to LiteLLM: the pooled upstream client and the streaming pass-through response."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from typing import Any, Protocol

import aiohttp
import yarl
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from app import logsafe
from app.config import Settings
from app.errors import TOO_LARGE, ErrorShape, error_response, send_error, stream_error_event
from app.headers import client_response_headers

log = logsafe.logger("memory_proxy.proxy")


def redact_url(url: str) -> str:
    """A URL without its user:password part, for logs and health output."""
    scheme, sep, rest = url.partition("://")
    return f"{scheme}{sep}{rest.rpartition('@')[2]}" if sep else url


def upstream_target(scope: Scope) -> str:
    """The request's canonical path (app.paths) and query, still encoded (`%2F` stays `%2F`)."""
    path = scope.get("raw_path") or scope["path"].encode()
    query = scope.get("query_string", b"")
    return (path + b"?" + query if query else path).decode("latin-1")


class Recorder(Protocol):
    """Reads a 2xx reply as it passes and writes what it found before the client can act on it."""

    def feed(self, chunk: bytes) -> bool:
        """Read a chunk; True when `record` must run before this chunk is sent."""
        ...

    def finish(self) -> bool:
        """The reply ended whole; True when `record` must run before the end is sent."""
        ...

    async def record(self) -> None: ...


class BodyTooLarge(Exception):
    """The client's body passed the configured limit."""


class Upstream:
    """Owns the one pooled aiohttp session to LiteLLM for this process."""

    def __init__(self, settings: Settings) -> None:
        self.base_url = settings.litellm_base_url
        self._limits = settings.limits
        self.session: aiohttp.ClientSession | None = None

    async def start(self) -> None:
        """Open the pooled session (inside the running loop)."""
        self.session = aiohttp.ClientSession(
            # Idle connections are dropped before LiteLLM's uvicorn closes them (its keep-alive is 5 s):
            # a request sent on a connection the server is closing would fail and may not be retried.
            connector=aiohttp.TCPConnector(limit=0, keepalive_timeout=4, ttl_dns_cache=300),
            cookie_jar=aiohttp.DummyCookieJar(),
            auto_decompress=False,
            timeout=aiohttp.ClientTimeout(
                total=None, connect=self._limits.connect_timeout, sock_read=self._limits.read_timeout
            ),
            skip_auto_headers=("User-Agent", "Accept-Encoding"),
        )

    async def close(self) -> None:
        """Close the session and its pooled connections."""
        if self.session is not None:
            await self.session.close()

    async def probe(self) -> dict[str, Any]:
        """Ask LiteLLM's cheap liveliness endpoint (never /health, which calls every model)."""
        started = time.perf_counter()
        try:
            assert self.session is not None
            async with self.session.get(
                f"{self.base_url}/health/liveliness", timeout=aiohttp.ClientTimeout(total=2)
            ) as resp:
                await resp.read()
                ok = resp.status == 200
                out: dict[str, Any] = {"status": "reachable" if ok else "unhealthy", "http_status": resp.status}
        except (TimeoutError, aiohttp.ClientError, OSError) as exc:
            out = {"status": "unreachable", "error": type(exc).__name__}
        out["url"] = redact_url(self.base_url)
        out["latency_ms"] = round((time.perf_counter() - started) * 1000, 1)
        return out


CLIENT_GONE = 499  # nginx's code for "client closed the request": nobody receives it, the log shows it


async def read_body(request: Request, limit: int) -> bytes:
    """The whole request body, refusing past `limit` bytes before buffering more.

    Raises BodyTooLarge, or starlette's ClientDisconnect when the client hangs up mid-upload.
    """
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise BodyTooLarge
    chunks = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise BodyTooLarge
        chunks.append(chunk)
    return b"".join(chunks)


async def read_body_or_refusal(request: Request, limit: int, shape: ErrorShape) -> bytes | Response:
    """The whole body, or the response that ends the request: 413 past `limit`, 499 if the client left."""
    try:
        return await read_body(request, limit)
    except BodyTooLarge:
        return error_response(shape, 413, TOO_LARGE)
    except ClientDisconnect:
        return Response(status_code=CLIENT_GONE)


class ProxyResponse:
    """An ASGI response that makes exactly one upstream request and relays it as raw bytes.

    It watches for client disconnects the whole time (before the first byte too), so an
    abandoned request is cancelled upstream at once.
    """

    def __init__(
        self,
        upstream: Upstream,
        method: str,
        path_qs: str,
        headers: list[tuple[str, str]],
        body: bytes | AsyncIterator[bytes],
        error_shape: ErrorShape,
        extra_headers: list[tuple[str, str]] | None = None,
        tap: Callable[[bytes], None] | None = None,
        on_complete: Callable[[int], None] | None = None,
        body_size_exceeded: Callable[[], bool] = lambda: False,
        reveal_internals: bool = False,
        recorder: Recorder | None = None,
    ) -> None:
        self.upstream = upstream
        self.method = method
        # Already canonical and encoded (app.paths): yarl must not re-normalise or re-quote it.
        self.url = yarl.URL(upstream.base_url + path_qs, encoded=True)
        self.reveal_internals = reveal_internals
        self.headers = headers
        self.body = body
        self.error_shape = error_shape
        self.extra_headers = extra_headers or []
        self.tap = tap
        self.on_complete = on_complete
        self.recorder = recorder
        self.body_size_exceeded = body_size_exceeded
        self.body_done = asyncio.Event()
        self.client_gone = False
        self.status = 0
        if isinstance(body, bytes):
            self.body_done.set()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        relay = asyncio.current_task()
        assert relay is not None
        watcher = asyncio.create_task(self._watch_disconnect(receive, relay))
        try:
            await self._relay(send)
        except asyncio.CancelledError:
            if not self.client_gone:
                raise
            relay.uncancel()  # our own cancellation: the client left, nothing more to send
        finally:
            watcher.cancel()

    async def _watch_disconnect(self, receive: Receive, relay: asyncio.Task[None]) -> None:
        await self.body_done.wait()
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                self.client_gone = True
                relay.cancel()
                return

    async def _counted_body(self) -> AsyncIterator[bytes]:
        assert not isinstance(self.body, bytes)
        async for chunk in self.body:
            yield chunk
        self.body_done.set()

    async def _send_error(self, send: Send, status: int, message: str) -> None:
        self.status = status
        extra = [(n.encode("latin-1"), v.encode("latin-1")) for n, v in self.extra_headers]
        await send_error(send, self.error_shape, status, message, extra)

    async def _relay(self, send: Send) -> None:
        session = self.upstream.session
        assert session is not None
        data = self.body if isinstance(self.body, bytes) else self._counted_body()
        try:
            resp_cm = session.request(self.method, self.url, headers=self.headers, data=data, allow_redirects=False)
            resp = await resp_cm.__aenter__()
        except BodyTooLarge:
            return await self._send_error(send, 413, TOO_LARGE)
        except (aiohttp.ClientConnectorError, aiohttp.ConnectionTimeoutError):
            return await self._send_error(send, 502, "LiteLLM is unreachable at the configured LITELLM_BASE_URL")
        except (TimeoutError, aiohttp.ServerTimeoutError):
            return await self._send_error(send, 504, "LiteLLM did not answer in time")
        except aiohttp.ClientError as exc:
            if self.body_size_exceeded():
                return await self._send_error(send, 413, TOO_LARGE)
            return await self._send_error(send, 502, f"upstream connection failed ({type(exc).__name__})")
        self.body_done.set()
        try:
            await self._relay_response(resp, send)
        finally:
            await resp_cm.__aexit__(None, None, None)

    async def _relay_response(self, resp: aiohttp.ClientResponse, send: Send) -> None:
        self.status = resp.status
        headers = client_response_headers(
            ((k.decode("latin-1"), v.decode("latin-1")) for k, v in resp.raw_headers), self.reveal_internals
        )
        raw = [(n.encode("latin-1"), v.encode("latin-1")) for n, v in (*headers, *self.extra_headers)]
        await send({"type": "http.response.start", "status": resp.status, "headers": raw})
        tap = self.tap if 200 <= resp.status < 300 else None
        recorder = self.recorder if 200 <= resp.status < 300 else None
        try:
            async for chunk in resp.content.iter_any():
                if tap is not None:
                    try:
                        tap(chunk)
                    except Exception as exc:  # capture must never cut the client's response
                        log.warning("capture stopped reading this reply: %s", type(exc).__name__)
                        tap = self.on_complete = None
                if recorder is not None and recorder.feed(chunk):
                    await recorder.record()
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
        except (TimeoutError, aiohttp.ClientError) as exc:
            timed_out = isinstance(exc, TimeoutError)
            reason = "upstream timed out mid-response" if timed_out else "upstream broke mid-response"
            log.warning("%s %s: %s (%s)", self.method, self.url.path, reason, type(exc).__name__)
            self.status = 502
            if "text/event-stream" in resp.headers.get("content-type", ""):
                event = stream_error_event(self.error_shape, reason)
                await send({"type": "http.response.body", "body": event, "more_body": True})
            await send({"type": "http.response.body", "body": b""})
            return
        finally:
            # Also when the client hangs up right after the final event: the tap's own parser
            # decides whether what it saw is a complete reply.
            if self.on_complete is not None:
                self.on_complete(self.status)
        if recorder is not None and recorder.finish():
            await recorder.record()
        await send({"type": "http.response.body", "body": b""})
