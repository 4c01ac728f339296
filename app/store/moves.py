"""Moving a scope's memories into another scope through the store's own add and delete paths."""

from __future__ import annotations

from dataclasses import dataclass

from app.store import MemoryStore, NewMemory

MOVE_BATCH = 500  # memories added, then deleted, per step: a crash between the two leaves copies, never a loss


@dataclass(frozen=True)
class Moved:
    """What a move did: memories added to the target, and those the target already held."""

    moved: int
    already: int


async def move_scope(store: MemoryStore, source: str, target: str) -> Moved:
    """Every memory of `source` into `target` (oldest first, times and metadata kept), then out of
    `source`; the term index follows because both steps are the store's own add and delete."""
    if source == target:
        return Moved(0, 0)
    originals = [m async for m in store.export(source)]
    moved = 0
    for start in range(0, len(originals), MOVE_BATCH):
        batch = originals[start : start + MOVE_BATCH]
        copies = [NewMemory(target, m.role, m.content, m.created_at, m.model, m.metadata) for m in batch]
        moved += len(await store.add_many(copies))
        for m in batch:
            await store.delete(source, m.id)
    return Moved(moved, len(originals) - moved)
