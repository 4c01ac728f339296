"""In-process tests of the forwarding path: headers, bodies, limits, upstream failures and streams."""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import replace
from pathlib import Path

import httpx
import pytest
from aiohttp import web
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests import fake_provider
from tests.inprocess import (
    BackgroundStack,
    chat_body,
    closed_port,
    make_settings,
    marker,
    running,
    serve_proxy,
    upstream_requests,
)

pytestmark = pytest.mark.timeout(30)


def lower_keys(headers: dict) -> dict:
    return {k.lower(): v for k, v in headers.items()}


# --- headers -----------------------------------------------------------------------------------


async def test_hop_by_hop_and_cookies_not_forwarded_upstream(tmp_path: Path) -> None:
    m = marker()
    async with running(tmp_path) as p:
        r = await p.client.post(
            "/v1/chat/completions",
            json=chat_body(f"hello {m}"),
            headers={
                "Connection": "keep-alive, X-Named-Hop",
                "X-Named-Hop": "secret-hop",
                "Keep-Alive": "timeout=5",
                "TE": "trailers",
                "Trailer": "X-Checksum",
                "Proxy-Authorization": "Basic cHJveHk6c2VjcmV0",
                "Proxy-Connection": "keep-alive",
                "Cookie": "session=client-cookie",
                "X-End-To-End": "kept",
            },
        )
        assert r.status_code == 200, r.text
    (call,) = upstream_requests(m)
    sent = lower_keys(call["headers"])
    for name in ("x-named-hop", "keep-alive", "te", "trailer", "proxy-authorization", "proxy-connection", "cookie"):
        assert name not in sent, f"{name} was forwarded upstream: {sent}"
    assert "x-named-hop" not in sent.get("connection", "").lower()
    assert "client-cookie" not in json.dumps(sent)
    assert sent["x-end-to-end"] == "kept"


def header_upstream(hits: list[str]) -> web.Application:
    """An upstream that answers with hop-by-hop headers, a redirect and a slow pass-through stream."""

    async def hop(request: web.Request) -> web.Response:
        hits.append(request.path)
        return web.Response(
            text='{"ok": true}',
            content_type="application/json",
            headers={
                "Connection": "X-Upstream-Hop",
                "X-Upstream-Hop": "hop-value",
                "Keep-Alive": "timeout=5, max=100",
                "Proxy-Authenticate": "Basic realm=upstream",
                "Upgrade": "h2c",
                "X-Upstream-Kept": "kept",
            },
        )

    async def redirect(request: web.Request) -> web.Response:
        hits.append(request.path)
        return web.Response(status=302, headers={"Location": "/v1/redirect-target"})

    async def target(request: web.Request) -> web.Response:
        hits.append(request.path)
        return web.json_response({"followed": True})

    app = web.Application()
    app.router.add_get("/v1/hop", hop)
    app.router.add_post("/v1/chat/completions", hop)
    app.router.add_get("/v1/redirect", redirect)
    app.router.add_get("/v1/redirect-target", target)
    return app


@pytest.mark.parametrize("path", ["/v1/hop", "/v1/chat/completions"])
async def test_hop_by_hop_headers_not_returned_to_client(tmp_path: Path, path: str) -> None:
    hits: list[str] = []
    async with running(tmp_path, header_upstream(hits)) as p:
        if path == "/v1/hop":
            r = await p.client.get(path)
        else:
            r = await p.client.post(path, json=chat_body("hi"))
    assert r.status_code == 200, r.text
    assert hits == [path]
    for name in ("x-upstream-hop", "keep-alive", "proxy-authenticate", "upgrade"):
        assert name not in r.headers, f"{name} reached the client: {dict(r.headers)}"
    assert "x-upstream-hop" not in r.headers.get("connection", "").lower()
    assert r.headers["x-upstream-kept"] == "kept"


async def test_redirects_are_not_followed(tmp_path: Path) -> None:
    hits: list[str] = []
    async with running(tmp_path, header_upstream(hits)) as p:
        r = await p.client.get("/v1/redirect", follow_redirects=False)
    assert r.status_code == 302
    assert r.headers["location"] == "/v1/redirect-target"
    assert hits == ["/v1/redirect"]


