"""The SQLite side of usage: the usage, recalls and scope_modes tables, mixed into `SqliteDb`."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from typing import Any

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

try:
    import pysqlite3.dbapi2 as sqlite3
except ImportError:  # pragma: no cover - platforms without the wheel
    import sqlite3


def m003_usage(db: sqlite3.Connection) -> None:
    """Usage records, the recall log, recall counters on memories and per-scope modes."""
    for statement in (
        """CREATE TABLE usage (
            id INTEGER PRIMARY KEY,
            request_id TEXT NOT NULL,
            at REAL NOT NULL,
            user_id TEXT NOT NULL,
            client TEXT,
            model TEXT,
            endpoint TEXT NOT NULL,
            status INTEGER NOT NULL,
            latency_ms REAL NOT NULL,
            ttfb_ms REAL,
            input_tokens INTEGER,
            output_tokens INTEGER,
            injected TEXT NOT NULL DEFAULT '[]',
            captured INTEGER NOT NULL DEFAULT 0
        )""",
        "CREATE INDEX usage_scope_time ON usage(user_id, at)",
        "CREATE INDEX usage_time ON usage(at)",
        "CREATE TABLE recalls (memory_id TEXT NOT NULL, usage_id INTEGER NOT NULL, at REAL NOT NULL)",
        "CREATE INDEX recalls_memory ON recalls(memory_id, at DESC)",
        "CREATE INDEX recalls_usage ON recalls(usage_id)",
        "ALTER TABLE memories ADD COLUMN recall_count INTEGER NOT NULL DEFAULT 0",
        "ALTER TABLE memories ADD COLUMN last_recalled_at REAL",
        "CREATE TABLE scope_modes (user_id TEXT PRIMARY KEY, mode TEXT NOT NULL, updated_at REAL NOT NULL)",
    ):
        db.execute(statement)


class SqliteUsage:
    """Mixed into `SqliteDb`: writes and reads of the usage, recalls and scope_modes tables."""

    # Provided by the store this is mixed into: its per-thread connection and write transaction.
    _conn: Callable[[], sqlite3.Connection]
    _transaction: Callable[[], AbstractContextManager[sqlite3.Connection]]

    def add_usage(self, records: list[UsageRecord]) -> None:
        """Insert usage records; each injected memory gains a recall (count, time and log entry)."""
        if not records:
            return
        with self._transaction() as db:
            for r in records:
                cur = db.execute(
                    "INSERT INTO usage (request_id, at, user_id, client, model, endpoint, status, latency_ms, "
                    "ttfb_ms, input_tokens, output_tokens, injected, captured) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        r.request_id,
                        r.at,
                        r.user_id,
                        r.client,
                        r.model,
                        r.endpoint,
                        r.status,
                        r.latency_ms,
                        r.ttfb_ms,
                        r.input_tokens,
                        r.output_tokens,
                        orjson.dumps(list(r.injected)).decode(),
                        r.captured,
                    ),
                )
                for memory_id in r.injected:
                    # Scoped: an id from another scope never gains a recall here.
                    db.execute(
                        "UPDATE memories SET recall_count = recall_count + 1, last_recalled_at = ? "
                        "WHERE user_id = ? AND id = ?",
                        (r.at, r.user_id, memory_id),
                    )
                    db.execute("INSERT INTO recalls VALUES (?, ?, ?)", (memory_id, cur.lastrowid, r.at))

    def prune_usage(self, before: float) -> int:
        """Delete usage records (and their recall log entries) older than `before`."""
        with self._transaction() as db:
            db.execute("DELETE FROM recalls WHERE at < ?", (before,))
            return db.execute("DELETE FROM usage WHERE at < ?", (before,)).rowcount

    def _usage_query(self, f: UsageFilter, tail: str, params: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
        """The one door for usage reads: every filter, the scope first, bound as parameters."""
        conditions = usage_conditions(f)
        where = " AND ".join(["1 = 1", *(f"{clause} ?" for clause, _ in conditions)])
        sql = f"SELECT {USAGE_COLUMNS} FROM usage u WHERE {where} {tail}"
        return self._conn().execute(sql, (*(value for _, value in conditions), *params))

    def usage(self, f: UsageFilter) -> list[UsageRecord]:
        """Usage records matching `f`, oldest first."""
        return [usage_record(r) for r in self._usage_query(f, "ORDER BY u.at")]

    def recent_usage(self, f: UsageFilter, limit: int) -> list[UsageRecord]:
        """The newest usage records matching `f`."""
        return [usage_record(r) for r in self._usage_query(f, "ORDER BY u.at DESC, u.id DESC LIMIT ?", (limit,))]

    def recall_log(self, user_id: str, memory_id: str, limit: int = RECALL_LOG_LIMIT) -> list[UsageRecord]:
        """The recent requests of this scope that a memory was injected into, newest first."""
        rows = self._conn().execute(
            f"SELECT {USAGE_COLUMNS} FROM recalls r JOIN usage u ON u.id = r.usage_id "
            "WHERE u.user_id = ? AND r.memory_id = ? ORDER BY r.at DESC LIMIT ?",
            (user_id, memory_id, limit),
        )
        return [usage_record(r) for r in rows]

    def scope_summaries(self, user_id: str | None) -> list[dict[str, Any]]:
        """Every known scope (memories, usage or a stored mode) with its counts; one scope when named."""
        if user_id is None:
            return [scope_summary(r) for r in self._conn().execute(SCOPES_SQL.format(only=""))]
        rows = self._conn().execute(SCOPES_SQL.format(only="WHERE user_id = ?"), (user_id,) * 3)
        return [scope_summary(r) for r in rows]

    def scope_modes(self) -> dict[str, Mode]:
        """Every stored per-scope mode (scopes absent here are `on`)."""
        return dict(self._conn().execute("SELECT user_id, mode FROM scope_modes").fetchall())

    def set_scope_mode(self, user_id: str, mode: Mode) -> None:
        """Store a scope's mode (`on` removes the row: it is the default)."""
        with self._transaction() as db:
            if mode == "on":
                db.execute("DELETE FROM scope_modes WHERE user_id = ?", (user_id,))
            else:
                db.execute(
                    "INSERT INTO scope_modes VALUES (?, ?, ?) ON CONFLICT(user_id) DO UPDATE SET "
                    "mode = excluded.mode, updated_at = excluded.updated_at",
                    (user_id, mode, time.time()),
                )
