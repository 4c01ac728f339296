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
