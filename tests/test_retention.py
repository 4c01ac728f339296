"""Retention on both stores: memories past max_age_days and beyond max_per_scope go, as erasure removes them."""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path

import orjson
import pytest

from app.config import RetentionSettings, Settings
from app.retention import DAY, Retention
from tests.inprocess import Running, make_settings, running

pytestmark = pytest.mark.timeout(60)


def _settings(tmp_path: Path, store_url: str, **retention: float) -> Settings:
    s = make_settings(tmp_path)
    return replace(s, db_path=store_url, memory=replace(s.memory, retention=RetentionSettings(**retention)))


async def _import(p: Running, scope: str, ages_days: list[float], word: str) -> None:
    now = time.time()
    lines = b"".join(
        orjson.dumps({"user_id": scope, "content": f"{word} note {i}", "created_at": now - age * DAY}) + b"\n"
        for i, age in enumerate(ages_days)
    )
    r = await p.client.post("/v1/memories/import", content=lines)
    assert r.json() == {"imported": len(ages_days), "skipped": 0}, r.text


async def _contents(p: Running, scope: str) -> list[str]:
    return sorted(m["content"] for m in await p.memories(scope))


async def test_memories_older_than_max_age_are_deleted_with_their_index_entries(tmp_path: Path, store_url: str) -> None:
    async with running(tmp_path, settings=_settings(tmp_path, store_url, max_age_days=30)) as p:
        await _import(p, "aged", [400, 31, 29, 1], "walrus")
        retention: Retention = p.ctx.retention
        assert await retention.run_once() == 2
        assert await _contents(p, "aged") == ["walrus note 2", "walrus note 3"]
        found = (await p.client.get("/v1/memories/search", params={"user_id": "aged", "q": "walrus note"})).json()
        assert sorted(m["content"] for m in found["data"]) == ["walrus note 2", "walrus note 3"]
        assert await retention.run_once() == 0  # idempotent: a second instance's pass finds nothing
        health = (await p.client.get("/health")).json()["memory_store"]
        assert health["retention_deleted_for_age"] == 2


async def test_a_scope_keeps_its_newest_max_per_scope(tmp_path: Path, store_url: str) -> None:
    async with running(tmp_path, settings=_settings(tmp_path, store_url, max_per_scope=3)) as p:
        await _import(p, "big", [5, 4, 3, 2, 1], "otter")
        await _import(p, "small", [9, 8], "heron")
        assert await p.ctx.retention.run_once() == 2
        assert await _contents(p, "big") == ["otter note 2", "otter note 3", "otter note 4"]
        assert await _contents(p, "small") == ["heron note 0", "heron note 1"]
        assert "memory_proxy_retention_deleted 2.0" in (await p.client.get("/metrics")).text


async def test_a_pass_runs_at_start_and_then_in_the_background(tmp_path: Path, store_url: str) -> None:
    settings = _settings(tmp_path, store_url, max_age_days=10, interval_seconds=0.05)
    async with running(tmp_path, settings=settings) as p:
        await _import(p, "bg", [50, 1], "lynx")
        deadline = time.monotonic() + 10
        while len(await p.memories("bg")) > 1 and time.monotonic() < deadline:
            await p.client.get("/health")
        assert await _contents(p, "bg") == ["lynx note 1"]


async def test_off_by_default_nothing_is_deleted(tmp_path: Path, store_url: str) -> None:
    async with running(tmp_path, settings=_settings(tmp_path, store_url)) as p:
        await _import(p, "keep", [3650, 1], "ibis")
        assert await p.ctx.retention.run_once() == 0
        assert len(await p.memories("keep")) == 2


async def test_a_scope_s_own_limits_override_the_config_through_the_api(tmp_path: Path, store_url: str) -> None:
    async with running(tmp_path, settings=_settings(tmp_path, store_url, max_age_days=30)) as p:
        await _import(p, "strict", [20, 5, 1], "crane")
        await _import(p, "forever", [400, 1], "moose")
        await _import(p, "plain", [400, 1], "bison")
        r = await p.client.patch("/v1/scopes/strict", json={"retention": {"max_age_days": 10, "max_per_scope": 1}})
        assert r.status_code == 200, r.text
        assert r.json()["retention"] == {"max_age_days": 10.0, "max_per_scope": 1} and r.json()["mode"] == "on"
        assert (await p.client.patch("/v1/scopes/forever", json={"retention": {"max_age_days": 0}})).status_code == 200
        assert await p.ctx.retention.run_once() == 3
        assert await _contents(p, "strict") == ["crane note 2"]
        assert await _contents(p, "forever") == ["moose note 0", "moose note 1"]
        assert await _contents(p, "plain") == ["bison note 1"]
        cleared = await p.client.patch("/v1/scopes/forever", json={"mode": "read", "retention": {"max_age_days": None}})
        assert cleared.json()["retention"] == {"max_age_days": None, "max_per_scope": None}
        assert cleared.json()["mode"] == "read"
        assert await p.ctx.retention.run_once() == 1  # back on the config's 30 days
        assert await _contents(p, "forever") == ["moose note 1"]


@pytest.mark.parametrize(
    "body",
    [
        {"retention": {"max_age_days": -1}},
        {"retention": {"max_per_scope": 2.5}},
        {"retention": {"max_per_scope": "many"}},
        {"retention": {"max_age": 3}},
        {"retention": 7},
        {},
    ],
)
async def test_bad_scope_retention_is_a_400_that_changes_nothing(tmp_path: Path, store_url: str, body: dict) -> None:
    async with running(tmp_path, settings=_settings(tmp_path, store_url)) as p:
        r = await p.client.patch("/v1/scopes/s", json=body)
        assert r.status_code == 400 and "error" in r.json(), r.text
        assert await p.ctx.store.scope_retention() == {}
