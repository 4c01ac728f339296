"""The SQLite side of stored-object owners: the object_owners table, mixed into `SqliteDb` and `SqliteStore`."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from contextlib import AbstractContextManager
from typing import Any

from app.store.objects import Owner

try:
    import pysqlite3.dbapi2 as sqlite3
except ImportError:  # pragma: no cover - platforms without the wheel
    import sqlite3


def m007_object_owners(db: sqlite3.Connection) -> None:
    """Who made each provider-side object (a stored response, …): the key's owner id and the scope."""
    db.execute(
        "CREATE TABLE object_owners (object_id TEXT PRIMARY KEY, owner TEXT NOT NULL, user_id TEXT NOT NULL, "
        "created_at REAL NOT NULL)"
    )
    db.execute("CREATE INDEX object_owners_scope ON object_owners(user_id)")


class SqliteObjects:
    """Mixed into `SqliteDb`: writes and reads of the object_owners table."""

    _conn: Callable[[], sqlite3.Connection]
    _transaction: Callable[[], AbstractContextManager[sqlite3.Connection]]

    def own_object(self, object_id: str, owner: Owner) -> None:
        """Record who made `object_id`; the first record of an id stands."""
        with self._transaction() as db:
            db.execute(
                "INSERT INTO object_owners VALUES (?, ?, ?, ?) ON CONFLICT (object_id) DO NOTHING",
                (object_id, owner.key, owner.user_id, time.time()),
            )

    def object_owner(self, object_id: str) -> Owner | None:
        """Who made `object_id`, or None when the proxy has no record of it."""
        row = self._conn().execute("SELECT owner, user_id FROM object_owners WHERE object_id = ?", (object_id,))
        found = row.fetchone()
        return Owner(found[0], found[1]) if found else None


class SqliteObjectsAsync:
    """Mixed into `SqliteStore`: the object_owners calls, on the store's threads."""

    db: Any
    _run: Callable[..., Awaitable[Any]]

    async def own_object(self, object_id: str, owner: Owner) -> None:
        """See SqliteObjects.own_object."""
        await self._run(self.db.own_object, object_id, owner)

    async def object_owner(self, object_id: str) -> Owner | None:
        """See SqliteObjects.object_owner."""
        return await self._run(self.db.object_owner, object_id)
