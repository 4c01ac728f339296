"""Writing an import: checked whole first, then written in small batches, all or nothing."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import TypeVar

from app.store import MemoryStore, NewMemory

log = logging.getLogger("memory_proxy.imports")
# Each batch is one write transaction: another scope's write waits for one batch at most, so a batch
# is small in records and in bytes (a line past the byte budget is a batch of its own).
BATCH_RECORDS = 500
BATCH_BYTES = 256 * 1024
Lines = list[tuple[int, bytes]]  # (line number, line) as records.split_lines returns them
Parse = Callable[[Lines], list[NewMemory]]
T = TypeVar("T")  # what a batch is before it is parsed: lines, or records parsed already (the CLI)


def batches(lines: Lines) -> list[Lines]:
    """`lines` cut into write batches of at most BATCH_RECORDS records and BATCH_BYTES bytes."""
    out: list[Lines] = []
    current: Lines = []
    size = 0
    for numbered in lines:
        if current and (len(current) == BATCH_RECORDS or size + len(numbered[1]) > BATCH_BYTES):
            out.append(current)
            current, size = [], 0
        current.append(numbered)
        size += len(numbered[1])
    if current:
        out.append(current)
    return out


async def check_all(parts: list[Lines], parse: Parse) -> None:
    """Parse every batch off the event loop, keeping nothing: the first bad line raises before any write."""

    def check() -> None:
        for part in parts:
            parse(part)

    await asyncio.to_thread(check)


Prepare = Callable[[list[NewMemory]], Awaitable[list[NewMemory]]]  # e.g. the redactor, before a batch is written


async def write_all(
    store: MemoryStore, parts: Sequence[T], parse: Callable[[T], list[NewMemory]], *, prepare: Prepare | None = None
) -> int:
    """Write checked batches, each its own transaction; if one fails, delete what the others added, then raise.

    Returns how many memories were added (the rest were duplicates). Only the (scope, id) of each is
    held meanwhile, for the compensating delete: never the written memories themselves.
    """
    added: dict[str, list[str]] = {}  # scope -> ids written
    try:
        for part in parts:
            items = await asyncio.to_thread(parse, part)
            if prepare is not None:
                items = await prepare(items)
            for memory in await store.add_many(items):
                added.setdefault(memory.user_id, []).append(memory.id)
    except BaseException:  # a store failure or a cancelled request: nothing of this import stays
        await asyncio.shield(_undo(store, added))
        raise
    return sum(map(len, added.values()))


async def _undo(store: MemoryStore, added: dict[str, list[str]]) -> None:
    """The compensating delete of an import that failed half-way."""
    count = sum(map(len, added.values()))
    try:
        for scope, ids in added.items():
            for memory_id in ids:
                await store.delete(scope, memory_id)
    except Exception as exc:  # the store is failing: say what is left, so the operator can remove it
        log.error("an import failed half-way and %d of its memories could not be removed: %s", count, exc)
        raise
    if count:
        log.warning("an import failed half-way: its %d memories written so far were removed", count)
