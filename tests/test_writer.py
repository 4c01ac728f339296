"""The capture writer: batches, retries a failing store, never blocks the caller."""

from __future__ import annotations

import asyncio
import functools
from typing import Any

import pytest

from app import writer as writer_mod
from app.store import NewMemory
from app.writer import MemoryWriter


class FlakyStore:
    """A store whose first `fail` writes raise, as a locked database would."""

    def __init__(self, fail: int) -> None:
        self.fail = fail
        self.batches: list[list[NewMemory]] = []

    def add_many(self, items: list[NewMemory]) -> list:
        if self.fail:
            self.fail -= 1
            raise RuntimeError("database is locked")
        self.batches.append(items)
        return items

    async def call(self, fn: Any, *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(None, functools.partial(fn, *args))


@pytest.fixture(autouse=True)
def fast_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(writer_mod, "RETRY_DELAY", 0.01)


async def test_a_failed_batch_is_retried_not_lost():
    store = FlakyStore(fail=2)
    w = MemoryWriter(store)  # type: ignore[arg-type]
    w.start()
    w.submit([NewMemory("s", "user", f"turn {i}") for i in range(3)])
    await w.flush(5)
    await w.stop()
    assert [m.content for b in store.batches for m in b] == ["turn 0", "turn 1", "turn 2"]
    assert (w.written, w.failures, w.dropped, w.last_error) == (3, 2, 0, None)


async def test_a_batch_that_keeps_failing_is_counted_as_dropped():
    store = FlakyStore(fail=99)
    w = MemoryWriter(store)  # type: ignore[arg-type]
    w.start()
    w.submit([NewMemory("s", "user", "lost turn")])
    await w.flush(5)
    await w.stop()
    assert (w.written, w.failures, w.dropped, w.last_error) == (0, writer_mod.WRITE_ATTEMPTS, 1, "RuntimeError")


async def test_light_traffic_shares_one_batch():
    store = FlakyStore(fail=0)
    w = MemoryWriter(store)  # type: ignore[arg-type]
    w.start()
    for i in range(5):  # arriving within the linger window
        w.submit([NewMemory("s", "user", f"t{i}")])
    await w.flush(5)
    await w.stop()
    assert len(store.batches) == 1 and len(store.batches[0]) == 5
