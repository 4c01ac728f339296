"""Retention: deletes memories older than `max_age_days` and those beyond a scope's newest `max_per_scope`.

A pass runs at start-up and then every `interval_seconds`, in bounded batches; deletes go through
the store's own `delete` (index entries, neighbour context and purge included), so retention
removes a memory exactly as erasure does."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Any

from app.config import RetentionSettings
from app.store import MemoryStore
from app.store.retention import ScopeLimits

log = logging.getLogger("memory_proxy.retention")
BATCH = 500  # memories found per query
MAX_BATCHES = 20  # per pass and rule: a backlog drains over several passes instead of holding the store
DAY = 86_400.0


class InvalidLimits(ValueError):
    """A scope's retention limits that are not numbers of the right kind."""


def scope_limits(raw: Any) -> ScopeLimits:
    """A scope's own retention limits from `{"max_age_days": …, "max_per_scope": …}` (null: the config's; 0: none)."""
    if not isinstance(raw, dict) or set(raw) - {"max_age_days", "max_per_scope"}:
        raise InvalidLimits('retention must be {"max_age_days": days|0|null, "max_per_scope": count|0|null}')
    age, keep = raw.get("max_age_days"), raw.get("max_per_scope")
    if age is not None and (isinstance(age, bool) or not isinstance(age, int | float) or age < 0):
        raise InvalidLimits("retention.max_age_days must be a number of days, 0 (no limit) or null (the config's)")
    if keep is not None and (isinstance(keep, bool) or not isinstance(keep, int) or keep < 0):
        raise InvalidLimits("retention.max_per_scope must be a whole number, 0 (no limit) or null (the config's)")
    return (float(age) if age is not None else None, keep)


class Retention:
    """Owns the retention passes over a store, and their counters."""

    def __init__(self, store: MemoryStore, settings: RetentionSettings) -> None:
        self.store = store
        self.settings = settings
        self.deleted_for_age = 0  # memories deleted for their age
        self.deleted_for_count = 0  # memories deleted beyond their scope's newest max_per_scope
        self.failures = 0
        self._task: asyncio.Task[None] | None = None

    async def _delete(self, found: list[tuple[str, str]]) -> int:
        # Another instance may have deleted some first: those count nothing here.
        return sum([await self.store.delete(scope, memory_id) for scope, memory_id in found])

    async def _pass(self, age_days: float | None, keep: int | None, now: float, scope: str | None) -> None:
        """Both rules over every scope without its own limits (`scope` None), or over one scope."""
        if age_days:  # None and 0: no limit
            for _ in range(MAX_BATCHES):
                found = await self.store.expired(now - age_days * DAY, BATCH, scope)
                self.deleted_for_age += await self._delete(found)
                if len(found) < BATCH:
                    break
        if keep:
            for _ in range(MAX_BATCHES):
                found = await self.store.over_quota(keep, BATCH, scope)
                self.deleted_for_count += await self._delete(found)
                if len(found) < BATCH:
                    break

    async def run_once(self, now: float | None = None) -> int:
        """One pass: the config's limits, then each scope's own (None follows the config); how many it deleted."""
        before = self.deleted_for_age + self.deleted_for_count
        now = now if now is not None else time.time()
        s = self.settings
        await self._pass(s.max_age_days, s.max_per_scope, now, None)
        for scope, (age, keep) in (await self.store.scope_retention()).items():
            await self._pass(
                s.max_age_days if age is None else age, s.max_per_scope if keep is None else keep, now, scope
            )
        return self.deleted_for_age + self.deleted_for_count - before

    async def _run(self) -> None:
        while True:
            try:
                deleted = await self.run_once()
                if deleted:
                    log.info("retention deleted %d memories", deleted)
            except Exception as exc:  # a failing pass is retried at the next interval
                self.failures += 1
                log.warning("retention pass failed: %s", type(exc).__name__)
            await asyncio.sleep(self.settings.interval_seconds)

    def start(self) -> None:
        """Run a pass now and then one every interval, in the background (a scope may set limits at any time)."""
        self._task = asyncio.create_task(self._run(), name="memory-retention")

    async def stop(self) -> None:
        """Stop the background passes."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
