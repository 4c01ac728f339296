"""Limits on memory writes: a maximum memory size, bounded imports that never stall the proxy."""

from __future__ import annotations

import asyncio
import time
from dataclasses import replace
from pathlib import Path

import orjson
import pytest

from app.config import ConfigError, Settings, load_settings
from tests.inprocess import chat_body, make_settings, marker, running

pytestmark = pytest.mark.timeout(120)


def with_memory(tmp_path: Path, store_url: str, **memory: int) -> Settings:
    """In-process settings on a store backend, with some `memory:` limits changed."""
    settings = make_settings(tmp_path)
    return replace(settings, db_path=store_url, memory=replace(settings.memory, **memory))


def jsonl(records: list[dict]) -> bytes:
    return b"".join(orjson.dumps(r) + b"\n" for r in records)


async def test_huge_import_keeps_health_and_other_scopes_writes_responsive(tmp_path: Path, store_url: str) -> None:
    m = marker()
    # The 150k lines of the probe; PostgreSQL writes ~1k rows/s here (the term index), so fewer.
    lines = 30_000 if store_url.startswith("postgresql") else 150_000
    filler = "x" * (120 if lines > 100_000 else 700)
    body = b"".join(
        b'{"user_id":"bulk","content":"bulk line %d %s %s"}\n' % (i, m.encode(), filler.encode()) for i in range(lines)
    )
    assert len(body) > 20 * 1024 * 1024  # parsing this on the event loop stalled it for seconds
    async with running(tmp_path, settings=with_memory(tmp_path, store_url)) as p:
        upload = asyncio.create_task(p.client.post("/v1/memories/import", content=body, timeout=300))
        health_waits: list[float] = []
        other_write: float | None = None
        while not upload.done():
            t0 = time.perf_counter()
            assert (await p.client.get("/health")).status_code == 200
            health_waits.append(time.perf_counter() - t0)
            if other_write is None and len(health_waits) == 20:
                t0 = time.perf_counter()
                r = await p.client.post("/v1/memories", json={"user_id": "other", "content": f"admin note {m}"})
                assert r.status_code == 201, r.text
                other_write = time.perf_counter() - t0
            await asyncio.sleep(0.05)
        r = await upload
        assert r.status_code == 200, r.text
        assert r.json() == {"imported": lines, "skipped": 0}
        assert max(health_waits) < 1.0, f"/health waited {max(health_waits):.2f} s behind the import"
        assert len(health_waits) > 20, "the import finished before the other scope could write"
        assert other_write is not None and other_write < 2.0, f"the other scope's write waited {other_write} s"


@pytest.mark.parametrize("anthropic", [False, True])
async def test_a_30mb_memory_is_refused_in_the_callers_dialect(tmp_path: Path, store_url: str, anthropic: bool) -> None:
    headers = {"anthropic-version": "2023-06-01"} if anthropic else {}
    async with running(tmp_path, settings=with_memory(tmp_path, store_url)) as p:
        r = await p.client.post("/v1/memories", json={"content": "y" * (30 * 1024 * 1024)}, headers=headers)
        assert r.status_code == 413, r.text
        error = r.json()
        if anthropic:
            assert error["type"] == "error" and error["error"]["type"] == "request_too_large"
        else:
            assert error["error"]["type"] == "request_too_large"
        assert "100000 characters" in r.text
        assert await p.memories("default-dev") == []


async def test_memory_at_the_limit_is_stored(tmp_path: Path, store_url: str) -> None:
    async with running(tmp_path, settings=with_memory(tmp_path, store_url, max_memory_chars=64)) as p:
        assert (await p.client.post("/v1/memories", json={"content": "z" * 64})).status_code == 201
        assert (await p.client.post("/v1/memories", json={"content": "z" * 65})).status_code == 413


async def test_import_over_the_line_limit_is_refused_before_writing(tmp_path: Path, store_url: str) -> None:
    records = [{"content": f"line {i}"} for i in range(11)]
    async with running(tmp_path, settings=with_memory(tmp_path, store_url, max_import_lines=10)) as p:
        r = await p.client.post("/v1/memories/import", content=jsonl(records))
        assert r.status_code == 413, r.text
        assert "limit is 10" in r.text
        assert await p.memories("default-dev") == []
        r = await p.client.post("/v1/memories/import", content=jsonl(records[:10]) + b"\n\n")
        assert r.json() == {"imported": 10, "skipped": 0}


async def test_import_over_the_size_limit_is_refused(tmp_path: Path, store_url: str) -> None:
    async with running(tmp_path, settings=with_memory(tmp_path, store_url, max_import_bytes=1024)) as p:
        r = await p.client.post("/v1/memories/import", content=jsonl([{"content": "w" * 2000}]))
        assert r.status_code == 413, r.text
        assert await p.memories("default-dev") == []


async def test_import_with_one_giant_record_writes_nothing(tmp_path: Path, store_url: str) -> None:
    records = [{"content": f"fine {i}"} for i in range(1200)] + [{"content": "g" * 100}]
    async with running(tmp_path, settings=with_memory(tmp_path, store_url, max_memory_chars=99)) as p:
        r = await p.client.post("/v1/memories/import", content=jsonl(records))
        assert r.status_code == 413, r.text
        assert "line 1201" in r.text
        assert await p.memories("default-dev") == []


async def test_capture_truncates_a_long_turn_and_counts_it(tmp_path: Path, store_url: str) -> None:
    m = marker()
    long_turn = f"{m} " + "long words " * 40
    async with running(tmp_path, settings=with_memory(tmp_path, store_url, max_memory_chars=60)) as p:
        r = await p.client.post("/v1/chat/completions", json=chat_body(long_turn))
        assert r.status_code == 200, r.text
        await p.drain()
        stored = {x["role"]: x["content"] for x in await p.memories("default-dev")}
        assert stored["user"] == long_turn.strip()[:60]
        assert stored["assistant"].startswith("Fake reply to:") and len(stored["assistant"]) == 60
        health = (await p.client.get("/health")).json()
        assert health["memory_store"]["truncated"] == 2


def test_limits_are_read_from_the_memory_section(tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    config.write_text("memory:\n  max_memory_chars: 500\n  max_import_mb: 0.5\n  max_import_lines: 7\n")
    memory = load_settings({"MEMORY_CONFIG": str(config)}).memory
    assert (memory.max_memory_chars, memory.max_import_bytes, memory.max_import_lines) == (500, 512 * 1024, 7)
    config.write_text("memory:\n  max_memory_chars: 0\n")
    with pytest.raises(ConfigError, match="memory.max_memory_chars"):
        load_settings({"MEMORY_CONFIG": str(config)})
