"""In-process tests of the front door: paths, origins, DNS rebinding, keys, fair load shedding, failures."""

from __future__ import annotations

import asyncio
import time
from dataclasses import replace
from pathlib import Path

import httpx
import pytest
from aiohttp import web

from app.config import ApiKey
from tests.inprocess import make_settings, marker, raw_request, running, upstream_requests

pytestmark = pytest.mark.timeout(30)


def chat(text: str, anthropic: bool = False) -> dict:
    body = {"model": "claude-fake" if anthropic else "fake-model", "messages": [{"role": "user", "content": text}]}
    if anthropic:
        body["max_tokens"] = 20
    return body


def assert_dialect(r, anthropic: bool) -> None:  # type: ignore[no-untyped-def]
    err = r.json()
    if anthropic:
        assert err["type"] == "error"
        assert err["error"]["type"] and err["error"]["message"]
    else:
        assert set(err["error"]) >= {"message", "type", "code"}


# --- browser origins ---------------------------------------------------------------------------


FOREIGN_ORIGINS = ("http://evil.example", "null", "http://localhost:3001", "https://localhost:3000")


@pytest.mark.parametrize(("path", "anthropic"), [("/v1/chat/completions", False), ("/v1/messages", True)])
async def test_foreign_origin_is_refused(tmp_path: Path, path: str, anthropic: bool) -> None:
    m = marker()
    async with running(tmp_path, allowed_origins=("http://localhost:3000",)) as p:
        for origin in FOREIGN_ORIGINS:
            r = await p.client.post(path, json=chat(f"cors {m}", anthropic), headers={"Origin": origin})
            pre = await p.client.options(path, headers={"Origin": origin, "Access-Control-Request-Method": "POST"})
            models = await p.client.get("/v1/models", headers={"Origin": origin})
            assert r.status_code == 403, (origin, r.text)
            assert_dialect(r, anthropic)
            for resp in (r, pre, models):
                assert resp.status_code == 403, origin
                assert resp.headers.get("access-control-allow-origin") not in ("*", origin)
    assert upstream_requests(m) == []


async def test_allowed_origin_passes(tmp_path: Path) -> None:
    m = marker()
    async with running(tmp_path, allowed_origins=("http://localhost:3000",)) as p:
        r = await p.client.post(
            "/v1/chat/completions", json=chat(f"cors ok {m}"), headers={"Origin": "http://localhost:3000"}
        )
        models = await p.client.get("/v1/models", headers={"Origin": "http://localhost:3000"})
        no_origin = await p.client.get("/v1/models")
    assert r.status_code == 200, r.text
    assert models.status_code == 200
    assert no_origin.status_code == 200
    assert r.headers.get("access-control-allow-origin") != "*"
    assert len(upstream_requests(m)) == 1


# --- DNS rebinding -----------------------------------------------------------------------------


async def test_non_loopback_host_is_refused(tmp_path: Path) -> None:
    m = marker()
    async with running(tmp_path) as p:
        for host in ("evil.example", "evil.example:8764", "127.0.0.1.evil.example", "localhost.evil.example"):
            r = await p.client.post("/v1/chat/completions", json=chat(f"rebind {m}"), headers={"Host": host})
            assert r.status_code == 403, (host, r.text)
            assert_dialect(r, False)
            assert (await p.client.get("/v1/models", headers={"Host": host})).status_code == 403
            assert (await p.client.get("/v1/memories", headers={"Host": host})).status_code == 403
    assert upstream_requests(m) == []


async def test_loopback_host_is_accepted(tmp_path: Path) -> None:
    async with running(tmp_path) as p:
        for host in ("localhost", "localhost:8764", "127.0.0.1", "[::1]:8764", "app.localhost"):
            r = await p.client.get("/v1/models", headers={"Host": host})
            assert r.status_code == 200, (host, r.text)


# --- client keys -------------------------------------------------------------------------------

KEYS = (ApiKey("sk-pinned-0123456789", user_id="pinned"), ApiKey("sk-admin-0123456789", admin=True))


BAD_CREDENTIALS = (
    {},
    {"Authorization": "Bearer sk-wrong"},
    {"x-api-key": "sk-wrong"},
    {"Authorization": "Bearer sk-pinned-012345678"},  # a prefix of a real key
    {"Authorization": "Basic c2stcGlubmVkLTAxMjM0NTY3ODk="},
)


