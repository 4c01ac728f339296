"""The PostgreSQL side of stored-object owners: the object_owners table, mixed into `PostgresStore`."""

from __future__ import annotations

from typing import Any

from app.store.objects import Owner

M006_OBJECT_OWNERS = (
    "m006_object_owners",
    """
    CREATE TABLE object_owners (
        object_id TEXT PRIMARY KEY,
        owner TEXT NOT NULL,
        user_id TEXT NOT NULL,
        created_at TIMESTAMPTZ NOT NULL DEFAULT now()
    );
    CREATE INDEX object_owners_scope ON object_owners (user_id);
    """,
)


class PostgresObjects:
    """Mixed into `PostgresStore`: writes and reads of the object_owners table (shared by every instance)."""

    _pool: Any

    async def own_object(self, object_id: str, owner: Owner) -> None:
        """Record who made `object_id`; the first record of an id stands."""
        await self._pool.execute(
            "INSERT INTO object_owners (object_id, owner, user_id) VALUES ($1, $2, $3) "
            "ON CONFLICT (object_id) DO NOTHING",
            object_id,
            owner.key,
            owner.user_id,
        )

    async def object_owner(self, object_id: str) -> Owner | None:
        """Who made `object_id`, or None when the proxy has no record of it."""
        row = await self._pool.fetchrow("SELECT owner, user_id FROM object_owners WHERE object_id = $1", object_id)
        return Owner(row[0], row[1]) if row else None
