"""The SQLite backend: WAL, the term index (app/store/postings.py) and numbered migrations, behind the
async store interface.

`SqliteDb` holds the SQL and runs on the store's own threads; `SqliteStore` is the async facade
the app calls, so no caller sees the thread pool.
"""

from __future__ import annotations

import asyncio
import builtins
import functools
import heapq
import os
import secrets
import threading
import time
from collections import defaultdict
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import orjson

from app import textindex
from app.store import (
    EXPORT_PAGE,
    NEIGHBOUR_CHARS,
    RERANK_CANDIDATES,
    WORD_DOCS_CAP,
    Found,
    Held,
    InvalidCursor,
    Memory,
    NewMemory,
    Recall,
    as_stored,
    content_hash,
    metadata_text,
    postings,
)
from app.store.retention import ScopeLimits
from app.store.sqlite_objects import SqliteObjects, SqliteObjectsAsync, m007_object_owners
from app.store.sqlite_projects import SqliteProjects, SqliteProjectsAsync, m008_scope_projects
from app.store.sqlite_retention import SqliteRetention, m009_scope_retention
from app.store.sqlite_usage import SqliteUsage, m003_usage
from app.store.usage import Mode, UsageFilter, UsageRecord

try:  # a current SQLite where the wheel exists
    import pysqlite3.dbapi2 as sqlite3
except ImportError:  # pragma: no cover - platforms without the wheel
    import sqlite3

T = TypeVar("T")
STORE_THREADS = 4  # the store's own threads, each with one connection for the life of the store
MMAP_BYTES = 1 << 30  # how much of the database file each connection maps (address space, not memory)
# Memories written since the last merge (by rowid) that make a write merge their postings into the
# term index: larger merges write each page of the index once for more postings.
MERGE_ROWS = 8192
# … or one scope's pending memories: a search scans its scope's on top of its index reads, and a chat
# both captures into and recalls from its own scope. At 256 that scan cost a chat with memory on
# ~0.3 ms more at 100k (bench/hop_overhead.py); at 64, merges of a lone busy scope stay cheap.
SCOPE_PENDING = 64
# WAL pages that make a commit checkpoint (SQLite's default: 1,000): a batch or a merge dirties
# thousands, and checkpointing after each commit wrote the same hot pages to the database again and again.
CHECKPOINT_PAGES = 8000
ExportPage = list[tuple[Memory, tuple[float, int]]]  # memories with their (created_at, rowid) positions


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


def _m002_vocabulary(db: sqlite3.Connection) -> None:
    # Document counts per indexed term, read to find the terms too common to be worth searching.
    db.execute("CREATE VIRTUAL TABLE memories_vocab USING fts5vocab(memories_fts, 'row')")


def _m004_postings(db: sqlite3.Connection) -> None:
    # The term index replaces FTS5: postings read in impact order, so a search never ranks a whole scope.
    db.execute("ALTER TABLE memories ADD COLUMN context TEXT NOT NULL DEFAULT ''")
    db.execute(
        "CREATE TABLE memory_terms (scope INTEGER NOT NULL, term INTEGER NOT NULL, mem INTEGER NOT NULL, "
        "impact REAL NOT NULL, PRIMARY KEY (scope, term, mem)) WITHOUT ROWID"
    )
    db.execute("CREATE INDEX memory_terms_impact ON memory_terms (scope, term, impact DESC, mem DESC)")
    db.execute(
        "CREATE TABLE memory_term_docs (user_id TEXT NOT NULL, term INTEGER NOT NULL, docs INTEGER NOT NULL, "
        "own INTEGER NOT NULL, PRIMARY KEY (user_id, term)) WITHOUT ROWID"
    )
    last = 0
    while rows := db.execute(
        "SELECT m.rowid, m.user_id, m.content, f.context FROM memories m JOIN memories_fts f ON f.rowid = m.rowid "
        "WHERE m.rowid > ? ORDER BY m.rowid LIMIT 5000",
        (last,),
    ).fetchall():
        db.executemany("UPDATE memories SET context = ? WHERE rowid = ?", ((r[3], r[0]) for r in rows))
        _post(db, [(r[0], r[1], postings.postings(r[2], r[3])) for r in rows])
        last = rows[-1][0]
    db.execute("DROP TABLE memories_vocab")
    db.execute("DROP TABLE memories_fts")