@pytest.mark.parametrize(("path", "anthropic"), [("/v1/chat/completions", False), ("/v1/messages", True)])
async def test_missing_or_wrong_key_is_401(tmp_path: Path, path: str, anthropic: bool) -> None:
    m = marker()
    settings = replace(make_settings(tmp_path), keys=KEYS)
    async with running(tmp_path, settings=settings) as p:
        for n, headers in enumerate(BAD_CREDENTIALS):
            # Each from its own loopback address: past a few failures one address gets 429 (app.guessing).
            transport = httpx.AsyncHTTPTransport(local_address=f"127.0.3.{n + 1}")
            async with httpx.AsyncClient(base_url=p.url, transport=transport, timeout=15) as client:
                r = await client.post(path, json=chat(f"auth {m}", anthropic), headers=headers)
                assert r.status_code == 401, (headers, r.text)
                assert_dialect(r, anthropic)
                assert "sk-pinned" not in r.text and "sk-admin" not in r.text
                assert (await client.get("/v1/models", headers=headers)).status_code == 401
                assert (await client.get("/v1/memories", headers=headers)).status_code == 401
    assert upstream_requests(m) == []


async def test_valid_keys_pass_and_health_is_open(tmp_path: Path) -> None:
    m = marker()
    settings = replace(make_settings(tmp_path), keys=KEYS)
    async with running(tmp_path, settings=settings) as p:
        health = await p.client.get("/health")
        ready = await p.client.get("/health/readiness")
        bearer = await p.client.post(
            "/v1/chat/completions", json=chat(f"key {m}"), headers={"Authorization": "Bearer sk-pinned-0123456789"}
        )
        xkey = await p.client.post(
            "/v1/messages", json=chat(f"key {m}", True), headers={"x-api-key": "sk-admin-0123456789"}
        )
    assert health.status_code == 200, health.text
    assert health.json()["status"] in ("healthy", "degraded")
    assert ready.status_code in (200, 503)  # open (no 401), whatever the state
    assert bearer.status_code == 200, bearer.text
    assert bearer.headers["x-memory-user-id"] == "pinned"
    assert xkey.status_code == 200, xkey.text
    assert len(upstream_requests(m)) == 2


# --- load shedding -----------------------------------------------------------------------------


async def test_over_concurrency_limit_is_fast_503(tmp_path: Path) -> None:
    m = marker()
    async with running(tmp_path, max_concurrent_requests=1) as p:
        held = asyncio.create_task(p.client.post("/v1/chat/completions", json=chat(f"FAULT:hang {m}")))
        for _ in range(100):  # wait until the held request is in flight upstream
            if upstream_requests(m):
                break
            await asyncio.sleep(0.02)
        assert upstream_requests(m), "the first request never reached the upstream"

        started = time.perf_counter()
        r = await p.client.post("/v1/chat/completions", json=chat(f"second {m}"))
        elapsed = time.perf_counter() - started
        assert r.status_code == 503, r.text
        assert elapsed < 1.0
        assert int(r.headers["retry-after"]) >= 1
        assert_dialect(r, False)
        anth = await p.client.post("/v1/messages", json=chat(f"third {m}", True))
        assert anth.status_code == 503
        assert_dialect(anth, True)
        health = await p.client.get("/health")
        assert health.status_code == 200 and health.json()["requests_shed"] == 2  # observable under load

        held.cancel()  # the client gives up: the slot must come back
        with pytest.raises(asyncio.CancelledError):
            await held
        status = None
        for _ in range(100):
            status = (await p.client.post("/v1/chat/completions", json=chat(f"after {m}"))).status_code
            if status == 200:
                break
            await asyncio.sleep(0.02)
        assert status == 200
    assert [c for c in upstream_requests(m) if "second" in str(c["body"]) or "third" in str(c["body"])] == []


async def test_unknown_memory_route_and_wrong_method_answer_in_the_error_shape(tmp_path: Path) -> None:
    async with running(tmp_path) as p:
        for r in (await p.client.get("/v1/memories/a/b"), await p.client.put("/v1/memories")):
            assert r.status_code in (404, 405)
            assert set(r.json()["error"]) == {"message", "type", "code"}


async def test_memory_disabled_is_healthy(tmp_path: Path) -> None:
    from app.config import MemorySettings

    settings = replace(make_settings(tmp_path), memory=MemorySettings(enabled=False))
    async with running(tmp_path, settings=settings) as p:

        async def reachable() -> dict:
            return {"status": "reachable"}

        p.ctx.upstream.probe = reachable  # the fake upstream has no /health/liveliness
        health = (await p.client.get("/health")).json()
        assert health["memory_store"] == {"status": "disabled", "memory_errors": 0, "ignored_directories": 0}
        assert health["status"] == "healthy"
        assert (await p.client.get("/health/readiness")).status_code == 200