@pytest.mark.parametrize("anthropic", [False, True])
async def test_client_credentials_replaced_by_master_key(tmp_path: Path, anthropic: bool) -> None:
    m = marker()
    async with running(tmp_path, settings=replace(make_settings(tmp_path), master_key="sk-master")) as p:
        path = "/v1/messages" if anthropic else "/v1/chat/completions"
        r = await p.client.post(
            path,
            json=chat_body(f"creds {m}", anthropic=anthropic),
            headers={"Authorization": "Bearer sk-client-secret", "x-api-key": "sk-client-secret"},
        )
        assert r.status_code == 200, r.text
        # the pass-through path too
        r = await p.client.post(
            "/v1/embeddings",
            json={"model": "e", "input": f"creds {m}"},
            headers={"Authorization": "Bearer sk-client-secret", "x-api-key": "sk-client-secret"},
        )
        assert r.status_code == 200, r.text
    calls = upstream_requests(m)
    assert len(calls) == 2
    for call in calls:
        sent = lower_keys(call["headers"])
        assert sent["authorization"] == "Bearer sk-master"
        assert "x-api-key" not in sent
        assert "sk-client-secret" not in json.dumps(sent)


# --- bodies ------------------------------------------------------------------------------------


def recording_fake(raw_log: list[tuple[bytes, str | None]]) -> web.Application:
    """The fake provider plus a middleware that records each raw body and its Content-Length."""

    @web.middleware
    async def record_raw(request: web.Request, handler):  # type: ignore[no-untyped-def]
        if request.method == "POST":
            raw_log.append((await request.read(), request.headers.get("Content-Length")))
        return await handler(request)

    app = fake_provider.build_app()
    app.middlewares.append(record_raw)
    return app


def check_raw_bodies(raw_log: list[tuple[bytes, str | None]], needle: str) -> dict:
    mine = [(raw, length) for raw, length in raw_log if needle.encode() in raw]
    assert len(mine) == 1, mine
    raw, length = mine[0]
    assert length is not None, "the rewritten body was sent without Content-Length"
    assert int(length) == len(raw)
    return json.loads(raw)


@pytest.mark.parametrize("anthropic", [False, True])
async def test_content_length_matches_rewritten_body(tmp_path: Path, anthropic: bool) -> None:
    raw_log: list[tuple[bytes, str | None]] = []
    m = marker()
    async with running(tmp_path, recording_fake(raw_log)) as p:
        seeded = await p.client.post(
            "/v1/memories",
            json={"content": f"The user's favourite fish is the zebrafish ünïcødé 🐟 — ok, they like it {m}"},
        )
        assert seeded.status_code == 201, seeded.text
        r = await p.client.post(
            "/v1/messages" if anthropic else "/v1/chat/completions",
            json=chat_body(f"which zebrafish do I like? ✨ {m}", anthropic=anthropic),
        )
        assert r.status_code == 200, r.text
        assert r.headers["x-memory-injected"] == "1"
    body = check_raw_bodies(raw_log, m)
    assert "zebrafish ünïcødé 🐟" in json.dumps(body, ensure_ascii=False)
    assert len(body["messages"]) == 2


# Hypothesis with a server in a background thread: function-scoped async fixtures don't mix with @given.
_unicode_text = st.text(alphabet=st.characters(blacklist_categories=("Cs",), min_codepoint=1), min_size=1, max_size=200)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(memory_text=_unicode_text, user_text=_unicode_text)
def test_content_length_matches_rewritten_body_unicode(tmp_path: Path, memory_text: str, user_text: str) -> None:
    stack = _unicode_stack(tmp_path)
    m = marker()
    proxy = stack.proxy
    assert proxy is not None
    with httpx.Client(base_url=proxy.url, timeout=15) as client:
        seeded = client.post(
            # The note holds the question's words too, so that it is relevant to it whatever they are.
            "/v1/memories",
            json={"content": f"kumquat {memory_text} {user_text} {m}-memo"},
            headers={"x-memory-user-id": m},
        )
        assert seeded.status_code == 201, seeded.text
        r = client.post(
            "/v1/chat/completions",
            json=chat_body(f"kumquat {user_text} {m}"),
            headers={"x-memory-user-id": m},
        )
        assert r.status_code == 200, r.text
        assert "x-memory-error" not in r.headers
    body = check_raw_bodies(_UNICODE_RAW, m)
    assert r.headers["x-memory-injected"] == "1"
    assert len(body["messages"]) == 2
    assert f"{m}-memo" in body["messages"][0]["content"]