def _m005_packed_postings(db: sqlite3.Connection) -> None:
    # Writes: one B-tree of postings instead of two, half the rows. Each memory's postings move onto
    # its own row (packed), where search reads a candidate's impacts; the postings table keeps the
    # impact order (quantised) of each memory's own words only, as its key, with no second index.
    db.execute("ALTER TABLE memories ADD COLUMN terms BLOB NOT NULL DEFAULT x''")
    db.execute("DROP TABLE memory_terms")
    db.execute(_POSTINGS_TABLE)
    last = 0
    while rows := db.execute(
        "SELECT rowid, user_id, content, context FROM memories WHERE rowid > ? ORDER BY rowid LIMIT 5000", (last,)
    ).fetchall():
        posted = [(r[0], r[1], postings.postings(r[2], r[3])) for r in rows]
        db.executemany("UPDATE memories SET terms = ? WHERE rowid = ?", ((postings.pack(ps), m) for m, _, ps in posted))
        _insert_postings(db, posted)
        last = rows[-1][0]


def _m006_pending_postings(db: sqlite3.Connection) -> None:
    # Writes: a new memory's postings wait, packed on its own row, until MERGE_ROWS memories (or
    # SCOPE_PENDING of one scope) have come; then they go into the term index and the document
    # counts together, in key order, so a merge writes each page of those B-trees once instead of
    # once per posting. Until then a search reads them from the rows (_PENDING). Every memory of
    # an existing store is in the index already.
    db.execute("CREATE TABLE memory_terms_merged (upto INTEGER NOT NULL)")
    db.execute("INSERT INTO memory_terms_merged SELECT coalesce(max(rowid), 0) FROM memories")


MIGRATIONS: list[Callable[[sqlite3.Connection], None]] = [
    _m001_initial,
    _m002_vocabulary,
    m003_usage,
    _m004_postings,
    _m005_packed_postings,
    _m006_pending_postings,
    m007_object_owners,
    m008_scope_projects,
    m009_scope_retention,
]
# (memory rowid, scope, its postings as Posting or plain (term, impact, own) tuples)
Posted = Sequence[tuple[int, str, Sequence[tuple[int, int, bool]]]]
Pending = list[tuple[int, int, int, bool]]  # (term, memory, impact, own text?) in memories pending a merge
_POSTINGS_TABLE = (
    "CREATE TABLE memory_terms (scope INTEGER NOT NULL, term INTEGER NOT NULL, impact INTEGER NOT NULL, "
    "mem INTEGER NOT NULL, PRIMARY KEY (scope, term, impact DESC, mem DESC)) WITHOUT ROWID"
)
_DOCS_UPSERT = (
    "INSERT INTO memory_term_docs (user_id, term, docs, own) VALUES (?, ?, ?, ?) "
    "ON CONFLICT (user_id, term) DO UPDATE SET docs = docs + excluded.docs, own = own + excluded.own"
)
# Each term's postings of highest impact in a scope (one range scan of the postings' key each): the
# memories they score best are the shortlist.
_TOP = (
    "SELECT t.term, t.mem, t.impact FROM memory_terms t WHERE t.scope = ? AND t.term = ? "
    "ORDER BY t.impact DESC, t.mem DESC LIMIT ?"
)


def _candidates_sql(n: int) -> str:
    """The top postings of `n` terms."""
    return " UNION ALL ".join([f"SELECT * FROM ({_TOP})"] * n)


