"""app/store/moves.py: a scope's memories moved into another scope, on both backends."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from app.store import MemoryStore, NewMemory, open_store
from app.store.moves import move_scope


@pytest.fixture
async def store(store_url: str) -> AsyncIterator[MemoryStore]:
    s = await open_store(store_url)
    yield s
    await s.close()


async def test_move_keeps_content_times_and_search(store: MemoryStore) -> None:
    await store.add_many(
        [
            NewMemory(
                "claude-cli", "user", "the staging database listens on port 5433", 1_700_000_000.0, "m1", {"k": 1}
            ),
            NewMemory("claude-cli", "assistant", "noted: staging on 5433", 1_700_000_001.0),
            NewMemory("local:alpha-3f2a9c", "assistant", "noted: staging on 5433", 1_700_000_001.0),
            NewMemory("codex-cli", "user", "the staging database is elsewhere", 1_700_000_002.0),
        ]
    )
    done = await move_scope(store, "claude-cli", "local:alpha-3f2a9c")
    assert (done.moved, done.already) == (1, 1)  # the target already held one of them
    assert (await store.list("claude-cli", 10, None))[0] == []
    assert not (await store.search("claude-cli", "staging database port", 10))
    moved = [m async for m in store.export("local:alpha-3f2a9c")]
    assert [(m.content, m.created_at) for m in moved] == [
        ("the staging database listens on port 5433", 1_700_000_000.0),
        ("noted: staging on 5433", 1_700_000_001.0),
    ]
    assert (moved[0].model, moved[0].metadata) == ("m1", {"k": 1})
    found = await store.search("local:alpha-3f2a9c", "staging database port", 10)
    assert found and found[0][0].content == "the staging database listens on port 5433"
    assert [m.content async for m in store.export("codex-cli")] == ["the staging database is elsewhere"]
    assert (await store.stats())["scopes"] == {"local:alpha-3f2a9c": 2, "codex-cli": 1}


async def test_move_into_itself_or_from_nothing_changes_nothing(store: MemoryStore) -> None:
    await store.add_many([NewMemory("a", "user", "one", 1.0)])
    assert await move_scope(store, "a", "a") == await move_scope(store, "empty", "a")
    assert [m.content async for m in store.export("a")] == ["one"]