_UNICODE_RAW: list[tuple[bytes, str | None]] = []
_UNICODE_STACKS: dict[str, BackgroundStack] = {}


def _unicode_stack(tmp_path: Path) -> BackgroundStack:
    if "stack" not in _UNICODE_STACKS:
        stack = BackgroundStack(tmp_path, recording_fake(_UNICODE_RAW))
        _UNICODE_STACKS["stack"] = stack.__enter__()
    return _UNICODE_STACKS["stack"]


@pytest.fixture(autouse=True, scope="module")
def _stop_unicode_stack():  # type: ignore[no-untyped-def]
    yield
    stack = _UNICODE_STACKS.pop("stack", None)
    if stack is not None:
        stack.__exit__(None, None, None)


# --- limits and malformed bodies ---------------------------------------------------------------


async def _chunked(data: bytes, size: int = 500):  # type: ignore[no-untyped-def]
    for i in range(0, len(data), size):
        yield data[i : i + size]
        await asyncio.sleep(0)


@pytest.mark.parametrize("path", ["/v1/chat/completions", "/v1/messages", "/v1/embeddings"])
@pytest.mark.parametrize("chunked", [False, True])
async def test_body_over_limit_is_413(tmp_path: Path, path: str, chunked: bool) -> None:
    m = marker()
    payload = json.dumps({"model": "fake-model", "input": m, "messages": [{"role": "user", "content": m + "x" * 5000}]})
    data = payload.encode()
    async with running(tmp_path, max_body_bytes=1000) as p:
        if chunked:
            r = await p.client.post(path, content=_chunked(data), headers={"content-type": "application/json"})
            assert r.request.headers.get("transfer-encoding") == "chunked"
            assert "content-length" not in r.request.headers
        else:
            r = await p.client.post(path, content=data, headers={"content-type": "application/json"})
        assert r.status_code == 413, r.text
        if path == "/v1/messages":
            assert r.json()["type"] == "error"
            assert r.json()["error"]["type"]
        else:
            assert r.json()["error"]["message"]
        # under the limit the same path works
        small = json.dumps({"model": "fake-model", "input": "ok", "messages": [{"role": "user", "content": "ok"}]})
        r = await p.client.post(path, content=small.encode(), headers={"content-type": "application/json"})
        assert r.status_code == 200, r.text
    if path != "/v1/embeddings":  # a chat body is refused before anything goes upstream
        assert upstream_requests(m) == []


def sink_upstream() -> web.Application:
    """An upstream that reads a whole (non-JSON) body and reports its size."""

    async def sink(request: web.Request) -> web.Response:
        data = await request.read()
        return web.json_response({"bytes": len(data)})

    app = web.Application(client_max_size=64 * 1024 * 1024)
    app.router.add_post("/v1/files", sink)
    return app


@pytest.mark.parametrize("label", ["multipart/form-data; boundary=x", "application/octet-stream"])
@pytest.mark.parametrize("chunked", [False, True])
async def test_streamed_pass_through_body_over_limit_is_413(tmp_path: Path, chunked: bool, label: str) -> None:
    """Uploads (multipart) stream through without buffering, other bodies are read whole (LiteLLM reads
    them as JSON, so routing fields must go); the limit holds either way."""
    headers = {"content-type": label}
    async with running(tmp_path, sink_upstream(), max_body_bytes=1000) as p:
        big = b"\x00" * 50_000
        r = await p.client.post("/v1/files", content=_chunked(big) if chunked else big, headers=headers)
        assert r.status_code == 413, r.text
        assert r.json()["error"]["message"]
        small = b"\x01" * 900
        r = await p.client.post("/v1/files", content=_chunked(small, 300) if chunked else small, headers=headers)
        assert r.status_code == 200, r.text
        assert r.json() == {"bytes": 900}