# The (rowid, the scope's turn before it, packed postings) of memories (a JSON array of rowids) and of
# the scope's turn after each (a memory can come twice: as a candidate and as the turn after another).
_PACKED = (
    "SELECT m.rowid, (SELECT max(p.rowid) FROM memories p WHERE p.user_id = ?1 AND p.rowid < c.value), m.terms "
    "FROM json_each(?2) c JOIN memories m ON m.rowid = c.value WHERE +m.user_id = ?1 "
    "UNION ALL SELECT m.rowid, c.value, m.terms FROM json_each(?2) c JOIN memories m ON m.rowid = "
    "(SELECT min(n.rowid) FROM memories n WHERE n.user_id = ?1 AND n.rowid > c.value)"
)


# The packed postings of a scope's memories not yet merged into the term index (by the scope's rowid index).
_PENDING = (
    "SELECT m.rowid, m.terms FROM memories m WHERE m.user_id = ? AND m.rowid > (SELECT upto FROM memory_terms_merged)"
)


def _tops(rows: Iterable[tuple[int, int, int]], terms: Sequence[int], n: int) -> list[tuple[int, int, int]]:
    """Each term's `n` (term, memory, impact) postings of highest impact (ties: the newer memory), term by term:
    what the term index would give were every posting in it."""
    per_term: defaultdict[int, list[tuple[int, int]]] = defaultdict(list)
    for term, mem, impact in rows:
        per_term[term].append((impact, mem))
    return [(term, mem, impact) for term in terms for impact, mem in heapq.nlargest(n, per_term[term])]


def _merged(db: sqlite3.Connection) -> int:
    """The rowid up to which memories' postings are in the term index; those of the rows after it are pending."""
    return int(db.execute("SELECT upto FROM memory_terms_merged").fetchone()[0])


def _crowded(db: sqlite3.Connection, user_ids: Iterable[str], upto: int) -> bool:
    """Whether any of these scopes has SCOPE_PENDING memories pending a merge."""
    row = db.execute(
        "SELECT 1 FROM json_each(?1) s WHERE "
        "(SELECT count(*) FROM memories m WHERE m.user_id = s.value AND m.rowid > ?2) >= ?3 LIMIT 1",
        (orjson.dumps(sorted(set(user_ids))).decode(), upto, SCOPE_PENDING),
    )
    return row.fetchone() is not None


def _merge(db: sqlite3.Connection) -> None:
    """Move the pending memories' postings into the term index and the document counts."""
    rows = db.execute(
        "SELECT rowid, user_id, terms FROM memories WHERE rowid > ? ORDER BY rowid", (_merged(db),)
    ).fetchall()
    if rows:
        _post(db, [(rowid, u, postings.entries(packed)) for rowid, u, packed in rows])
        db.execute("UPDATE memory_terms_merged SET upto = ?", (rows[-1][0],))


def _insert_postings(db: sqlite3.Connection, posted: Posted) -> None:
    # In key order: a batch's postings of one scope and term land on the same pages one after another.
    rows = sorted((postings.scope_key(u), t, impact, rowid) for rowid, u, ps in posted for t, impact, own in ps if own)
    db.executemany("INSERT INTO memory_terms (scope, term, impact, mem) VALUES (?, ?, ?, ?)", rows)


def _post(db: sqlite3.Connection, posted: Posted) -> None:
    """Add memories' postings to the term index and their counts to the scopes' document counts."""
    _insert_postings(db, posted)
    db.executemany(_DOCS_UPSERT, postings.doc_totals((u, ps) for _, u, ps in posted))


def _unpost(db: sqlite3.Connection, posted: Posted) -> None:
    """Take memories' postings out of the term index and their counts out of the document counts."""
    db.executemany(
        "DELETE FROM memory_terms WHERE scope = ? AND term = ? AND impact = ? AND mem = ?",
        ((postings.scope_key(u), t, impact, rowid) for rowid, u, ps in posted for t, impact, own in ps if own),
    )
    totals = postings.doc_totals(((u, ps) for _, u, ps in posted), sign=-1)
    db.executemany(_DOCS_UPSERT, totals)
    db.executemany("DELETE FROM memory_term_docs WHERE user_id = ? AND term = ? AND docs <= 0", (t[:2] for t in totals))


