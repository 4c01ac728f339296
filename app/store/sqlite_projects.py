"""The SQLite side of project directories: the scope_projects table, one row per project scope."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from contextlib import AbstractContextManager
from typing import Any

try:
    import pysqlite3.dbapi2 as sqlite3
except ImportError:  # pragma: no cover - platforms without the wheel
    import sqlite3


def m008_scope_projects(db: sqlite3.Connection) -> None:
    """The working directory clients reported for each project scope (shown by /v1/scopes, the dashboard)."""
    db.execute("CREATE TABLE scope_projects (user_id TEXT PRIMARY KEY, directory TEXT NOT NULL, seen_at REAL NOT NULL)")


class SqliteProjects:
    """Mixed into `SqliteDb`: writes and reads of the scope_projects table."""

    _conn: Callable[[], sqlite3.Connection]
    _transaction: Callable[[], AbstractContextManager[sqlite3.Connection]]

    def note_project(self, user_id: str, directory: str) -> None:
        """Record (or update) the directory of a project scope."""
        with self._transaction() as db:
            db.execute(
                "INSERT INTO scope_projects VALUES (?, ?, ?) ON CONFLICT(user_id) DO UPDATE SET "
                "directory = excluded.directory, seen_at = excluded.seen_at",
                (user_id, directory, time.time()),
            )

    def project_directories(self) -> dict[str, str]:
        """Every project scope's recorded directory."""
        return dict(self._conn().execute("SELECT user_id, directory FROM scope_projects").fetchall())


class SqliteProjectsAsync:
    """Mixed into `SqliteStore`: the async face of SqliteProjects on the store's threads."""

    db: SqliteProjects
    _run: Callable[..., Awaitable[Any]]

    async def note_project(self, user_id: str, directory: str) -> None:
        """See SqliteProjects.note_project."""
        await self._run(self.db.note_project, user_id, directory)

    async def project_directories(self) -> dict[str, str]:
        """See SqliteProjects.project_directories."""
        return await self._run(self.db.project_directories)
