"""The memory store: SQLite with WAL, FTS5 and numbered migrations; every query scoped at one point."""

from __future__ import annotations

import asyncio
import builtins
import functools
import hashlib
import os
import secrets
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol, TypeVar

import orjson

from app import textindex
from app.usage_store import Mode, UsageFilter, UsageRecord, UsageTables, m003_usage

try:  # a current SQLite (FTS5 secure-delete) where the wheel exists
    import pysqlite3.dbapi2 as sqlite3
except ImportError:  # pragma: no cover - platforms without the wheel
    import sqlite3  # type: ignore[no-redef]

T = TypeVar("T")
STORE_THREADS = 4  # the store's own threads, each with one connection for the life of the store
SEARCH_WEIGHTS = (1.0, 0.5, 0.0)  # content, context (neighbouring turns, date), scope token
NEIGHBOUR_CHARS = 600  # how much of each neighbouring turn goes into a memory's context
COMMON_TERM_DOCS = 10_000  # a term in more rows than this is left out of searches (see textindex)
GENERIC_TERM_DOCS = 40_000  # … and a query of only such terms searches nothing past this
COMMON_REFRESH_ROWS = 5_000  # re-read the common terms after this many new rows (or 10% growth)
RERANK_CANDIDATES = 50  # second pass: how many first-pass matches are re-scored
NEIGHBOUR_BOOST = 0.3  # second pass: share of the adjacent turns' scores a candidate gains


@dataclass(frozen=True)
class NewMemory:
    """A memory to be written."""

    user_id: str
    role: str
    content: str
    created_at: float = field(default_factory=time.time)
    model: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Memory:
    """A stored memory (SPEC §5)."""

    id: str
    user_id: str
    role: str
    content: str
    created_at: float
    model: str | None
    metadata: dict[str, Any]
    recall_count: int = 0
    last_recalled_at: float | None = None

    def to_json(self) -> dict[str, Any]:
        """The API shape, with an ISO-8601 UTC `created_at`."""
        return {
            "id": self.id,
            "user_id": self.user_id,
            "role": self.role,
            "content": self.content,
            "created_at": iso(self.created_at),
            "model": self.model,
            "metadata": self.metadata,
            "recall_count": self.recall_count,
            "last_recalled_at": iso(self.last_recalled_at) if self.last_recalled_at is not None else None,
        }


def iso(ts: float) -> str:
    """A UTC timestamp as ISO-8601 with a Z suffix."""
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


class MemoryStore(Protocol):
    """What every backend offers; each call names its scope."""

    def add_many(self, items: list[NewMemory]) -> list[Memory]: ...
    def list(self, user_id: str, limit: int, cursor: str | None) -> tuple[list[Memory], str | None]: ...
    def get(self, user_id: str, memory_id: str) -> Memory | None: ...
    def find_duplicate(self, item: NewMemory) -> Memory | None: ...
    def delete(self, user_id: str, memory_id: str) -> bool: ...
    def forget(self, user_id: str) -> int: ...
    def search(self, user_id: str, query: str, limit: int) -> list[tuple[Memory, float]]: ...
    def export(self, user_id: str) -> Iterator[Memory]: ...
    def stats(self) -> dict[str, Any]: ...
    def add_usage(self, records: list[UsageRecord]) -> None: ...
    def prune_usage(self, before: float) -> int: ...
    def usage(self, f: UsageFilter) -> Iterator[UsageRecord]: ...
    def recent_usage(self, f: UsageFilter, limit: int) -> builtins.list[UsageRecord]: ...
    def recall_log(self, user_id: str, memory_id: str, limit: int = ...) -> builtins.list[UsageRecord]: ...
    def scope_summaries(self, user_id: str | None) -> builtins.list[dict[str, Any]]: ...
    def scope_modes(self) -> dict[str, Mode]: ...
    def set_scope_mode(self, user_id: str, mode: Mode) -> None: ...
    def ping(self) -> None: ...
    def close(self) -> None: ...
    async def call(self, fn: Callable[..., T], *args: Any) -> T: ...


