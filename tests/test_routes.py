"""app/routes.py: health visibility, liveness, unknown memory paths, pass-through (in-process)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from app.config import ApiKey
from tests.inprocess import make_settings, running

pytestmark = pytest.mark.timeout(30)
KEYS = (ApiKey("pin-key", user_id="alice"), ApiKey("adm-key", admin=True))


async def test_the_anonymous_owner_gets_the_whole_health_report(tmp_path: Path) -> None:
    async with running(tmp_path) as p:
        report = (await p.client.get("/health")).json()
    assert {"status", "litellm", "memory_store", "requests_shed"} <= set(report)


async def test_liveness_answers_without_a_key_and_without_litellm(tmp_path: Path) -> None:
    settings = replace(make_settings(tmp_path), keys=KEYS)
    async with running(tmp_path, settings=settings) as p:
        for path in ("/health/liveliness", "/health/liveness"):
            r = await p.client.get(path)
            assert r.status_code == 200 and r.json() == "I'm alive!"


async def test_unknown_memory_paths_are_ours_not_litellms(tmp_path: Path) -> None:
    settings = replace(make_settings(tmp_path), keys=KEYS)
    async with running(tmp_path, settings=settings) as p:
        r = await p.client.get("/v1/memories/a/b", headers={"authorization": "Bearer pin-key"})
        assert r.status_code == 404 and "no such endpoint" in r.json()["error"]["message"]
        a = await p.client.get("/v1/memories/a/b", headers={"x-api-key": "pin-key", "anthropic-version": "1"})
        assert a.status_code == 404 and a.json()["type"] == "error"


async def test_a_wrong_method_is_405_with_allow(tmp_path: Path) -> None:
    async with running(tmp_path) as p:
        r = await p.client.put("/v1/memories")
    assert r.status_code == 405
    assert r.headers["allow"] == "DELETE, GET, POST"


async def test_litellm_controls_reach_litellm_only_from_admin_keys_and_only_when_listed(tmp_path: Path) -> None:
    from tests.inprocess import marker, upstream_requests

    settings = replace(make_settings(tmp_path), keys=KEYS)
    settings = replace(settings, limits=replace(settings.limits, admin_litellm_controls=frozenset({"num_retries"})))
    async with running(tmp_path, settings=settings) as p:
        seen = {}
        for key in ("pin-key", "adm-key"):
            needle = marker()
            body = {"model": "m", "input": needle, "num_retries": 8, "mock_response": "x"}
            headers = {"authorization": f"Bearer {key}", "x-litellm-num-retries": "8"}
            assert (await p.client.post("/v1/embeddings", json=body, headers=headers)).status_code == 200
            (sent,) = upstream_requests(needle)
            seen[key] = (set(sent["body"]), {h.lower() for h in sent["headers"]})
    assert seen["pin-key"][0] == {"model", "input"} and "x-litellm-num-retries" not in seen["pin-key"][1]
    assert seen["adm-key"][0] == {"model", "input", "num_retries"} and "x-litellm-num-retries" not in seen["adm-key"][1]


@pytest.mark.parametrize("path", ["/v1/scopes/a%2Fb", "/v1/scopes/a/b", "/v1/usage/x"])
async def test_unknown_paths_under_our_own_prefixes_are_ours_never_litellms(tmp_path: Path, path: str) -> None:
    async with running(tmp_path) as p:
        r = await p.client.patch(path, content=b"{}")
    assert r.status_code == 404 and "no such endpoint" in r.text
