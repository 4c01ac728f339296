"""The memory store's interface and records; `open_store` picks the backend from the database URL."""

from __future__ import annotations

import builtins
import hashlib
import secrets
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any, NamedTuple, Protocol

import orjson

from app.store.objects import Owner
from app.store.retention import ScopeLimits
from app.store.usage import Mode, UsageFilter, UsageRecord

SEARCH_WEIGHTS = (1.0, 0.5)  # content, context (neighbouring turns, date)
NEIGHBOUR_CHARS = 600  # how much of each neighbouring turn goes into a memory's context
RERANK_CANDIDATES = 50  # second pass: how many first-pass matches are re-scored
NEIGHBOUR_BOOST = 0.3  # second pass: share of the adjacent turns' scores a candidate gains
# Recall's relevance gate counts a word's memories in a scope up to this many: past it the word is
# common there and weighs little whatever the exact count, and counting on would cost a large scope.
WORD_DOCS_CAP = 1000
EXPORT_PAGE = 1000  # rows per read while exporting a scope


@dataclass(frozen=True)
class NewMemory:
    """A memory to be written; `id` is kept when given (an import), else one is made."""

    user_id: str
    role: str
    content: str
    created_at: float = field(default_factory=time.time)
    model: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    id: str | None = None


@dataclass(frozen=True)
class Memory:
    """A stored memory."""

    id: str
    user_id: str
    role: str
    content: str
    created_at: float
    model: str | None
    metadata: dict[str, Any]
    recall_count: int = 0  # how many requests it was injected into (the recall log)
    last_recalled_at: float | None = None


# A search's results, best first: each memory with its relevance score. (An alias: inside the store
# classes `list` names their method.)
Found = list[tuple[Memory, float]]


class Held(NamedTuple):
    """Which of a question's terms (term keys) a memory's own text holds, and which only the turns around it hold."""

    own: frozenset[int]
    near: frozenset[int]


NOTHING_HELD = Held(frozenset(), frozenset())


@dataclass(frozen=True)
class Recall:
    """One recall's read of a scope: the best matches, the question's terms in and around each, the word counts."""

    found: Found  # best first, each with the store's score
    held: dict[str, Held]  # memory id -> the question's terms in its text, and those only in the turns around it
    size: int  # memories in the scope
    docs: dict[str, int]  # question word -> memories holding it in their own text (up to WORD_DOCS_CAP)


class InvalidCursor(ValueError):
    """A pagination cursor this server did not issue."""


class MemoryStore(Protocol):
    """What every backend offers, as coroutines; each call names its scope (except `scope_of`)."""

    async def add_many(self, items: list[NewMemory]) -> list[Memory]: ...
    async def list(self, user_id: str, limit: int, cursor: str | None) -> tuple[list[Memory], str | None]: ...
    async def get(self, user_id: str, memory_id: str) -> Memory | None: ...
    async def scope_of(self, memory_id: str) -> str | None: ...
    async def find_duplicate(self, item: NewMemory) -> Memory | None: ...
    async def delete(self, user_id: str, memory_id: str) -> bool: ...
    async def expired(self, before: float, limit: int, scope: str | None = None) -> builtins.list[tuple[str, str]]: ...
    async def over_quota(self, keep: int, limit: int, scope: str | None = None) -> builtins.list[tuple[str, str]]: ...
    async def scope_retention(self) -> dict[str, ScopeLimits]: ...
    async def set_scope_retention(self, user_id: str, limits: ScopeLimits) -> None: ...
    async def forget(self, user_id: str) -> int: ...
    async def search(self, user_id: str, query: str, limit: int) -> Found: ...
    async def recall(self, user_id: str, query: str, limit: int) -> Recall: ...
    def export(self, user_id: str) -> AsyncIterator[Memory]: ...
    async def stats(self) -> dict[str, Any]: ...
    async def add_usage(self, records: builtins.list[UsageRecord]) -> None: ...
    async def prune_usage(self, before: float) -> int: ...
    async def usage(self, f: UsageFilter) -> builtins.list[UsageRecord]: ...
    async def recent_usage(self, f: UsageFilter, limit: int) -> builtins.list[UsageRecord]: ...
    async def recall_log(self, user_id: str, memory_id: str) -> builtins.list[UsageRecord]: ...
    async def scope_summaries(self, user_id: str | None) -> builtins.list[dict[str, Any]]: ...
    async def scope_modes(self) -> dict[str, Mode]: ...
    async def set_scope_mode(self, user_id: str, mode: Mode) -> None: ...
    async def own_object(self, object_id: str, owner: Owner) -> None: ...
    async def object_owner(self, object_id: str) -> Owner | None: ...
    async def note_project(self, user_id: str, directory: str) -> None: ...
    async def project_directories(self) -> dict[str, str]: ...
    async def ping(self) -> None: ...
    async def close(self) -> None: ...


def content_hash(item: NewMemory) -> str:
    """The dedup key: a resent turn (same role, text and metadata) is the same memory."""
    meta = orjson.dumps(item.metadata, option=orjson.OPT_SORT_KEYS) if item.metadata else b""
    return hashlib.blake2b(f"{item.role}\0{item.content}\0".encode() + meta, digest_size=16).hexdigest()


def new_id() -> str:
    """A fresh memory id."""
    return "mem_" + secrets.token_hex(10)


def as_stored(item: NewMemory) -> Memory:
    """The memory an item becomes: its own id (an import) or a fresh one."""
    memory_id = item.id or new_id()
    return Memory(memory_id, item.user_id, item.role, item.content, item.created_at, item.model, item.metadata)


def metadata_text(metadata: dict[str, Any]) -> str:
    """Metadata as stored: JSON with sorted keys."""
    return orjson.dumps(metadata, option=orjson.OPT_SORT_KEYS).decode()


def is_postgres_url(url: str) -> bool:
    """True for a PostgreSQL connection URL (else the value is a SQLite path)."""
    return url.startswith(("postgresql://", "postgres://"))


async def open_store(url: str) -> MemoryStore:
    """The store for `url`: PostgreSQL for a postgresql:// URL, else a SQLite file (or `:memory:`)."""
    if is_postgres_url(url):
        from app.store.postgres import PostgresStore

        return await PostgresStore.open(url)
    from app.store.sqlite import SqliteStore

    return SqliteStore(url)