def _hash(item: NewMemory) -> str:
    """The dedup key: a resent turn (same role, text and metadata) is the same memory."""
    meta = orjson.dumps(item.metadata, option=orjson.OPT_SORT_KEYS) if item.metadata else b""
    return hashlib.blake2b(f"{item.role}\0{item.content}\0".encode() + meta, digest_size=16).hexdigest()


def _m001_initial(db: sqlite3.Connection) -> None:
    # Statement by statement: executescript() would commit the migration's transaction early.
    for statement in (
        """CREATE TABLE memories (
            rowid INTEGER PRIMARY KEY,
            id TEXT NOT NULL UNIQUE,
            user_id TEXT NOT NULL,
            role TEXT NOT NULL,
            content TEXT NOT NULL,
            content_hash TEXT NOT NULL,
            created_at REAL NOT NULL,
            model TEXT,
            metadata TEXT NOT NULL DEFAULT '{}'
        )""",
        "CREATE UNIQUE INDEX memories_dedup ON memories(user_id, content_hash)",
        "CREATE INDEX memories_scope ON memories(user_id)",
        "CREATE INDEX memories_scope_time ON memories(user_id, created_at DESC, rowid DESC)",
        """CREATE VIRTUAL TABLE memories_fts USING fts5(
            content, context, scope, tokenize = 'porter unicode61 remove_diacritics 2'
        )""",
    ):
        db.execute(statement)
    if sqlite3.sqlite_version_info >= (3, 42):
        db.execute("INSERT INTO memories_fts(memories_fts, rank) VALUES ('secure-delete', 1)")


def _neighbour(db: sqlite3.Connection, user_id: str, rowid: int, before: bool) -> tuple[int, str, float] | None:
    op, order = ("<", "DESC") if before else (">", "ASC")
    return db.execute(
        f"SELECT m.rowid, m.content, m.created_at FROM memories m WHERE m.user_id = ? AND m.rowid {op} ? "
        f"ORDER BY m.rowid {order} LIMIT 1",
        (user_id, rowid),
    ).fetchone()


def _context(db: sqlite3.Connection, user_id: str, rowid: int, created_at: float) -> str:
    """A memory's secondary index text: its date and the turn before it.

    Recall finds a turn by the words of the exchange around it, as a person remembers a
    conversation; the previous turn weighs less than the turn itself (SEARCH_WEIGHTS). Looking
    back only means a new turn never rewrites an older index entry (cheap capture); the forward
    link is scored at search time (NEIGHBOUR_BOOST).
    """
    parts = [textindex.date_words(created_at)]
    prev = _neighbour(db, user_id, rowid, before=True)
    if prev is not None:
        parts.append(prev[1][:NEIGHBOUR_CHARS])
    return "\n".join(parts)


def _reindex(db: sqlite3.Connection, user_id: str, rowid: int) -> None:
    """Recompute one memory's neighbour context after a neighbour came or went."""
    row = db.execute("SELECT created_at FROM memories WHERE rowid = ?", (rowid,)).fetchone()
    if row is not None:
        db.execute("UPDATE memories_fts SET context = ? WHERE rowid = ?", (_context(db, user_id, rowid, row[0]), rowid))


def _m002_vocabulary(db: sqlite3.Connection) -> None:
    # Document counts per indexed term, read to find the terms too common to be worth searching.
    db.execute("CREATE VIRTUAL TABLE memories_vocab USING fts5vocab(memories_fts, 'row')")


MIGRATIONS: list[Callable[[sqlite3.Connection], None]] = [_m001_initial, _m002_vocabulary, m003_usage]
_COLUMNS = "m.id, m.user_id, m.role, m.content, m.created_at, m.model, m.metadata, m.recall_count, m.last_recalled_at"
_NCOL = 9  # columns in _COLUMNS: the position of whatever a query selects after them


