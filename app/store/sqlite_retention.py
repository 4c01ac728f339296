"""The SQLite side of retention: finding expired and over-quota memories, mixed into `SqliteDb`."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from app.store.retention import EXPIRED_SQL, OVER_QUOTA_SQL


class SqliteRetention:
    """Mixed into `SqliteDb`: the cross-scope reads retention deletes from."""

    _conn: Callable[[], Any]  # the thread's connection

    def expired(self, before: float, limit: int) -> list[tuple[str, str]]:
        """Up to `limit` (scope, id) of memories created before `before`, oldest first."""
        return self._conn().execute(EXPIRED_SQL.format("?", "?"), (before, limit)).fetchall()

    def over_quota(self, keep: int, limit: int) -> list[tuple[str, str]]:
        """Up to `limit` (scope, id) of memories beyond their scope's newest `keep`."""
        sql = OVER_QUOTA_SQL.format("?", "?", order="rowid")
        return self._conn().execute(sql, (keep, limit)).fetchall()
