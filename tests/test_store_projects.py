"""app/store/sqlite_projects.py and postgres_projects.py: each project scope's directory, on both backends."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from app.store import MemoryStore, open_store


@pytest.fixture
async def store(store_url: str) -> AsyncIterator[MemoryStore]:
    s = await open_store(store_url)
    yield s
    await s.close()


async def test_project_directories_are_kept_per_scope(store: MemoryStore) -> None:
    assert await store.project_directories() == {}
    await store.note_project("local:alpha-3f2a9c", "/src/alpha")
    await store.note_project("alice:alpha-3f2a9c", "/src/alpha")
    await store.note_project("local:alpha-3f2a9c", "/src/alpha2")  # the latest report wins
    assert await store.project_directories() == {
        "local:alpha-3f2a9c": "/src/alpha2",
        "alice:alpha-3f2a9c": "/src/alpha",
    }
