"""Store backends for tests: a SQLite file, or a database of this test session on the local PostgreSQL server.

Each session creates its own uniquely named database and drops it at the end; every test starts
from an empty schema. Without a server the PostgreSQL cases skip, except under CI=true, where a
missing server is a failure.
"""

from __future__ import annotations

import asyncio
import os
import secrets
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import pytest

SERVER = os.environ.get("MEMORY_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432")
BACKENDS = ["sqlite", "postgresql"]


async def _admin(sql: str) -> None:
    conn = await asyncpg.connect(f"{SERVER}/postgres", timeout=5)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


async def reset_schema(url: str) -> None:
    """Drop every table of a test database: the next store opened on it migrates from scratch."""
    conn = await asyncpg.connect(url, timeout=5)
    try:
        await conn.execute("DROP SCHEMA public CASCADE; CREATE SCHEMA public")
    finally:
        await conn.close()


@pytest.fixture(scope="session")
def pg_database() -> Iterator[str]:
    """The URL of a database made for this test session (dropped at its end)."""
    name = f"memory_test_{os.getpid()}_{secrets.token_hex(4)}"
    try:
        asyncio.run(_admin(f'CREATE DATABASE "{name}"'))
    except (OSError, asyncpg.PostgresError, TimeoutError) as exc:
        if os.environ.get("CI") == "true":
            pytest.fail(f"PostgreSQL at {SERVER} is required under CI=true: {exc}")
        pytest.skip(f"no PostgreSQL server at {SERVER} ({exc}); start one to run the PostgreSQL cases")
    yield f"{SERVER}/{name}"
    asyncio.run(_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture(params=BACKENDS)
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """An empty memory database of each backend: a SQLite path, or a PostgreSQL URL."""
    if request.param == "sqlite":
        return str(tmp_path / "data" / "memory.db")
    url = request.getfixturevalue("pg_database")
    asyncio.run(reset_schema(url))
    return url
