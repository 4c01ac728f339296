"""Imports on both backends: all or nothing, and written in small batches other scopes' writes interleave with."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import replace
from pathlib import Path

import orjson
import pytest

from app import imports
from app.store import Memory, NewMemory
from tests.inprocess import Running, make_settings, marker, running

pytestmark = pytest.mark.timeout(120)
AddMany = Callable[[list[NewMemory]], Awaitable[list[Memory]]]


def jsonl(records: list[dict]) -> bytes:
    return b"".join(orjson.dumps(r) + b"\n" for r in records)


def wrap_add_many(p: Running, around: Callable[[AddMany, list[NewMemory]], Awaitable[list[Memory]]]) -> None:
    """Route the running store's add_many through `around` (the real write still happens inside it)."""
    store = p.ctx.store
    real: AddMany = store.add_many
    store.add_many = lambda items: around(real, items)


def test_batches_are_bounded_by_records_and_bytes() -> None:
    small = [(n, b"x" * 10) for n in range(1, 1201)]
    assert [len(b) for b in imports.batches(small)] == [500, 500, 200]
    big = [(n, b"y" * 100_000) for n in range(1, 8)]
    parts = imports.batches(big)
    assert all(sum(len(line) for _, line in b) <= imports.BATCH_BYTES for b in parts) and len(parts) == 4
    huge = [(1, b"z" * (imports.BATCH_BYTES + 1)), (2, b"z")]
    assert [len(b) for b in imports.batches(huge)] == [1, 1]  # a line past the budget is a batch of its own


@pytest.mark.parametrize(
    "bad_line",
    [
        {"content": "late", "created_at": "0001-01-01T00:00:00+14:00"},
        {"content": "late", "created_at": "9999-12-31T23:59:59-14:00"},
        {"content": "late\x00nul"},
        {"content": ["not", "text"]},
    ],
)
async def test_a_bad_line_late_in_an_import_stores_nothing(tmp_path: Path, store_url: str, bad_line: dict) -> None:
    m = marker()
    good = [{"content": f"line {i} {m} " + "w" * 600} for i in range(1200)]  # several batches before it
    async with running(tmp_path, settings=replace(make_settings(tmp_path), db_path=store_url)) as p:
        r = await p.client.post("/v1/memories/import", content=jsonl([*good, bad_line]))
        assert r.status_code == 400 and "line 1201" in r.text, r.text
        assert await p.memories("default-dev") == []


async def test_an_import_whose_write_fails_half_way_leaves_nothing(tmp_path: Path, store_url: str) -> None:
    m = marker()
    calls = 0

    async def fail_third(real: AddMany, items: list[NewMemory]) -> list[Memory]:
        nonlocal calls
        calls += 1
        if calls == 3:
            raise OSError("disk full (injected)")
        return await real(items)

    records = [{"user_id": "imp", "content": f"kept? {i} {m}"} for i in range(1400)]
    async with running(tmp_path, settings=replace(make_settings(tmp_path), db_path=store_url)) as p:
        await p.client.post("/v1/memories", json={"user_id": "imp", "content": f"there before {m}"})
        wrap_add_many(p, fail_third)
        r = await p.client.post("/v1/memories/import", content=jsonl(records))
        assert r.status_code == 500 and calls == 3, r.text
        left = [x["content"] for x in await p.memories("imp")]
        assert left == [f"there before {m}"]  # the two batches written were deleted again; nothing else was


async def test_another_scopes_write_lands_between_two_batches_of_a_large_import(tmp_path: Path, store_url: str) -> None:
    m = marker()
    # 40 lines of 90 kB: one transaction when batches counted records only.
    records = [{"user_id": "bulk", "content": f"{m} {i} " + "v" * 90_000} for i in range(40)]
    first_batch_written, other_written = asyncio.Event(), asyncio.Event()
    events: list[tuple[str, int]] = []

    async def ordered(real: AddMany, items: list[NewMemory]) -> list[Memory]:
        scope = items[0].user_id
        if scope == "bulk" and first_batch_written.is_set():
            await other_written.wait()  # a writer held by the import would never get here: the test times out
        written = await real(items)
        events.append((scope, sum(len(i.content) for i in items)))
        (first_batch_written if scope == "bulk" else other_written).set()
        return written

    async with running(tmp_path, settings=replace(make_settings(tmp_path), db_path=store_url)) as p:
        wrap_add_many(p, ordered)
        upload = asyncio.create_task(p.client.post("/v1/memories/import", content=jsonl(records), timeout=100))
        batch_wait = asyncio.create_task(first_batch_written.wait())
        await asyncio.wait([upload, batch_wait], return_when=asyncio.FIRST_COMPLETED)
        assert batch_wait.done(), (await upload).text
        r = await p.client.post("/v1/memories", json={"user_id": "other", "content": f"a single note {m}"})
        assert r.status_code == 201, r.text
        done = await upload
        assert done.status_code == 200 and done.json() == {"imported": 40, "skipped": 0}, done.text
        scopes = [scope for scope, _ in events]
        assert "other" in scopes and scopes.index("other") < len(scopes) - 1  # the import went on after it
        assert max(size for scope, size in events if scope == "bulk") <= imports.BATCH_BYTES