@pytest.mark.parametrize(
    ("path", "anthropic"), [("/v1/chat/completions", False), ("/chat/completions", False), ("/v1/messages", True)]
)
async def test_malformed_json_is_400_in_dialect(tmp_path: Path, path: str, anthropic: bool) -> None:
    async with running(tmp_path) as p:
        before = len(fake_provider.REQUESTS)
        for bad in (b"{not json", b'{"model": "x", "messages": [', b"\xff\xfe", b""):
            r = await p.client.post(path, content=bad, headers={"content-type": "application/json"})
            assert r.status_code == 400, (bad, r.text)
            err = r.json()
            if anthropic:
                assert err["type"] == "error"
                assert err["error"]["type"] == "invalid_request_error"
                assert err["error"]["message"]
            else:
                assert set(err["error"]) >= {"message", "type", "code"}
                assert err["error"]["type"] == "invalid_request_error"
    assert len(fake_provider.REQUESTS) == before


# --- upstream failures -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path", "anthropic"),
    [("POST", "/v1/chat/completions", False), ("POST", "/v1/messages", True), ("GET", "/v1/models", False)],
)
async def test_upstream_down_is_fast_502(tmp_path: Path, method: str, path: str, anthropic: bool) -> None:
    settings = make_settings(tmp_path, f"http://127.0.0.1:{closed_port()}")
    async with serve_proxy(settings) as p:
        started = time.perf_counter()
        if method == "POST":
            r = await p.client.post(path, json=chat_body("hi", anthropic=anthropic))
        else:
            r = await p.client.get(path)
        elapsed = time.perf_counter() - started
    assert r.status_code == 502, r.text
    assert elapsed < 1.0
    if anthropic:
        assert r.json()["type"] == "error"
    else:
        assert r.json()["error"]["type"]


@pytest.mark.parametrize("anthropic", [False, True])
async def test_silent_upstream_is_504(tmp_path: Path, anthropic: bool) -> None:
    async with running(tmp_path, read_timeout=0.5) as p:
        started = time.perf_counter()
        r = await p.client.post(
            "/v1/messages" if anthropic else "/v1/chat/completions",
            json=chat_body(f"FAULT:hang {marker()}", anthropic=anthropic),
        )
        elapsed = time.perf_counter() - started
    assert r.status_code == 504, r.text
    assert 0.4 < elapsed < 5
    if anthropic:
        assert r.json()["error"]["type"] == "timeout_error"
    else:
        assert r.json()["error"]["type"]


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize("anthropic", [False, True])
async def test_upstream_503_passes_through_once(tmp_path: Path, anthropic: bool, stream: bool) -> None:
    m = marker()
    async with running(tmp_path) as p:
        r = await p.client.post(
            "/v1/messages" if anthropic else "/v1/chat/completions",
            json=chat_body(f"FAULT:status=503 {m}", anthropic=anthropic, stream=stream),
        )
        await asyncio.sleep(0.3)  # a retry would show up here
    assert r.status_code == 503
    assert r.headers["retry-after"] == "7"
    assert r.json() == {"error": {"message": "fake provider failure", "type": "server_error"}}
    assert r.content == json.dumps({"error": {"message": "fake provider failure", "type": "server_error"}}).encode()
    assert len(upstream_requests(m)) == 1


# --- streams -----------------------------------------------------------------------------------


@pytest.mark.parametrize("anthropic", [False, True])
async def test_broken_stream_ends_with_error_event_and_is_not_stored(tmp_path: Path, anthropic: bool) -> None:
    m = marker()
    path = "/v1/messages" if anthropic else "/v1/chat/completions"
    async with running(tmp_path) as p:
        # control: an intact stream is captured, so the empty result below is meaningful
        ok = await p.client.post(
            path,
            json=chat_body(f"intact {m}", anthropic=anthropic, stream=True),
            headers={"x-memory-user-id": "ok-" + m},
        )
        assert ok.status_code == 200
        r = await p.client.post(
            path, json=chat_body(f"FAULT:break {m}", anthropic=anthropic, stream=True), headers={"x-memory-user-id": m}
        )
        assert r.status_code == 200
        await p.drain()
        assert len(await p.memories("ok-" + m)) == 2
        assert await p.memories(m) == []
    text = r.text
    assert "[DONE]" not in text
    events = [e for e in text.strip().split("\n\n") if e.strip()]
    last = events[-1]
    if anthropic:
        assert last.startswith("event: error\n")
        data = json.loads(last.split("data: ", 1)[1])
        assert data["type"] == "error" and data["error"]["message"]
        assert "message_stop" not in text
    else:
        assert last.startswith("data: ")
        data = json.loads(last.removeprefix("data: "))
        assert data["error"]["message"]
    assert len(events) > 1  # some of the stream got through before the error


