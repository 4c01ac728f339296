"""The PostgreSQL side of retention: the scope_retention table, and finding expired and over-quota memories."""

from __future__ import annotations

import time

import asyncpg

from app.store.retention import (
    EXPIRED_SQL,
    GLOBAL,
    ONE_SCOPE,
    OVER_QUOTA_SQL,
    SCOPE_RETENTION_TABLE,
    SET_SQL,
    ScopeLimits,
)

M008_SCOPE_RETENTION = ("m008_scope_retention", SCOPE_RETENTION_TABLE.format(real="DOUBLE PRECISION"))


class PostgresRetention:
    """Mixed into `PostgresStore`: per-scope limits and the reads retention deletes from."""

    _pool: asyncpg.Pool  # the store's connection pool

    async def expired(self, before: float, limit: int, scope: str | None = None) -> list[tuple[str, str]]:
        """Up to `limit` (scope, id) created before `before`: of `scope`, else of every scope without its own limits."""
        where = GLOBAL if scope is None else ONE_SCOPE.format("", "", "$3")
        args = (before, limit) if scope is None else (before, limit, scope)
        return [(r[0], r[1]) for r in await self._pool.fetch(EXPIRED_SQL.format("$1", "$2", where=where), *args)]

    async def over_quota(self, keep: int, limit: int, scope: str | None = None) -> list[tuple[str, str]]:
        """Up to `limit` (scope, id) beyond their scope's newest `keep` (of `scope`, else as `expired`)."""
        where = GLOBAL if scope is None else ONE_SCOPE.format("", "", "$3")
        sql = OVER_QUOTA_SQL.format("$1", "$2", order="seq", where=where)
        args = (keep, limit) if scope is None else (keep, limit, scope)
        return [(r[0], r[1]) for r in await self._pool.fetch(sql, *args)]

    async def scope_retention(self) -> dict[str, ScopeLimits]:
        """Every scope's own limits."""
        rows = await self._pool.fetch("SELECT user_id, max_age_days, max_per_scope FROM scope_retention")
        return {r[0]: (r[1], r[2]) for r in rows}

    async def set_scope_retention(self, user_id: str, limits: ScopeLimits) -> None:
        """Store a scope's own limits (both None removes them: the scope follows the config)."""
        if limits == (None, None):
            await self._pool.execute("DELETE FROM scope_retention WHERE user_id = $1", user_id)
        else:
            await self._pool.execute(SET_SQL.format("$1", "$2", "$3", "$4"), user_id, *limits, time.time())
