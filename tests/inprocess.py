"""In-process harness: a fake upstream (aiohttp) and the memory proxy (real uvicorn) in one event loop.

`running(settings, upstream)` starts both on free loopback ports and yields a `Running` with the
proxy's URL, the app (its Context is `app.state.ctx`) and the upstream's URL. `BackgroundStack` runs
the same thing in a thread with its own loop, for synchronous tests (hypothesis).
"""

from __future__ import annotations

import asyncio
import dataclasses
import socket
import threading
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import uvicorn
from aiohttp import web

from app.config import ProxyLimits, Settings
from app.main import create_app
from app.slowclients import TimedHttpToolsProtocol
from tests import fake_provider


def marker() -> str:
    """A unique word to find one test's requests in the upstream's log."""
    return "mk" + uuid.uuid4().hex[:12]


def closed_port() -> int:
    """A loopback port with nothing listening on it."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def make_settings(tmp_path: Path, base_url: str = "http://127.0.0.1:9", **limits: Any) -> Settings:
    """Settings for an in-process proxy; `limits` override ProxyLimits fields."""
    return Settings(
        litellm_base_url=base_url,
        db_path=str(tmp_path / f"memory-{uuid.uuid4().hex[:8]}.db"),
        limits=dataclasses.replace(ProxyLimits(), **limits),
    )


@asynccontextmanager
async def serve_upstream(app: web.Application | None = None) -> AsyncIterator[str]:
    """Serve an aiohttp app (default: the fake provider) on loopback; yields its base URL."""
    runner = web.AppRunner(
        app if app is not None else fake_provider.build_app(),
        shutdown_timeout=0.5,
        handler_cancellation=True,
        access_log=None,
    )
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


@dataclass
class Running:
    """A running proxy: its URL, app and settings, plus an httpx client bound to it."""

    url: str
    port: int
    app: Any
    settings: Settings
    client: httpx.AsyncClient

    @property
    def ctx(self) -> Any:
        return self.app.state.ctx

    async def drain(self, seconds: float = 5.0) -> None:
        """Wait until the memory writer has stored everything captured so far."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            health = (await self.client.get("/health")).json()
            if health["memory_store"].get("writer_idle", True):
                return
            await asyncio.sleep(0.02)
        raise AssertionError(f"the memory writer was not idle after {seconds} s")

    async def memories(self, scope: str) -> list[dict]:
        r = await self.client.get("/v1/memories", params={"user_id": scope, "limit": 100})
        assert r.status_code == 200, r.text
        return r.json()["data"]


@asynccontextmanager
async def serve_proxy(settings: Settings) -> AsyncIterator[Running]:
    """Serve create_app(settings) with a real uvicorn server on a free loopback port."""
    app = create_app(settings)
    config = uvicorn.Config(
        app,
        host="127.0.0.1",
        port=0,
        log_level="warning",
        lifespan="on",
        access_log=False,
        http=TimedHttpToolsProtocol,
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    try:
        while not server.started:
            if task.done():
                task.result()
                raise RuntimeError("uvicorn stopped before starting")
            await asyncio.sleep(0.01)
        port = server.servers[0].sockets[0].getsockname()[1]
        url = f"http://127.0.0.1:{port}"
        async with httpx.AsyncClient(base_url=url, timeout=15) as client:
            yield Running(url, port, app, settings, client)
    finally:
        server.should_exit = True
        try:
            await asyncio.wait_for(task, 10)
        except TimeoutError:
            server.force_exit = True
            task.cancel()


@asynccontextmanager
async def running(
    tmp_path: Path, upstream: web.Application | None = None, settings: Settings | None = None, **limits: Any
) -> AsyncIterator[Running]:
    """The fake provider (or `upstream`) plus a proxy pointed at it."""
    async with serve_upstream(upstream) as base_url:
        if settings is None:
            settings = make_settings(tmp_path, base_url, **limits)
        else:
            settings = dataclasses.replace(
                settings, litellm_base_url=base_url, limits=dataclasses.replace(settings.limits, **limits)
            )
        async with serve_proxy(settings) as proxy:
            yield proxy


async def raw_request(
    port: int, method: str, target: bytes, headers: dict[str, str] | None = None, body: bytes = b""
) -> tuple[int, dict[str, str], bytes]:
    """One request over a bare socket with the target exactly as given (no client normalises it)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    head = {"host": f"127.0.0.1:{port}", "content-length": str(len(body)), "connection": "close", **(headers or {})}
    lines = b"".join(f"{k}: {v}\r\n".encode() for k, v in head.items())
    writer.write(method.encode() + b" " + target + b" HTTP/1.1\r\n" + lines + b"\r\n" + body)
    await writer.drain()
    data = await asyncio.wait_for(reader.read(), 15)
    writer.close()
    status_line, _, rest = data.partition(b"\r\n")
    header_block, _, payload = rest.partition(b"\r\n\r\n")
    parsed = dict(line.decode("latin-1").split(": ", 1) for line in header_block.split(b"\r\n") if b": " in line)
    return int(status_line.split()[1]), {k.lower(): v for k, v in parsed.items()}, payload


def upstream_requests(needle: str) -> list[dict]:
    """Requests the fake provider (in this process) recorded whose body mentions `needle`."""
    return [r for r in fake_provider.REQUESTS if needle in str(r["body"])]


class BackgroundStack:
    """`running(...)` in a background thread with its own event loop, for synchronous tests."""

    def __init__(
        self, tmp_path: Path, upstream: web.Application | None = None, settings: Settings | None = None, **limits: Any
    ) -> None:
        self._args = (tmp_path, upstream, settings)
        self._limits = limits
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._main, daemon=True)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._error: BaseException | None = None
        self.proxy: Running | None = None

    def _main(self) -> None:
        try:
            asyncio.run(self._serve())
        except BaseException as exc:  # surfaced by __enter__
            self._error = exc
            self._ready.set()

    async def _serve(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        async with running(*self._args, **self._limits) as proxy:
            self.proxy = proxy
            self._ready.set()
            await self._stop.wait()

    def call(self, coro: Any, timeout: float = 15) -> Any:
        """Run a coroutine on the stack's loop and return its result."""
        assert self._loop is not None
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout)

    def __enter__(self) -> BackgroundStack:
        self._thread.start()
        self._ready.wait(20)
        if self._error is not None or self.proxy is None:
            raise RuntimeError("background stack failed to start") from self._error
        return self

    def __exit__(self, *exc: object) -> None:
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(15)


def chat_body(text: str, *, anthropic: bool = False, stream: bool = False, model: str | None = None) -> dict:
    """A minimal chat request body in either dialect."""
    body: dict = {
        "model": model or ("claude-fake" if anthropic else "fake-model"),
        "messages": [{"role": "user", "content": text}],
    }
    if anthropic:
        body["max_tokens"] = 50
    if stream:
        body["stream"] = True
    return body