async def test_pinned_keys_reach_inference_but_not_litellm_management(tmp_path: Path) -> None:
    keys = (ApiKey("pinned-key", user_id="alpha"), ApiKey("admin-key", admin=True))
    settings = replace(make_settings(tmp_path), keys=keys)
    async with running(tmp_path, settings=settings) as p:
        pinned = {"Authorization": "Bearer pinned-key"}
        admin = {"Authorization": "Bearer admin-key"}
        for path in ("/key/generate", "/user/new", "/config/update", "/spend/logs", "/model/new"):
            r = await p.client.post(path, headers=pinned, json={})
            assert r.status_code == 403 and "inference" in r.json()["error"]["message"]
            assert (await p.client.post(path, headers=admin, json={})).status_code != 403  # reaches upstream
        assert (await p.client.get("/v1/models", headers=pinned)).status_code == 200


# --- paths are decided once, on what LiteLLM would see ----------------------------------------


def hit_recorder(seen: list[str]) -> web.Application:
    """An upstream that records every request's raw path and answers 200."""

    async def record(request: web.Request) -> web.Response:
        seen.append(request.raw_path)
        return web.json_response({"ok": True})

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", record)
    return app


TRAVERSAL_TARGETS = (
    b"/v1/models/../../model/info",
    b"/v1/models/%2e%2e/%2e%2e/model/info",
    b"/v1/models/%2E%2e/..%2Fmodel/info",
    b"/models/../routes",
    b"/v1/messages/../../routes",
    b"/v1/models/../../key/generate",
    b"/v1/embeddings/..%2F..%2Fkey%2Fgenerate",
    b"/v1/models/%252e%252e/%252e%252e/model/info",
    b"/v1/models/..\\..\\model/info",
    b"/v1/models/./../../spend/logs",
    b"//v1/models/..//..//model/info",
)


@pytest.mark.parametrize("method", ["GET", "POST"])
@pytest.mark.parametrize("credential", ["authorization", "x-api-key"])
async def test_traversal_past_the_pinned_key_rule_never_reaches_litellm(
    tmp_path: Path, method: str, credential: str
) -> None:
    seen: list[str] = []
    keys = (ApiKey("pinned-key", user_id="alice"), ApiKey("admin-key", admin=True))
    settings = replace(make_settings(tmp_path), keys=keys)
    auth = {"authorization": "Bearer pinned-key"} if credential == "authorization" else {"x-api-key": "pinned-key"}
    async with running(tmp_path, hit_recorder(seen), settings=settings) as p:
        for target in TRAVERSAL_TARGETS:
            body = b"{}" if method == "POST" else b""
            status, _, payload = await raw_request(
                p.port, method, target, {**auth, "content-type": "application/json"}, body
            )
            assert status == 400, (target, status, payload)
            assert b"error" in payload
        # The same rule for an admin key: a path is refused, never repaired into another one.
        status, _, _ = await raw_request(p.port, "GET", b"/v1/models/../../model/info", {"x-api-key": "admin-key"})
        assert status == 400
        # Plain inference paths still pass, forwarded exactly as decided.
        status, _, _ = await raw_request(p.port, "GET", b"//v1//models/openai%2Fgpt-4o", auth)
        assert status == 200
    assert seen == ["/v1/models/openai%2Fgpt-4o"]


# --- one key cannot take the whole concurrency limit ----------------------------------------------


async def test_one_key_cannot_starve_the_others(tmp_path: Path) -> None:
    m = marker()
    keys = (ApiKey("alice-key", user_id="alice"), ApiKey("admin-key", admin=True))
    settings = replace(make_settings(tmp_path), keys=keys)
    async with running(tmp_path, settings=settings, max_concurrent_requests=4) as p:
        alice = {"Authorization": "Bearer alice-key"}
        held = [
            asyncio.create_task(p.client.post("/v1/chat/completions", json=chat(f"FAULT:hang {m} {i}"), headers=alice))
            for i in range(2)  # half of 4: alice's whole share
        ]
        for _ in range(200):
            if len(upstream_requests(m)) == 2:
                break
            await asyncio.sleep(0.02)
        assert len(upstream_requests(m)) == 2
        third = await p.client.post("/v1/chat/completions", json=chat(f"more {m}"), headers=alice)
        assert third.status_code == 503, third.text
        admin = {"Authorization": "Bearer admin-key"}
        assert (await p.client.post("/v1/chat/completions", json=chat(f"admin {m}"), headers=admin)).status_code == 200
        assert (await p.client.get("/v1/memories", headers=admin)).status_code == 200
        for task in held:
            task.cancel()
        await asyncio.gather(*held, return_exceptions=True)


# --- failures, request ids, health for strangers ---------------------------------------------------


