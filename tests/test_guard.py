"""In-process tests of the front door: browser origins, DNS rebinding, client keys, load shedding."""

from __future__ import annotations

import asyncio
import time
from dataclasses import replace
from pathlib import Path

import pytest

from app.config import ApiKey
from tests.inprocess import make_settings, marker, running, upstream_requests

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
        for headers in BAD_CREDENTIALS:
            r = await p.client.post(path, json=chat(f"auth {m}", anthropic), headers=headers)
            assert r.status_code == 401, (headers, r.text)
            assert_dialect(r, anthropic)
            assert "sk-pinned" not in r.text and "sk-admin" not in r.text
            assert (await p.client.get("/v1/models", headers=headers)).status_code == 401
            assert (await p.client.get("/v1/memories", headers=headers)).status_code == 401
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
        assert health["memory_store"] == {"status": "disabled", "memory_errors": 0}
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