@pytest.mark.parametrize("anthropic", [False, True])
async def test_stream_is_not_buffered(tmp_path: Path, anthropic: bool) -> None:
    async with running(tmp_path) as p:
        started = time.perf_counter()
        arrivals = []
        async with p.client.stream(
            "POST",
            "/v1/messages" if anthropic else "/v1/chat/completions",
            json=chat_body(f"FAULT:slow {marker()}", anthropic=anthropic, stream=True),
        ) as r:
            assert r.status_code == 200
            assert r.headers["content-type"].startswith("text/event-stream")
            async for chunk in r.aiter_raw():
                if chunk:
                    arrivals.append(time.perf_counter() - started)
    total = arrivals[-1]
    assert total > 1.0  # the fake takes 200 ms per event
    assert arrivals[0] < 0.5, arrivals
    assert arrivals[0] < total - 0.6


def logging_end(log: list[tuple[str, float]], body):  # type: ignore[no-untyped-def]
    """An aiohttp handler running `body(request)`, logging how it ended (completed or cut off) and when."""

    async def handler(request: web.Request) -> web.StreamResponse:
        await request.read()
        try:
            resp = await body(request)
        except (ConnectionResetError, asyncio.CancelledError) as exc:
            log.append((type(exc).__name__, time.monotonic()))
            raise
        log.append(("completed", time.monotonic()))
        return resp

    return handler


def slow_upstream(log: list[tuple[str, float]]) -> web.Application:
    """An upstream streaming an SSE event every 100 ms for 10 s; logs how its response ended."""

    async def slow(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)
        for i in range(100):
            await resp.write(f'data: {{"choices": [{{"delta": {{"content": "w{i} "}}}}]}}\n\n'.encode())
            await asyncio.sleep(0.1)
        return resp

    app = web.Application()
    app.router.add_post("/v1/chat/completions", logging_end(log, slow))
    app.router.add_post("/v1/slow", logging_end(log, slow))
    return app


async def raw_post(port: int, path: str, body: dict) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """Send a JSON POST over a bare socket, so the test can hang up at any moment."""
    data = json.dumps(body).encode()
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(data)}\r\n\r\n".encode()
        + data
    )
    await writer.drain()
    return reader, writer


async def hang_up(writer: asyncio.StreamWriter, log: list[tuple[str, float]]) -> tuple[str, float]:
    """Abort the client's connection; return how the upstream request ended and how soon after."""
    writer.transport.abort()
    closed_at = time.monotonic()
    for _ in range(30):
        if log:
            break
        await asyncio.sleep(0.05)
    assert log, "the upstream request kept running after the client hung up"
    how, when = log[0]
    return how, when - closed_at


@pytest.mark.parametrize("path", ["/v1/chat/completions", "/v1/slow"])
async def test_client_disconnect_cancels_upstream(tmp_path: Path, path: str) -> None:
    log: list[tuple[str, float]] = []
    async with running(tmp_path, slow_upstream(log)) as p:
        reader, writer = await raw_post(p.port, path, chat_body("talk slowly", stream=True))
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
        assert head.startswith(b"HTTP/1.1 200"), head
        first = await asyncio.wait_for(reader.read(100), 5)
        assert b"w0" in first
        how, after = await hang_up(writer, log)
    assert how in ("ConnectionResetError", "ClientConnectionResetError", "CancelledError"), how
    assert after < 1.0


# --- request body hygiene ----------------------------------------------------------------------


@pytest.mark.parametrize("anthropic", [False, True])
async def test_routing_fields_removed_before_forwarding(tmp_path: Path, anthropic: bool) -> None:
    m = marker()
    body = chat_body(f"routing {m}", anthropic=anthropic)
    evil = {"api_base": "http://evil.example/v1", "base_url": "http://evil.example", "api_key": "sk-stolen"}
    body.update(evil)
    body["metadata"] = {**evil, "user_id": "kept-meta"}
    async with running(tmp_path) as p:
        r = await p.client.post("/v1/messages" if anthropic else "/v1/chat/completions", json=body)
        assert r.status_code == 200, r.text
    (call,) = upstream_requests(m)
    assert_routing_fields_gone(call["body"], evil)