async def test_an_unexpected_exception_is_a_500_in_the_dialect_with_a_request_id(tmp_path: Path, caplog) -> None:  # type: ignore[no-untyped-def]
    async with running(tmp_path) as p:

        async def broken() -> dict:
            raise RuntimeError("boom")

        p.ctx.upstream.probe = broken
        r = await p.client.get("/health", headers={"x-request-id": "trace-42"})
        assert r.status_code == 500
        assert r.headers["x-request-id"] == "trace-42"
        assert set(r.json()["error"]) == {"message", "type", "code"} and "trace-42" in r.json()["error"]["message"]
        anth = await p.client.get("/health", headers={"anthropic-version": "2023-06-01"})
        assert anth.status_code == 500 and anth.json()["type"] == "error"
        assert anth.headers["x-request-id"].startswith("req_")
        ok = await p.client.get("/health/liveliness")
        assert ok.status_code == 200 and ok.json() == "I'm alive!"
    assert any("trace-42" in r.getMessage() and r.exc_info for r in caplog.records)


async def test_every_response_carries_a_request_id_and_odd_ones_are_replaced(tmp_path: Path) -> None:
    async with running(tmp_path) as p:
        echoed = await p.client.post("/v1/chat/completions", json=chat("id"), headers={"x-request-id": "abc-1"})
        replaced = await p.client.get("/health", headers={"x-request-id": "bad id <script>"})
    assert echoed.headers["x-request-id"] == "abc-1"
    assert replaced.headers["x-request-id"].startswith("req_")


async def test_health_tells_strangers_only_the_verdict(tmp_path: Path) -> None:
    settings = replace(make_settings(tmp_path), keys=KEYS)
    async with running(tmp_path, settings=settings) as p:
        stranger = (await p.client.get("/health")).json()
        ready = (await p.client.get("/health/readiness")).json()
        pinned = (await p.client.get("/health", headers={"Authorization": "Bearer sk-pinned-0123456789"})).json()
        admin = (await p.client.get("/health", headers={"Authorization": "Bearer sk-admin-0123456789"})).json()
    assert set(stranger) == {"status"} and stranger["status"] in ("healthy", "degraded")
    assert set(ready) == {"status"}
    assert set(pinned) == {"status"}
    assert "url" in admin["litellm"] and "memory_store" in admin


def internal_headers_upstream() -> web.Application:
    """An upstream that answers with LiteLLM's internal headers."""

    async def reply(request: web.Request) -> web.Response:
        return web.json_response(
            {"choices": [{"index": 0, "message": {"role": "assistant", "content": "hi"}}]},
            headers={
                "x-litellm-model-api-base": "http://10.1.2.3:9000/v1",
                "x-litellm-key-spend": "42.0",
                "x-litellm-version": "1.108.7",
                "x-litellm-call-id": "call-7",
            },
        )

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", reply)
    return app


async def test_litellm_internal_headers_reach_admin_keys_only(tmp_path: Path) -> None:
    settings = replace(make_settings(tmp_path), keys=KEYS)
    async with running(tmp_path, internal_headers_upstream(), settings=settings) as p:
        pinned = {"Authorization": "Bearer sk-pinned-0123456789"}
        admin = {"Authorization": "Bearer sk-admin-0123456789"}
        for path in ("/v1/chat/completions", "/v1/embeddings"):
            r = await p.client.post(path, json=chat("h"), headers=pinned)
            assert r.status_code == 200
            assert "x-litellm-model-api-base" not in r.headers and "x-litellm-key-spend" not in r.headers
            assert "x-litellm-version" not in r.headers and r.headers["x-litellm-call-id"] == "call-7"
            a = await p.client.post(path, json=chat("h"), headers=admin)
            assert a.headers["x-litellm-model-api-base"] == "http://10.1.2.3:9000/v1"


async def test_every_answer_is_reported_once_and_a_failing_report_breaks_nothing(tmp_path: Path) -> None:
    seen: list[tuple[str, int, float, float | None]] = []
    async with running(tmp_path) as p:
        p.app.on_answered = lambda state, status, seconds, first: seen.append(
            (state.route.name, status, seconds, first)
        )
        ok = await p.client.post("/v1/chat/completions", json=chat("report me"))
        assert ok.status_code == 200

        def boom(*_: object) -> None:
            raise RuntimeError("bookkeeping failed")

        p.app.on_answered = boom
        after = await p.client.post("/v1/chat/completions", json=chat("still fine"))
    assert after.status_code == 200
    chat_reports = [r for r in seen if r[0] == "chat"]
    assert len(chat_reports) == 1
    _, status, seconds, first = chat_reports[0]
    assert status == 200 and first is not None and 0 <= first <= seconds
    assert len(seen) == 1  # the failing report was not recorded, and the chat still answered
