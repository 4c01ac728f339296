"""The PostgreSQL side of project directories: the scope_projects table, one row per project scope."""

from __future__ import annotations

import time

import asyncpg

M007_SCOPE_PROJECTS = (
    "m007_scope_projects",
    "CREATE TABLE scope_projects "
    "(user_id TEXT PRIMARY KEY, directory TEXT NOT NULL, seen_at DOUBLE PRECISION NOT NULL)",
)


class PostgresProjects:
    """Mixed into `PostgresStore`: writes and reads of the scope_projects table."""

    _pool: asyncpg.Pool

    async def note_project(self, user_id: str, directory: str) -> None:
        """Record (or update) the directory of a project scope."""
        await self._pool.execute(
            "INSERT INTO scope_projects VALUES ($1, $2, $3) ON CONFLICT (user_id) DO UPDATE SET "
            "directory = excluded.directory, seen_at = excluded.seen_at",
            user_id,
            directory,
            time.time(),
        )

    async def project_directories(self) -> dict[str, str]:
        """Every project scope's recorded directory."""
        return {r[0]: r[1] for r in await self._pool.fetch("SELECT user_id, directory FROM scope_projects")}
