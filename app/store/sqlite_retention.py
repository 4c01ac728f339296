"""The SQLite side of retention: the scope_retention table, and finding expired and over-quota memories."""

from __future__ import annotations

import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Any

from app.store.retention import (
    EXPIRED_SQL,
    GLOBAL,
    ONE_SCOPE,
    OVER_QUOTA_SQL,
    SCOPE_RETENTION_TABLE,
    SET_SQL,
    ScopeLimits,
)


def m009_scope_retention(db: Any) -> None:
    """Per-scope retention limits, beside the scope's mode."""
    db.execute(SCOPE_RETENTION_TABLE.format(real="REAL"))


class SqliteRetention:
    """Mixed into `SqliteDb`: per-scope limits and the reads retention deletes from."""

    _conn: Callable[[], Any]  # the thread's connection
    _transaction: Callable[[], AbstractContextManager[Any]]

    def expired(self, before: float, limit: int, scope: str | None = None) -> list[tuple[str, str]]:
        """Up to `limit` (scope, id) created before `before`: of `scope`, else of every scope without its own limits."""
        where = GLOBAL if scope is None else ONE_SCOPE.format("", "", "?")
        return self._conn().execute(EXPIRED_SQL.format("?", "?", where=where), (before, *_one(scope), limit)).fetchall()

    def over_quota(self, keep: int, limit: int, scope: str | None = None) -> list[tuple[str, str]]:
        """Up to `limit` (scope, id) beyond their scope's newest `keep` (of `scope`, else as `expired`)."""
        where = GLOBAL if scope is None else ONE_SCOPE.format("", "", "?")
        sql = OVER_QUOTA_SQL.format("?", "?", order="rowid", where=where)
        return self._conn().execute(sql, (*_one(scope), keep, limit)).fetchall()

    def scope_retention(self) -> dict[str, ScopeLimits]:
        """Every scope's own limits."""
        rows = self._conn().execute("SELECT user_id, max_age_days, max_per_scope FROM scope_retention")
        return {r[0]: (r[1], r[2]) for r in rows}

    def set_scope_retention(self, user_id: str, limits: ScopeLimits) -> None:
        """Store a scope's own limits (both None removes them: the scope follows the config)."""
        with self._transaction() as db:
            if limits == (None, None):
                db.execute("DELETE FROM scope_retention WHERE user_id = ?", (user_id,))
            else:
                db.execute(SET_SQL.format("?", "?", "?", "?"), (user_id, *limits, time.time()))


def _one(scope: str | None) -> tuple[str, ...]:
    return () if scope is None else (scope,)