def _row(r: tuple[Any, ...]) -> Memory:
    return Memory(r[0], r[1], r[2], r[3], r[4], r[5], orjson.loads(r[6]), r[7], r[8])


class SqliteStore(UsageTables):
    """SQLite backend. Reads go through `_scoped`, which refuses SQL not bound to a scope."""

    def __init__(self, path: str) -> None:
        self.path = path
        # `:memory:` would give each thread its own empty database: share one in-process instead.
        self._target = f"file:memory-{secrets.token_hex(6)}?mode=memory&cache=shared" if path == ":memory:" else path
        if path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        self._local = threading.local()
        self._write_lock = threading.Lock()
        self._all: list[sqlite3.Connection] = []
        self._all_lock = threading.Lock()
        # A fixed pool, not anyio's: its idle threads would exit and strand their connections.
        self._pool = ThreadPoolExecutor(STORE_THREADS, thread_name_prefix="memory-store")
        self._migrate()
        self.common_terms: dict[str, int] = {}
        self._rows_since_refresh = 0
        self.refresh_common_terms()

    def _conn(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(
                self._target, timeout=5.0, isolation_level=None, check_same_thread=False, uri=self.path == ":memory:"
            )
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute("PRAGMA busy_timeout=5000")
            conn.execute("PRAGMA secure_delete=ON")
            conn.execute("PRAGMA foreign_keys=ON")
            self._local.conn = conn
            with self._all_lock:
                self._all.append(conn)
        return conn

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        """One write transaction (BEGIN IMMEDIATE … COMMIT, ROLLBACK on any error), one writer at a time."""
        db = self._conn()
        with self._write_lock:
            db.execute("BEGIN IMMEDIATE")
            try:
                yield db
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise

    def _migrate(self) -> None:
        with self._transaction() as db:
            db.execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, name TEXT NOT NULL, "
                "applied_at REAL NOT NULL)"
            )
            done = {v for (v,) in db.execute("SELECT version FROM schema_migrations")}
            for version, migration in enumerate(MIGRATIONS, start=1):
                if version not in done:
                    migration(db)
                    db.execute(
                        "INSERT INTO schema_migrations VALUES (?, ?, ?)", (version, migration.__name__, time.time())
                    )

    def _scoped(self, user_id: str, sql: str, params: Iterable[Any] = ()) -> sqlite3.Cursor:
        """The one door for scoped statements: the SQL must filter on `m.user_id = ?` first."""
        if "m.user_id = ?" not in sql:
            raise AssertionError("scoped SQL must filter on m.user_id = ?")
        return self._conn().execute(sql, (user_id, *params))

    def add_many(self, items: list[NewMemory]) -> list[Memory]:
        """Insert memories in one transaction; a duplicate (same scope, role, text, metadata) is skipped."""
        if not items:
            return []
        with self._transaction() as db:
            rows = [r for r in (self._insert_row(db, item) for item in items) if r is not None]
            for rowid, memory in rows:
                db.execute(
                    "INSERT INTO memories_fts (rowid, content, context, scope) VALUES (?, ?, ?, ?)",
                    (
                        rowid,
                        memory.content,
                        _context(db, memory.user_id, rowid, memory.created_at),
                        textindex.scope_token(memory.user_id),
                    ),
                )
        self._rows_since_refresh += len(rows)
        if self._rows_since_refresh >= max(COMMON_REFRESH_ROWS, self._rows_at_refresh // 10):
            self.refresh_common_terms()
        return [memory for _, memory in rows]

    def _insert_row(self, db: sqlite3.Connection, item: NewMemory) -> tuple[int, Memory] | None:
        memory = Memory(
            "mem_" + secrets.token_hex(10),
            item.user_id,
            item.role,
            item.content,
            item.created_at,
            item.model,
            item.metadata,
        )
        cur = db.execute(
            "INSERT OR IGNORE INTO memories (id, user_id, role, content, content_hash, created_at, model, metadata) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (
                memory.id,
                item.user_id,
                item.role,
                item.content,
                _hash(item),
                item.created_at,
                item.model,
                orjson.dumps(item.metadata, option=orjson.OPT_SORT_KEYS).decode(),
            ),
        )
        return (cur.lastrowid, memory) if cur.rowcount else None

    def list(self, user_id: str, limit: int, cursor: str | None) -> tuple[list[Memory], str | None]:
        """Newest first; `cursor` is the opaque value of a previous page's `next_cursor`."""
        limit = max(limit, 1)
        after: tuple[Any, ...] = ()
        sql = f"SELECT {_COLUMNS}, m.rowid FROM memories m WHERE m.user_id = ?"
        if cursor:
            ts, _, rid = cursor.partition("_")
            try:
                after = (float(ts), float(ts), int(rid))
            except ValueError:
                raise ValueError("cursor is not one this server issued") from None
            sql += " AND (m.created_at < ? OR (m.created_at = ? AND m.rowid < ?))"
        sql += " ORDER BY m.created_at DESC, m.rowid DESC LIMIT ?"
        rows = self._scoped(user_id, sql, (*after, limit + 1)).fetchall()
        page = rows[:limit]
        next_cursor = f"{page[-1][4]!r}_{page[-1][_NCOL]}" if len(rows) > limit else None
        return [_row(r) for r in page], next_cursor

    def get(self, user_id: str, memory_id: str) -> Memory | None:
        """One memory of this scope, or None."""
        r = self._scoped(user_id, f"SELECT {_COLUMNS} FROM memories m WHERE m.user_id = ? AND m.id = ?", (memory_id,))
        row = r.fetchone()
        return _row(row) if row else None

    def find_duplicate(self, item: NewMemory) -> Memory | None:
        """The stored memory with the same scope, role and text as `item`, if any."""
        row = self._scoped(
            item.user_id,
            f"SELECT {_COLUMNS} FROM memories m WHERE m.user_id = ? AND m.content_hash = ?",
            (_hash(item),),
        ).fetchone()
        return _row(row) if row else None

    def delete(self, user_id: str, memory_id: str) -> bool:
        """Delete one memory of this scope with its index entry; False when absent."""
        with self._transaction() as db:
            row = self._scoped(
                user_id, "SELECT m.rowid FROM memories m WHERE m.user_id = ? AND m.id = ?", (memory_id,)
            ).fetchone()
            if row:
                following = _neighbour(db, user_id, row[0], before=False)
                db.execute("DELETE FROM memories_fts WHERE rowid = ?", (row[0],))
                db.execute("DELETE FROM memories WHERE rowid = ?", (row[0],))
                if following is not None:  # its context quoted the deleted text
                    _reindex(db, user_id, following[0])
        if row:
            self._purge()
        return row is not None

    def forget(self, user_id: str) -> int:
        """Delete every memory and index entry of a scope, and purge the bytes from the files."""
        with self._transaction() as db:
            rowids = [r for (r,) in self._scoped(user_id, "SELECT m.rowid FROM memories m WHERE m.user_id = ?")]
            db.executemany("DELETE FROM memories_fts WHERE rowid = ?", ((r,) for r in rowids))
            db.execute("DELETE FROM memories WHERE user_id = ?", (user_id,))
        self._purge()
        return len(rowids)

    def _purge(self) -> None:
        """Leave no deleted bytes behind: merge away old FTS segments (old SQLite), empty the WAL."""
        db = self._conn()
        with self._write_lock:
            if sqlite3.sqlite_version_info < (3, 42):
                db.execute("INSERT INTO memories_fts(memories_fts) VALUES ('optimize')")
            db.execute("PRAGMA wal_checkpoint(TRUNCATE)")

    def refresh_common_terms(self) -> None:
        """Re-read which terms are in more than COMMON_TERM_DOCS rows (a scan of the term list)."""
        db = self._conn()
        rows = db.execute("SELECT term, doc FROM memories_vocab WHERE doc > ?", (COMMON_TERM_DOCS,))
        self.common_terms = dict(rows.fetchall())
        self._rows_at_refresh = db.execute("SELECT coalesce(max(rowid), 0) FROM memories").fetchone()[0]
        self._rows_since_refresh = 0

    def search(self, user_id: str, query: str, limit: int) -> list[tuple[Memory, float]]:
        """Best matches within the scope, with a positive relevance score.

        Two passes. BM25 over the turn (weighted above) and its context (date, neighbouring turns)
        picks candidates; then each candidate gains a share of its neighbours' scores
        (NEIGHBOUR_BOOST), so a turn inside a stretch of conversation that matches the question
        climbs above an isolated turn that shares a word with it by chance.
        """
        expr = textindex.match_expression(user_id, query, self.common_terms, GENERIC_TERM_DOCS)
        if expr is None:
            return []
        weights = ", ".join(str(w) for w in SEARCH_WEIGHTS)
        rows = self._scoped(
            user_id,
            # CROSS JOIN keeps the full-text match as the outer loop: the planner would otherwise
            # walk every row of the scope and re-run the MATCH for each one (quadratic).
            f"SELECT {_COLUMNS}, -bm25(memories_fts, {weights}) AS score, m.rowid FROM memories_fts "
            "CROSS JOIN memories m ON m.rowid = memories_fts.rowid "
            "WHERE m.user_id = ? AND memories_fts MATCH ? ORDER BY score DESC LIMIT ?",
            (expr, max(limit, RERANK_CANDIDATES)),
        ).fetchall()
        if not rows:
            return []
        score = {r[_NCOL + 1]: r[_NCOL] for r in rows}
        marks = ", ".join("?" * len(rows))
        around = self._scoped(
            user_id,
            "SELECT m.rowid, "
            "(SELECT max(p.rowid) FROM memories p WHERE p.user_id = m.user_id AND p.rowid < m.rowid), "
            "(SELECT min(n.rowid) FROM memories n WHERE n.user_id = m.user_id AND n.rowid > m.rowid) "
            f"FROM memories m WHERE m.user_id = ? AND m.rowid IN ({marks})",
            list(score),
        ).fetchall()
        final = {
            rowid: score[rowid] + NEIGHBOUR_BOOST * (score.get(prev, 0.0) + score.get(nxt, 0.0))
            for rowid, prev, nxt in around
        }
        rows.sort(key=lambda r: final[r[_NCOL + 1]], reverse=True)
        return [(_row(r), final[r[_NCOL + 1]]) for r in rows[:limit]]

    def export(self, user_id: str) -> Iterator[Memory]:
        """Every memory of a scope, oldest first."""
        cur = self._scoped(
            user_id, f"SELECT {_COLUMNS} FROM memories m WHERE m.user_id = ? ORDER BY m.created_at, m.rowid"
        )
        for r in cur:
            yield _row(r)

    def stats(self) -> dict[str, Any]:
        """Counts per scope (an operator's view, not scoped)."""
        rows = self._conn().execute("SELECT user_id, COUNT(*) FROM memories GROUP BY user_id ORDER BY 2 DESC")
        scopes = dict(rows.fetchall())
        size = sum(os.path.getsize(p) for p in (self.path, self.path + "-wal") if os.path.exists(p))
        return {
            "backend": "sqlite",
            "path": self.path,
            "memories": sum(scopes.values()),
            "scopes": scopes,
            "bytes": size,
        }

    def ping(self) -> None:
        """Raise when the database cannot be read or written."""
        db = self._conn()
        db.execute("SELECT 1 FROM schema_migrations LIMIT 1").fetchone()

    async def call(self, fn: Callable[..., T], *args: Any) -> T:
        """Run a store method on the store's own threads, off the event loop."""
        return await asyncio.get_running_loop().run_in_executor(self._pool, functools.partial(fn, *args))

    def close(self) -> None:
        """Stop the store's threads and close every connection it opened."""
        self._pool.shutdown(wait=True)
        with self._all_lock:
            for conn in self._all:
                conn.close()
            self._all.clear()
        self._local = threading.local()