def assert_routing_fields_gone(sent: dict, evil: dict) -> None:
    for key in evil:
        assert key not in sent
        assert key not in sent["metadata"]
    assert sent["metadata"] == {"user_id": "kept-meta"}
    assert "evil.example" not in json.dumps(sent)
    assert "sk-stolen" not in json.dumps(sent)


async def test_routing_fields_removed_on_json_pass_through(tmp_path: Path) -> None:
    m = marker()
    evil = {"api_base": "http://evil.example/v1", "base_url": "http://evil.example", "api_key": "sk-stolen"}
    body = {"model": "fake-embed", "input": f"embed {m}", **evil, "metadata": {**evil, "user_id": "kept-meta"}}
    async with running(tmp_path) as p:
        r = await p.client.post("/v1/embeddings", json=body)
        assert r.status_code == 200, r.text
    (call,) = upstream_requests(m)
    assert_routing_fields_gone(call["body"], evil)


def waiting_upstream(log: list[tuple[str, float]], phase: str) -> web.Application:
    """An upstream that stalls before its headers (`head`) or in the middle of a JSON body (`body`)."""

    async def stall(request: web.Request) -> web.StreamResponse:
        if phase == "head":
            await asyncio.sleep(10)
        resp = web.StreamResponse(headers={"Content-Type": "application/json"})
        await resp.prepare(request)
        await resp.write(b'{"choices": [')
        await asyncio.sleep(10)
        return resp

    app = web.Application()
    app.router.add_post("/v1/chat/completions", logging_end(log, stall))
    return app


@pytest.mark.parametrize("phase", ["head", "body"])
async def test_client_disconnect_before_first_byte_or_non_streaming_cancels_upstream(tmp_path: Path, phase: str):
    log: list[tuple[str, float]] = []
    async with running(tmp_path, waiting_upstream(log, phase)) as p:
        tasks_before = len(asyncio.all_tasks())
        reader, writer = await raw_post(p.port, "/v1/chat/completions", chat_body("wait for me"))
        if phase == "body":
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
            assert head.startswith(b"HTTP/1.1 200"), head
        else:
            await asyncio.sleep(0.3)  # the proxy is now waiting for the upstream's headers
        how, after = await hang_up(writer, log)
        assert how != "completed" and after < 1.0
        # Nothing leaks: the pooled connection was closed, and no task lingers.
        for _ in range(40):
            if len(asyncio.all_tasks()) <= tasks_before:
                break
            await asyncio.sleep(0.05)
        assert len(asyncio.all_tasks()) <= tasks_before
        connector = p.ctx.upstream.session.connector
        assert not connector._acquired  # no connection still checked out


async def test_read_timeout_is_an_idle_timer_not_a_total(tmp_path: Path) -> None:
    """A stream that keeps ticking outlives read_timeout; only silence trips it."""
    async with running(tmp_path, read_timeout=0.5) as p:
        m = marker()
        async with p.client.stream("POST", "/v1/chat/completions", json=chat_body(f"FAULT:slow {m}", stream=True)) as r:
            raw = b"".join([chunk async for chunk in r.aiter_raw()])
        assert r.status_code == 200
        assert b"data: [DONE]" in raw and b'"error"' not in raw  # ~2.6 s of ticks, 0.2 s apart


async def test_path_and_query_reach_upstream_as_sent(tmp_path: Path) -> None:
    """A transparent proxy forwards `%2F` and odd queries byte for byte, not re-encoded."""
    seen: list[str] = []

    async def record(request: web.Request) -> web.Response:
        seen.append(request.raw_path)
        return web.json_response({})

    app = web.Application()
    app.router.add_route("GET", "/{tail:.*}", record)
    async with running(tmp_path, app) as p:
        r = await p.client.get("/v1/files/a%2Fb%20c?x=1%2B2&y=%C3%A9")
        assert r.status_code == 200
    assert seen == ["/v1/files/a%2Fb%20c?x=1%2B2&y=%C3%A9"]
