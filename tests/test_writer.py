"""The capture writer: batches, retries a failing store, never blocks the caller."""

from __future__ import annotations

import asyncio

import pytest

from app import writer as writer_mod
from app.redaction import Redactor
from app.store import NewMemory
from app.writer import MemoryWriter


class FlakyStore:
    """A store whose first `fail` writes raise, as a locked database would."""

    def __init__(self, fail: int) -> None:
        self.fail = fail
        self.batches: list[list[NewMemory]] = []

    async def add_many(self, items: list[NewMemory]) -> list:
        if self.fail:
            self.fail -= 1
            raise RuntimeError("database is locked")
        self.batches.append(items)
        return items


class GatedStore:
    """A store whose writes wait until the test opens the gate."""

    def __init__(self) -> None:
        self.gate = asyncio.Event()
        self.written: list[NewMemory] = []

    async def add_many(self, items: list[NewMemory]) -> list:
        await self.gate.wait()
        self.written.extend(items)
        return items


@pytest.fixture(autouse=True)
def fast_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(writer_mod, "RETRY_DELAY", 0.01)


async def test_a_failed_batch_is_retried_not_lost():
    store = FlakyStore(fail=2)
    w = MemoryWriter(store, Redactor())  # type: ignore[arg-type]
    w.start()
    w.submit([NewMemory("s", "user", f"turn {i}") for i in range(3)])
    await w.flush(5)
    await w.stop()
    assert [m.content for b in store.batches for m in b] == ["turn 0", "turn 1", "turn 2"]
    assert (w.written, w.failures, w.dropped, w.last_error) == (3, 2, 0, None)


async def test_a_batch_that_keeps_failing_is_counted_as_dropped():
    store = FlakyStore(fail=99)
    w = MemoryWriter(store, Redactor())  # type: ignore[arg-type]
    w.start()
    w.submit([NewMemory("s", "user", "lost turn")])
    await w.flush(5)
    await w.stop()
    assert (w.written, w.failures, w.dropped, w.last_error) == (0, writer_mod.WRITE_ATTEMPTS, 1, "RuntimeError")


async def test_a_store_down_for_six_attempts_loses_nothing():
    # a database restart: the batch waits for it instead of being dropped after a few tries
    store = FlakyStore(fail=6)
    w = MemoryWriter(store, Redactor())  # type: ignore[arg-type]
    w.start()
    w.submit([NewMemory("s", "user", "kept turn")])
    await w.flush(5)
    await w.stop()
    assert (w.written, w.failures, w.dropped, w.last_error) == (1, 6, 0, None)


async def test_items_unwritten_at_stop_are_counted_as_dropped():
    store = GatedStore()  # never opened: the store hangs
    w = MemoryWriter(store, Redactor())  # type: ignore[arg-type]
    w.start()
    w.submit([NewMemory("s", "user", f"t{i}") for i in range(3)])
    await w.stop(0.2)
    assert (w.written, w.dropped) == (0, 3)


async def test_light_traffic_shares_one_batch():
    store = FlakyStore(fail=0)
    w = MemoryWriter(store, Redactor())  # type: ignore[arg-type]
    w.start()
    for i in range(5):  # arriving within the linger window
        w.submit([NewMemory("s", "user", f"t{i}")])
    await w.flush(5)
    await w.stop()
    assert len(store.batches) == 1 and len(store.batches[0]) == 5


async def test_idle_only_when_nothing_is_queued_or_being_written():
    store = GatedStore()
    w = MemoryWriter(store, Redactor())  # type: ignore[arg-type]
    w.start()
    assert w.idle
    w.submit([NewMemory("s", "user", "a"), NewMemory("s", "user", "b")])
    assert not w.idle and w.pending == 2
    for _ in range(100):  # the batch leaves the queue but is not written yet
        await asyncio.sleep(0.01)
        if w.pending == 0:
            break
    assert w.pending == 0 and w.in_flight == 2
    assert not w.idle, "a batch being written is not idle"
    store.gate.set()
    await w.flush(5)
    assert w.idle and len(store.written) == 2
    await w.stop()
