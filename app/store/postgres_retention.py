"""The PostgreSQL side of retention: finding expired and over-quota memories, mixed into `PostgresStore`."""

from __future__ import annotations

import asyncpg

from app.store.retention import EXPIRED_SQL, OVER_QUOTA_SQL


class PostgresRetention:
    """Mixed into `PostgresStore`: the cross-scope reads retention deletes from."""

    _pool: asyncpg.Pool  # the store's connection pool

    async def expired(self, before: float, limit: int) -> list[tuple[str, str]]:
        """Up to `limit` (scope, id) of memories created before `before`, oldest first."""
        rows = await self._pool.fetch(EXPIRED_SQL.format("$1", "$2"), before, limit)
        return [(r[0], r[1]) for r in rows]

    async def over_quota(self, keep: int, limit: int) -> list[tuple[str, str]]:
        """Up to `limit` (scope, id) of memories beyond their scope's newest `keep`."""
        rows = await self._pool.fetch(OVER_QUOTA_SQL.format("$1", "$2", order="seq"), keep, limit)
        return [(r[0], r[1]) for r in rows]
