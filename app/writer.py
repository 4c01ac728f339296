"""Writes off the response path: one background writer that batches memory inserts and usage records."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses

from app import logsafe
from app.redaction import Redactor
from app.store import MemoryStore, NewMemory
from app.store.usage import UsageRecord

log = logsafe.logger("memory_proxy.writer")
BATCH = 512
# A batch is retried for about 20 s (0.5 + 1 + 2 + 4 + 5 + 5 + 5) before it is counted as dropped:
# long enough for a PostgreSQL restart or failover, while later items wait in the queue behind it.
WRITE_ATTEMPTS = 8
RETRY_DELAY = 0.5  # seconds before the first retry; doubles after each failure, up to MAX_RETRY_DELAY
MAX_RETRY_DELAY = 5.0
LINGER = 0.02  # seconds a batch waits for company before it is written
USAGE_LINGER = 0.25  # … when it starts with a usage record: no one waits to read those back at once
Item = NewMemory | UsageRecord


class MemoryWriter:
    """Owns the queue of captured turns and usage records, and the task that writes them in batches."""

    def __init__(
        self, store: MemoryStore, redactor: Redactor, max_chars: int = 100_000, max_pending: int = 100_000
    ) -> None:
        self.store = store
        self.redactor = redactor
        self.max_chars = max_chars
        self.queue: asyncio.Queue[Item] = asyncio.Queue(max_pending)
        self.written = 0
        self.truncated = 0
        self.failures = 0
        self.dropped = 0
        self.last_error: str | None = None
        self.in_flight = 0  # items taken off the queue and not yet written (or given up on)
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Start the background task (inside the running loop)."""
        self._task = asyncio.create_task(self._run(), name="memory-writer")

    @property
    def pending(self) -> int:
        """Items queued and not yet taken for writing."""
        return self.queue.qsize()

    @property
    def idle(self) -> bool:
        """True when nothing is queued and nothing is being written: every capture so far is settled."""
        return self.pending == 0 and self.in_flight == 0

    def submit(self, items: list[NewMemory] | list[UsageRecord]) -> None:
        """Queue memories (cut to `max_chars`) or usage records; never blocks (or fails) the caller."""
        for item in items:
            if isinstance(item, NewMemory) and len(item.content) > self.max_chars:
                self.truncated += 1
                item = dataclasses.replace(item, content=item.content[: self.max_chars])
            try:
                self.queue.put_nowait(item)
            except asyncio.QueueFull:
                self.dropped += 1

    async def _run(self) -> None:
        while True:
            batch = [await self.queue.get()]
            self.in_flight = 1
            if self.queue.qsize() < BATCH:
                # Linger briefly so light traffic shares one commit instead of paying one per turn.
                await asyncio.sleep(USAGE_LINGER if isinstance(batch[0], UsageRecord) else LINGER)
            while len(batch) < BATCH and not self.queue.empty():
                batch.append(self.queue.get_nowait())
            self.in_flight = len(batch)
            try:
                await self._write(await self._redact(batch))
            finally:
                self.in_flight = 0
                for _ in batch:
                    self.queue.task_done()

    async def _redact(self, batch: list[Item]) -> list[Item]:
        """The batch with its memories' secrets replaced (those redaction failed on are left out)."""
        memories = await self.redactor.memories([i for i in batch if isinstance(i, NewMemory)])
        return [*memories, *(i for i in batch if isinstance(i, UsageRecord))]

    async def _write_batch(self, batch: list[Item]) -> None:
        """Memories first, so usage records in the same batch can count recalls of them."""
        memories = [i for i in batch if isinstance(i, NewMemory)]
        records = [i for i in batch if isinstance(i, UsageRecord)]
        if memories:
            await self.store.add_many(memories)
        if records:
            await self.store.add_usage(records)

    async def _write(self, batch: list[Item]) -> None:
        """Write one batch, retrying a locked or failing store with backoff before dropping it."""
        for attempt in range(WRITE_ATTEMPTS):
            try:
                await self._write_batch(batch)
            except Exception as exc:  # a failing store must not stop capture for good
                self.failures += 1
                self.last_error = type(exc).__name__
                log.warning(
                    "memory write of %d items failed (attempt %d): %s", len(batch), attempt + 1, self.last_error
                )
                if attempt + 1 < WRITE_ATTEMPTS:
                    await asyncio.sleep(min(RETRY_DELAY * 2**attempt, MAX_RETRY_DELAY))
            else:
                self.written += len(batch)
                self.last_error = None
                return
        self.dropped += len(batch)

    async def flush(self, seconds: float = 10.0) -> None:
        """Wait until everything queued so far is written (or failed)."""
        try:
            await asyncio.wait_for(self.queue.join(), seconds)
        except TimeoutError:
            log.warning("memory writer flush timed out with %d pending", self.queue.qsize())

    async def stop(self, seconds: float = 10.0) -> None:
        """Flush pending writes, then stop the task; what could not be written is counted as dropped."""
        await self.flush(seconds)
        unwritten = self.pending + self.in_flight
        if unwritten:
            self.dropped += unwritten
            log.warning("memory writer stopped with %d items unwritten (counted as dropped)", unwritten)
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