_COLUMNS = "m.id, m.user_id, m.role, m.content, m.created_at, m.model, m.metadata, m.recall_count, m.last_recalled_at"
_N = 9  # columns in _COLUMNS: where whatever a query selects after them starts


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
    """Recompute one memory's neighbour context, and its postings, after a neighbour came or went."""
    row = db.execute("SELECT created_at, content, terms FROM memories WHERE rowid = ?", (rowid,)).fetchone()
    if row is not None:
        context = _context(db, user_id, rowid, row[0])
        fresh = postings.impacts(row[1], context)
        merged = rowid <= _merged(db)  # else its postings are on its row only
        if merged:
            _unpost(db, [(rowid, user_id, postings.unpack(row[2]))])
        db.execute("UPDATE memories SET context = ?, terms = ? WHERE rowid = ?", (context, postings.pack(fresh), rowid))
        if merged:
            _post(db, [(rowid, user_id, fresh)])


def _row(r: tuple[Any, ...]) -> Memory:
    return Memory(r[0], r[1], r[2], r[3], r[4], r[5], orjson.loads(r[6]), r[7], r[8])


class SqliteDb(SqliteUsage, SqliteObjects, SqliteProjects, SqliteRetention):
    """The SQL of the SQLite backend (blocking). Reads go through `_scoped`, which refuses SQL not bound to a scope."""

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
        self._migrate()
        self._sizes: dict[str, int] = {}  # memories per scope, for IDF: counted once, then kept up to date

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
            # Search reads a few hundred candidates' rows at random: mapped, each is a memory read, not a read call.
            conn.execute(f"PRAGMA mmap_size={MMAP_BYTES}")
            conn.execute(f"PRAGMA wal_autocheckpoint={CHECKPOINT_PAGES}")
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
        """The one door for scoped statements: the SQL must filter first on `m.user_id = ?` (memories and
        their counts) or `t.scope = ?` (postings, keyed by the scope's hash)."""
        if "m.user_id = ?" in sql:
            return self._conn().execute(sql, (user_id, *params))
        if "t.scope = ?" in sql:
            return self._conn().execute(sql, (postings.scope_key(user_id), *params))
        raise AssertionError("scoped SQL must filter on m.user_id = ? or t.scope = ?")

    def add_many(self, items: list[NewMemory]) -> list[Memory]:
        """Insert memories in one transaction, skipping duplicates (scope, role, text, metadata) and known ids.

        Their postings wait on their rows for the next merge (_m006_pending_postings), which this
        write runs when MERGE_ROWS memories, or SCOPE_PENDING of one scope, are pending.
        """
        if not items:
            return []
        with self._transaction() as db:
            rows = [r for r in (self._insert_row(db, item) for item in items) if r is not None]
            upto = _merged(db)
            # A rowid at or below the merge mark (the newest rows were deleted since) is indexed at once.
            _post(db, [(rowid, m.user_id, postings.entries(packed)) for rowid, m, packed in rows if rowid <= upto])
            if rows and (rows[-1][0] - upto >= MERGE_ROWS or _crowded(db, (m.user_id for _, m, _ in rows), upto)):
                _merge(db)
            for _, memory, _ in rows:
                if memory.user_id in self._sizes:
                    self._sizes[memory.user_id] += 1
        return [memory for _, memory, _ in rows]

    def _insert_row(self, db: sqlite3.Connection, item: NewMemory) -> tuple[int, Memory, bytes] | None:
        """Insert one memory with its packed postings (plain tuples that die at once: none piles up for the
        garbage collector to walk over and over while a batch is written)."""
        memory = as_stored(item)
        # A new row takes the largest rowid: the scope's latest turn is the one before it.
        context = _context(db, item.user_id, 1 << 62, item.created_at)
        packed = postings.pack(postings.impacts(item.content, context))
        cur = db.execute(
            "INSERT OR IGNORE INTO memories (id, user_id, role, content, content_hash, created_at, model, metadata, "
            "context, terms) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                memory.id,
                item.user_id,
                item.role,
                item.content,
                content_hash(item),
                item.created_at,
                item.model,
                metadata_text(item.metadata),
                context,
                packed,
            ),
        )
        return (cur.lastrowid, memory, packed) if cur.rowcount else None

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
                raise InvalidCursor("cursor is not one this server issued") from None
            sql += " AND (m.created_at < ? OR (m.created_at = ? AND m.rowid < ?))"
        sql += " ORDER BY m.created_at DESC, m.rowid DESC LIMIT ?"
        rows = self._scoped(user_id, sql, (*after, limit + 1)).fetchall()
        page = rows[:limit]
        next_cursor = f"{page[-1][4]!r}_{page[-1][_N]}" if len(rows) > limit else None
        return [_row(r) for r in page], next_cursor

    def get(self, user_id: str, memory_id: str) -> Memory | None:
        """One memory of this scope, or None."""
        r = self._scoped(user_id, f"SELECT {_COLUMNS} FROM memories m WHERE m.user_id = ? AND m.id = ?", (memory_id,))
        row = r.fetchone()
        return _row(row) if row else None

    def scope_of(self, memory_id: str) -> str | None:
        """The scope holding a memory id (the one unscoped read: it returns a scope name, never a memory)."""
        row = self._conn().execute("SELECT user_id FROM memories WHERE id = ?", (memory_id,)).fetchone()
        return row[0] if row else None

    def find_duplicate(self, item: NewMemory) -> Memory | None:
        """The stored memory with the same scope, role and text as `item`, if any."""
        row = self._scoped(
            item.user_id,
            f"SELECT {_COLUMNS} FROM memories m WHERE m.user_id = ? AND m.content_hash = ?",
            (content_hash(item),),
        ).fetchone()
        return _row(row) if row else None

    def delete(self, user_id: str, memory_id: str) -> bool:
        """Delete one memory of this scope with its index entry; False when absent."""
        with self._transaction() as db:
            row = self._scoped(
                user_id,
                "SELECT m.rowid, m.terms FROM memories m WHERE m.user_id = ? AND m.id = ?",
                (memory_id,),
            ).fetchone()
            if row:
                self._sizes.pop(user_id, None)
                following = _neighbour(db, user_id, row[0], before=False)
                if row[0] <= _merged(db):  # else its postings are on its row only
                    _unpost(db, [(row[0], user_id, postings.unpack(row[1]))])
                db.execute("DELETE FROM memories WHERE rowid = ?", (row[0],))
                if following is not None:  # its context quoted the deleted text
                    _reindex(db, user_id, following[0])
        if row:
            self._purge()
        return row is not None

    def forget(self, user_id: str) -> int:
        """Delete every memory, index entry and object owner of a scope, and purge the bytes from the files."""
        with self._transaction() as db:
            (count,) = self._scoped(user_id, "SELECT count(*) FROM memories m WHERE m.user_id = ?").fetchone()
            db.execute("DELETE FROM memory_terms WHERE scope = ?", (postings.scope_key(user_id),))
            db.execute("DELETE FROM memory_term_docs WHERE user_id = ?", (user_id,))
            db.execute("DELETE FROM memories WHERE user_id = ?", (user_id,))
            db.execute("DELETE FROM object_owners WHERE user_id = ?", (user_id,))
            self._sizes.pop(user_id, None)
        self._purge()
        return count

    def merge(self) -> None:
        """Merge every pending memory's postings into the term index now."""
        with self._transaction() as db:
            _merge(db)

    @contextmanager
    def _snapshot(self) -> Iterator[None]:
        """One read transaction: a merge committing between two reads must not count a posting twice or not at all."""
        db = self._conn()
        db.execute("BEGIN")
        try:
            yield
        finally:
            db.execute("COMMIT")

    def _pending(self, user_id: str, terms: Iterable[int]) -> Pending:
        """The (term, memory, impact, own text?) of these terms in the scope's memories pending a merge."""
        return postings.hits(self._scoped(user_id, _PENDING).fetchall(), terms)

    def _purge(self) -> None:
        """Leave no deleted bytes behind in the WAL (secure_delete zeroes them in the database file)."""
        db = self._conn()
        with self._write_lock:
            db.execute("PRAGMA wal_checkpoint(TRUNCATE)")

    def _size(self, user_id: str) -> int:
        """How many memories a scope holds (IDF's N): counted once, then kept up to date."""
        if user_id not in self._sizes:
            count = self._scoped(user_id, "SELECT count(*) FROM memories m WHERE m.user_id = ?")
            self._sizes[user_id] = count.fetchone()[0]
        return self._sizes[user_id]

    def _ranked(
        self, user_id: str, terms: Sequence[int], docs: dict[int, int], limit: int, pending: Pending, with_held: bool
    ) -> tuple[Found, dict[str, Held]]:
        """The scope's best matches for these terms (given each term's document count), best first, and
        (`with_held`) which of the terms each one's text holds and which only the turns around it hold.

        Three passes. The top postings per term (of the term index and the `pending` memories
        together) shortlist the RERANK_CANDIDATES memories they score best (by the impacts those
        postings carry); the shortlist and the turn after each are scored exactly (postings.rank,
        over every term's impact in each, read from their packed postings); then each of the best
        RERANK_CANDIDATES gains a share of its neighbours' scores (NEIGHBOUR_BOOST), so a turn
        inside a stretch of conversation that matches the question climbs above an isolated turn
        that shares a word with it by chance. Only the best `limit` rows are then read whole.
        """
        if not terms:
            return [], {}
        scope, read = postings.scope_key(user_id), postings.CANDIDATES_PER_WORD
        args = [p for t in terms for p in (scope, t, read)][1:]  # _scoped binds the first scope
        size = self._size(user_id)
        weights = {t: postings.idf(docs.get(t, 0), size) for t in terms}
        keep = max(limit, RERANK_CANDIDATES)
        top = self._scoped(user_id, _candidates_sql(len(terms)), args).fetchall()
        if pending:  # else the index's reads are each term's top postings already
            top = _tops([*top, *((t, m, impact) for t, m, impact, own in pending if own)], terms, read)
        short = [m for m, _ in postings.rank(top, weights, keep)]
        read_rows = self._scoped(user_id, _PACKED, (orjson.dumps(short).decode(),)).fetchall()
        packed = {r[0]: r[2] for r in read_rows}
        score = dict(postings.rank(postings.looked_up(packed.items(), terms), weights, keep))
        final = postings.boosted(score, ((r[0], r[1]) for r in read_rows))
        best = sorted(final, key=lambda m: (final[m], m), reverse=True)[:limit]
        if not best:
            return [], {}
        # The turn after each (for the held terms): min() over the scope's index finds it in one seek.
        after_sql = (
            "coalesce((SELECT x.terms FROM memories x WHERE x.rowid = (SELECT min(n.rowid) FROM memories n "
            "WHERE n.user_id = m.user_id AND n.rowid > m.rowid)), x'')"
            if with_held
            else "x''"
        )
        rows = self._scoped(
            user_id,
            # `+` keeps the planner on the rowids: the scope's index would walk the whole scope.
            f"SELECT {_COLUMNS}, m.rowid, {after_sql} FROM memories m "
            f"WHERE +m.user_id = ? AND m.rowid IN ({', '.join('?' * len(best))})",
            best,
        ).fetchall()
        rows.sort(key=lambda r: (final[r[_N]], r[_N]), reverse=True)
        found = [(_row(r), final[r[_N]]) for r in rows]
        if not with_held:
            return found, {}
        return found, postings.held([(r[0], packed[r[_N]], r[_N + 1]) for r in rows], terms)

    def _docs(self, user_id: str, terms: Iterable[int], pending: Pending) -> dict[int, tuple[int, int]]:
        """Per term, the scope's memories holding it anywhere and in their own text."""
        terms = list(terms)
        if not terms:
            return {}
        rows = self._scoped(
            user_id,
            "SELECT m.term, m.docs, m.own FROM memory_term_docs m "
            f"WHERE m.user_id = ? AND m.term IN ({', '.join('?' * len(terms))})",
            terms,
        )
        counts = {t: (docs, own) for t, docs, own in rows}
        for t, _, _, own in pending:
            docs, owned = counts.get(t, (0, 0))
            counts[t] = (docs + 1, owned + own)
        return counts

    def search(self, user_id: str, query: str, limit: int) -> Found:
        """Best matches within the scope, with a positive relevance score (see _ranked)."""
        terms = set(postings.question_terms(query).values())
        with self._snapshot():
            pending = self._pending(user_id, terms)
            docs = self._docs(user_id, terms, pending)
            found, _ = self._ranked(user_id, list(terms), {t: d for t, (d, _) in docs.items()}, limit, pending, False)
        return found

    def recall(self, user_id: str, query: str, limit: int) -> Recall:
        """What recall reads for a question, in one call: the best matches and what the relevance gate needs."""
        words = postings.question_terms(query)
        terms = set(words.values())
        with self._snapshot():
            pending = self._pending(user_id, terms)
            docs = self._docs(user_id, terms, pending)
            found, held = self._ranked(user_id, list(terms), {t: d for t, (d, _) in docs.items()}, limit, pending, True)
        own = {w: min(docs.get(t, (0, 0))[1], WORD_DOCS_CAP) for w, t in words.items()}
        return Recall(found, held, self._size(user_id), own)

    def export_page(self, user_id: str, after: tuple[float, int] | None) -> ExportPage:
        """Up to EXPORT_PAGE memories of a scope, oldest first, after a (created_at, rowid) position."""
        sql = f"SELECT {_COLUMNS}, m.rowid FROM memories m WHERE m.user_id = ?"
        params: tuple[Any, ...] = ()
        if after is not None:
            sql += " AND (m.created_at > ? OR (m.created_at = ? AND m.rowid > ?))"
            params = (after[0], after[0], after[1])
        rows = self._scoped(user_id, sql + " ORDER BY m.created_at, m.rowid LIMIT ?", (*params, EXPORT_PAGE))
        return [(_row(r), (r[4], r[_N])) for r in rows.fetchall()]

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
        """Raise when the database cannot be read."""
        self._conn().execute("SELECT 1 FROM schema_migrations LIMIT 1").fetchone()

    def close(self) -> None:
        """Close every connection the store's threads opened."""
        with self._all_lock:
            for conn in self._all:
                conn.close()
            self._all.clear()
        self._local = threading.local()


