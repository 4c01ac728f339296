"""The PostgreSQL side of usage: the usage, recalls and scope_modes tables, mixed into `PostgresStore`."""

from __future__ import annotations

import time
from typing import Any

import asyncpg
import orjson

from app.store.usage import (
    RECALL_LOG_LIMIT,
    SCOPES_SQL,
    USAGE_COLUMNS,
    Mode,
    UsageFilter,
    UsageRecord,
    scope_summary,
    usage_conditions,
    usage_record,
)

M002_USAGE = (
    "m002_usage",
    """
    CREATE TABLE usage (
        id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        request_id TEXT NOT NULL,
        at DOUBLE PRECISION NOT NULL,
        user_id TEXT NOT NULL,
        client TEXT,
        model TEXT,
        endpoint TEXT NOT NULL,
        status INTEGER NOT NULL,
        latency_ms DOUBLE PRECISION NOT NULL,
        ttfb_ms DOUBLE PRECISION,
        input_tokens BIGINT,
        output_tokens BIGINT,
        injected TEXT NOT NULL DEFAULT '[]',
        captured INTEGER NOT NULL DEFAULT 0
    );
    CREATE INDEX usage_scope_time ON usage (user_id, at);
    CREATE INDEX usage_time ON usage (at);
    CREATE TABLE recalls (memory_id TEXT NOT NULL, usage_id BIGINT NOT NULL, at DOUBLE PRECISION NOT NULL);
    CREATE INDEX recalls_memory ON recalls (memory_id, at DESC);
    CREATE INDEX recalls_usage ON recalls (usage_id);
    ALTER TABLE memories ADD COLUMN recall_count INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE memories ADD COLUMN last_recalled_at DOUBLE PRECISION;
    CREATE TABLE scope_modes (user_id TEXT PRIMARY KEY, mode TEXT NOT NULL, updated_at DOUBLE PRECISION NOT NULL);
    """,
)
_FIELDS = "request_id, at, user_id, client, model, endpoint, status, latency_ms, ttfb_ms, input_tokens, output_tokens"
# One statement per batch, rows in batch order (the recall log pairs each returned id with its record).
INSERT_USAGE_SQL = f"""
    INSERT INTO usage ({_FIELDS}, injected, captured)
    SELECT {_FIELDS}, injected, captured
    FROM unnest($1::text[], $2::float8[], $3::text[], $4::text[], $5::text[], $6::text[], $7::int[],
                $8::float8[], $9::float8[], $10::bigint[], $11::bigint[], $12::text[], $13::int[]) WITH ORDINALITY
        AS t({_FIELDS}, injected, captured, ord)
    ORDER BY ord
    RETURNING id
"""


class PostgresUsage:
    """Mixed into `PostgresStore`: writes and reads of the usage, recalls and scope_modes tables."""

    _pool: asyncpg.Pool  # the store's connection pool

    async def add_usage(self, records: list[UsageRecord]) -> None:
        """Insert usage records; each injected memory gains a recall (count, time and log entry)."""
        if not records:
            return
        async with self._pool.acquire() as conn, conn.transaction():
            ids = await conn.fetch(
                INSERT_USAGE_SQL,
                *([getattr(r, name) for r in records] for name in _FIELDS.split(", ")),
                [orjson.dumps(list(r.injected)).decode() for r in records],
                [r.captured for r in records],
            )
            recalls = [(m, row[0], r.at, r.user_id) for r, row in zip(records, ids, strict=True) for m in r.injected]
            if recalls:
                # Scoped: an id from another scope never gains a recall here.
                await conn.executemany(
                    "UPDATE memories SET recall_count = recall_count + 1, last_recalled_at = $2 "
                    "WHERE user_id = $3 AND id = $1",
                    [(m, at, scope) for m, _, at, scope in recalls],
                )
                await conn.executemany(
                    "INSERT INTO recalls VALUES ($1, $2, $3)", [(m, uid, at) for m, uid, at, _ in recalls]
                )

    async def prune_usage(self, before: float) -> int:
        """Delete usage records (and their recall log entries) older than `before`."""
        async with self._pool.acquire() as conn, conn.transaction():
            await conn.execute("DELETE FROM recalls WHERE at < $1", before)
            return len(await conn.fetch("DELETE FROM usage WHERE at < $1 RETURNING id", before))

    async def _usage_query(self, f: UsageFilter, tail: str, *params: Any) -> list[asyncpg.Record]:
        """The one door for usage reads: every filter, the scope first, bound as parameters."""
        conditions = usage_conditions(f)
        where = " AND ".join(["TRUE", *(f"{clause} ${n}" for n, (clause, _) in enumerate(conditions, 1))])
        tail = tail.format(*(f"${len(conditions) + n}" for n in range(1, len(params) + 1)))
        sql = f"SELECT {USAGE_COLUMNS} FROM usage u WHERE {where} {tail}"
        return await self._pool.fetch(sql, *(value for _, value in conditions), *params)

    async def usage(self, f: UsageFilter) -> list[UsageRecord]:
        """Usage records matching `f`, oldest first."""
        return [usage_record(r) for r in await self._usage_query(f, "ORDER BY u.at")]

    async def recent_usage(self, f: UsageFilter, limit: int) -> list[UsageRecord]:
        """The newest usage records matching `f`."""
        return [usage_record(r) for r in await self._usage_query(f, "ORDER BY u.at DESC, u.id DESC LIMIT {}", limit)]

    async def recall_log(self, user_id: str, memory_id: str) -> list[UsageRecord]:
        """The recent requests of this scope that a memory was injected into, newest first."""
        rows = await self._pool.fetch(
            f"SELECT {USAGE_COLUMNS} FROM recalls r JOIN usage u ON u.id = r.usage_id "
            "WHERE u.user_id = $1 AND r.memory_id = $2 ORDER BY r.at DESC LIMIT $3",
            user_id,
            memory_id,
            RECALL_LOG_LIMIT,
        )
        return [usage_record(r) for r in rows]

    async def scope_summaries(self, user_id: str | None) -> list[dict[str, Any]]:
        """Every known scope (memories, usage or a stored mode) with its counts; one scope when named."""
        if user_id is None:
            return [scope_summary(r) for r in await self._pool.fetch(SCOPES_SQL.format(only=""))]
        rows = await self._pool.fetch(SCOPES_SQL.format(only="WHERE user_id = $1"), user_id)
        return [scope_summary(r) for r in rows]

    async def scope_modes(self) -> dict[str, Mode]:
        """Every stored per-scope mode (scopes absent here are `on`)."""
        return {r[0]: r[1] for r in await self._pool.fetch("SELECT user_id, mode FROM scope_modes")}

    async def set_scope_mode(self, user_id: str, mode: Mode) -> None:
        """Store a scope's mode (`on` removes the row: it is the default)."""
        if mode == "on":
            await self._pool.execute("DELETE FROM scope_modes WHERE user_id = $1", user_id)
        else:
            await self._pool.execute(
                "INSERT INTO scope_modes VALUES ($1, $2, $3) ON CONFLICT (user_id) DO UPDATE SET "
                "mode = excluded.mode, updated_at = excluded.updated_at",
                user_id,
                mode,
                time.time(),
            )
