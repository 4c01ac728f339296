"""Redacting memories already stored: each one holding a credential is rewritten through the store's own delete and add.

Rewriting through `delete` and `add_many` keeps the term index, document counts and neighbour
context as every other write keeps them (both backends); the memory keeps its id, role, time,
model and metadata. Its recall count starts again from 0."""

from __future__ import annotations

import dataclasses

from app.redaction import redact
from app.store import MemoryStore, NewMemory


@dataclasses.dataclass
class RedactReport:
    """What a redaction run found: memories scanned, memories rewritten, credentials replaced, per scope."""

    scanned: int = 0
    memories: int = 0
    secrets: int = 0
    scopes: dict[str, int] = dataclasses.field(default_factory=dict)  # scope -> memories rewritten


async def redact_stored(store: MemoryStore, scopes: list[str]) -> RedactReport:
    """Scan `scopes` and replace every credential in place."""
    report = RedactReport()
    for scope in scopes:
        found = []
        async for memory in store.export(scope):
            report.scanned += 1
            out = redact(memory.content)
            if out.count:
                found.append((memory, out))
        for memory, out in found:
            fresh = NewMemory(
                scope, memory.role, out.text, memory.created_at, memory.model, memory.metadata, id=memory.id
            )
            # Deleted first: the id is the memory's, and an id may be stored once.
            if await store.delete(scope, memory.id):
                await store.add_many([fresh])
                report.memories += 1
                report.secrets += out.count
                report.scopes[scope] = report.scopes.get(scope, 0) + 1
    return report