class SqliteStore(SqliteObjectsAsync, SqliteProjectsAsync):
    """The async facade over `SqliteDb`: every call runs on the store's own fixed pool of threads."""

    db: SqliteDb

    def __init__(self, path: str) -> None:
        self.path = path
        self.db = SqliteDb(path)
        # A fixed pool, not anyio's: its idle threads would exit and strand their connections.
        self._pool = ThreadPoolExecutor(STORE_THREADS, thread_name_prefix="memory-store")

    async def _run(self, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._pool, functools.partial(fn, *args))

    async def add_many(self, items: list[NewMemory]) -> list[Memory]:
        """See SqliteDb.add_many."""
        return await self._run(self.db.add_many, items)

    async def list(self, user_id: str, limit: int, cursor: str | None) -> tuple[list[Memory], str | None]:
        """See SqliteDb.list."""
        return await self._run(self.db.list, user_id, limit, cursor)

    async def get(self, user_id: str, memory_id: str) -> Memory | None:
        """See SqliteDb.get."""
        return await self._run(self.db.get, user_id, memory_id)

    async def scope_of(self, memory_id: str) -> str | None:
        """See SqliteDb.scope_of."""
        return await self._run(self.db.scope_of, memory_id)

    async def find_duplicate(self, item: NewMemory) -> Memory | None:
        """See SqliteDb.find_duplicate."""
        return await self._run(self.db.find_duplicate, item)

    async def expired(self, before: float, limit: int, scope: str | None = None) -> builtins.list[tuple[str, str]]:
        """See SqliteRetention.expired."""
        return await self._run(self.db.expired, before, limit, scope)

    async def over_quota(self, keep: int, limit: int, scope: str | None = None) -> builtins.list[tuple[str, str]]:
        """See SqliteRetention.over_quota."""
        return await self._run(self.db.over_quota, keep, limit, scope)

    async def scope_retention(self) -> dict[str, ScopeLimits]:
        """See SqliteRetention.scope_retention."""
        return await self._run(self.db.scope_retention)

    async def set_scope_retention(self, user_id: str, limits: ScopeLimits) -> None:
        """See SqliteRetention.set_scope_retention."""
        await self._run(self.db.set_scope_retention, user_id, limits)

    async def delete(self, user_id: str, memory_id: str) -> bool:
        """See SqliteDb.delete."""
        return await self._run(self.db.delete, user_id, memory_id)

    async def forget(self, user_id: str) -> int:
        """See SqliteDb.forget."""
        return await self._run(self.db.forget, user_id)

    async def search(self, user_id: str, query: str, limit: int) -> Found:
        """See SqliteDb.search."""
        return await self._run(self.db.search, user_id, query, limit)

    async def recall(self, user_id: str, query: str, limit: int) -> Recall:
        """See SqliteDb.recall."""
        return await self._run(self.db.recall, user_id, query, limit)

    async def export(self, user_id: str) -> AsyncIterator[Memory]:
        """Every memory of a scope, oldest first, read a page at a time."""
        after = None
        while page := await self._run(self.db.export_page, user_id, after):
            for memory, after in page:  # noqa: B007 - the last position is where the next page starts
                yield memory

    async def stats(self) -> dict[str, Any]:
        """See SqliteDb.stats."""
        return await self._run(self.db.stats)

    async def ping(self) -> None:
        """See SqliteDb.ping."""
        await self._run(self.db.ping)

    async def add_usage(self, records: builtins.list[UsageRecord]) -> None:
        """See SqliteUsage.add_usage."""
        await self._run(self.db.add_usage, records)

    async def prune_usage(self, before: float) -> int:
        """See SqliteUsage.prune_usage."""
        return await self._run(self.db.prune_usage, before)

    async def usage(self, f: UsageFilter) -> builtins.list[UsageRecord]:
        """See SqliteUsage.usage."""
        return await self._run(self.db.usage, f)

    async def recent_usage(self, f: UsageFilter, limit: int) -> builtins.list[UsageRecord]:
        """See SqliteUsage.recent_usage."""
        return await self._run(self.db.recent_usage, f, limit)

    async def recall_log(self, user_id: str, memory_id: str) -> builtins.list[UsageRecord]:
        """See SqliteUsage.recall_log."""
        return await self._run(self.db.recall_log, user_id, memory_id)

    async def scope_summaries(self, user_id: str | None) -> builtins.list[dict[str, Any]]:
        """See SqliteUsage.scope_summaries."""
        return await self._run(self.db.scope_summaries, user_id)

    async def scope_modes(self) -> dict[str, Mode]:
        """See SqliteUsage.scope_modes."""
        return await self._run(self.db.scope_modes)

    async def set_scope_mode(self, user_id: str, mode: Mode) -> None:
        """See SqliteUsage.set_scope_mode."""
        await self._run(self.db.set_scope_mode, user_id, mode)

    async def close(self) -> None:
        """Stop the store's threads, then close their connections."""
        self._pool.shutdown(wait=True)
        self.db.close()
