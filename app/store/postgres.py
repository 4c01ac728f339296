"""The PostgreSQL backend: asyncpg with a pool, tsvector/GIN search, numbered migrations under an advisory lock.

Ranking mirrors SQLite's: a turn's own words weigh more than its context (date, previous turn)
(weights A and B of one tsvector), the neighbour re-rank, and the common-term rule (terms in
more than COMMON_TERM_DOCS rows are left out of a query, counted with ts_stat).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
from collections.abc import AsyncIterator, Sequence
from typing import Any

import asyncpg
import orjson
import snowballstemmer

from app import textindex
from app.proxy import redact_url
from app.store import (
    COMMON_REFRESH_ROWS,
    COMMON_TERM_DOCS,
    EXPORT_PAGE,
    GENERIC_TERM_DOCS,
    NEIGHBOUR_BOOST,
    NEIGHBOUR_CHARS,
    RERANK_CANDIDATES,
    SEARCH_WEIGHTS,
    WORD_DOCS_CAP,
    Found,
    InvalidCursor,
    Memory,
    NewMemory,
    as_stored,
    content_hash,
    metadata_text,
)
from app.store.postgres_usage import M002_USAGE, PostgresUsage

POOL_SIZE = 10
FREQUENT_TERM_DOCS = 500  # lexemes in more rows than this have their counts kept (see within_budget)
MATCH_BUDGET = 2000  # rows one search ranks at most, by those counts
MIGRATION_LOCK = 0x6D656D6F7279  # pg_advisory_lock key: "memory"; instances starting together take turns
TEXT_CONFIG = "english"  # the Snowball English stemmer and stopwords
_STEMMER = snowballstemmer.stemmer("english")  # what `english` does to a word, for the common-term rule
# ts_rank_cd weights for the labels {D, C, B, A}: A is the turn, B its context.
RANK_WEIGHTS = "{0, 0, %s, %s}" % (SEARCH_WEIGHTS[1], SEARCH_WEIGHTS[0])  # noqa: UP031 - a Postgres array literal

# The scope as a word of the index (weight D, which ranks 0): a search asks the GIN index for
# "this scope AND any of the words" at once, never for every row of a large scope.
SCOPE_TOKEN_SQL = "'s' || left(md5({}), 20)"
MIGRATIONS: list[tuple[str, str]] = [
    (
        "m001_initial",
        f"""
        CREATE TABLE memories (
            seq BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            id TEXT NOT NULL UNIQUE,
            user_id TEXT NOT NULL,
            role TEXT NOT NULL,
            content TEXT NOT NULL,
            content_hash TEXT NOT NULL,
            created_at DOUBLE PRECISION NOT NULL,
            model TEXT,
            metadata TEXT NOT NULL DEFAULT '{{}}',
            context TEXT NOT NULL DEFAULT '',
            tsv TSVECTOR GENERATED ALWAYS AS (
                setweight(to_tsvector('{TEXT_CONFIG}', content), 'A')
                || setweight(to_tsvector('{TEXT_CONFIG}', context), 'B')
                || setweight(to_tsvector('simple', {SCOPE_TOKEN_SQL.format("user_id")}), 'D')
            ) STORED,
            CONSTRAINT memories_dedup UNIQUE (user_id, content_hash)
        );
        CREATE INDEX memories_scope_time ON memories (user_id, created_at DESC, seq DESC);
        CREATE INDEX memories_scope_seq ON memories (user_id, seq);
        CREATE INDEX memories_tsv ON memories USING GIN (tsv);
        """,
    ),
    M002_USAGE,
]
_COLUMNS = "m.id, m.user_id, m.role, m.content, m.created_at, m.model, m.metadata, m.recall_count, m.last_recalled_at"
_N = 9  # columns in _COLUMNS: where whatever a query selects after them starts
# One statement per batch; rows go in batch order, and a duplicate or a known id is skipped.
INSERT_SQL = """
    INSERT INTO memories (id, user_id, role, content, content_hash, created_at, model, metadata, context)
    SELECT id, user_id, role, content, content_hash, created_at, model, metadata, context
    FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::float8[], $7::text[], $8::text[],
                $9::text[]) WITH ORDINALITY
        AS t(id, user_id, role, content, content_hash, created_at, model, metadata, context, ord)
    ORDER BY ord
    ON CONFLICT DO NOTHING
    RETURNING id
"""
# The latest turn of each scope: the first new turn's neighbour.
LATEST_SQL = f"""
    SELECT DISTINCT ON (user_id) user_id, left(content, {NEIGHBOUR_CHARS}) FROM memories
    WHERE user_id = ANY($1::text[]) ORDER BY user_id, seq DESC
"""


@functools.cache
def search_sql(n: int) -> str:
    """The first pass for a question of `n` words: BM25's shape over a tsvector.

    Each word's ts_rank in a turn (its frequency there, weighted A over B, over 1 + log(length))
    times the word's inverse document frequency in the scope ($3 = the scope's size). The GIN index
    alone finds the matches (the scope token AND any word): the scope filter is applied to the
    materialized matches, so the planner never intersects them with every row of a large scope.
    """
    terms = ", ".join(f"to_tsquery('{TEXT_CONFIG}', ($2::text[])[{i}]) AS q{i}" for i in range(1, n + 1))
    ranks = ", ".join(f"ts_rank('{RANK_WEIGHTS}', m.tsv, t.q{i}, 1) AS tf{i}" for i in range(1, n + 1))
    idf = ", ".join(
        f"ln(1 + ($3::float8 - count(*) FILTER (WHERE m.tf{i} > 0) + 0.5) "
        f"/ (count(*) FILTER (WHERE m.tf{i} > 0) + 0.5)) AS w{i}"
        for i in range(1, n + 1)
    )
    score = " + ".join(f"df.w{i} * m.tf{i}" for i in range(1, n + 1))
    return f"""
        WITH t AS MATERIALIZED (SELECT {terms}),
        hits AS MATERIALIZED (
            SELECT m.seq, m.user_id, {ranks} FROM memories m, t
            WHERE m.tsv @@ (to_tsquery('simple', {SCOPE_TOKEN_SQL.format("$1::text")})
                && to_tsquery('{TEXT_CONFIG}', $5))
        ),
        df AS MATERIALIZED (SELECT {idf} FROM hits m WHERE m.user_id = $1),
        top AS MATERIALIZED (
            SELECT m.seq, {score} AS score FROM hits m, df WHERE m.user_id = $1 ORDER BY score DESC LIMIT $4
        )
        SELECT {_COLUMNS}, top.score, m.seq FROM top JOIN memories m ON m.seq = top.seq
        WHERE m.user_id = $1 ORDER BY top.score DESC
    """


# Per word, the scope's memories whose own text holds it (weight A, up to WORD_DOCS_CAP); a word the `english`
# configuration drops (a stop word) holds no information there: it counts as in every memory.
WORD_DOCS_SQL = f"""
    SELECT w, CASE WHEN numnode(q) = 0 THEN $3::bigint ELSE (SELECT count(*) FROM (
        SELECT 1 FROM memories m WHERE m.user_id = $1
            AND m.tsv @@ (to_tsquery('simple', {SCOPE_TOKEN_SQL.format("$1::text")}) && q) LIMIT $4
    ) c) END
    FROM unnest($2::text[]) AS w, LATERAL (SELECT to_tsquery('{TEXT_CONFIG}', quote_literal(w) || ':A') AS q) t
"""
NEIGHBOURS_SQL = f"""
    SELECT m.id,
        coalesce((SELECT left(x.content, {NEIGHBOUR_CHARS}) FROM memories x WHERE x.seq =
            (SELECT max(p.seq) FROM memories p WHERE p.user_id = m.user_id AND p.seq < m.seq)), ''),
        coalesce((SELECT left(x.content, {NEIGHBOUR_CHARS}) FROM memories x WHERE x.seq =
            (SELECT min(n.seq) FROM memories n WHERE n.user_id = m.user_id AND n.seq > m.seq)), '')
    FROM memories m WHERE m.user_id = $1 AND m.id = ANY($2::text[])
"""
AROUND_SQL = """
    SELECT m.seq,
        (SELECT max(p.seq) FROM memories p WHERE p.user_id = m.user_id AND p.seq < m.seq),
        (SELECT min(n.seq) FROM memories n WHERE n.user_id = m.user_id AND n.seq > m.seq)
    FROM memories m WHERE m.user_id = $1 AND m.seq = ANY($2::bigint[])
"""


def insert_args(items: list[NewMemory], memories: list[Memory], previous: dict[str, str]) -> list[list[Any]]:
    """INSERT_SQL's columns for a batch; `previous` (scope -> start of its latest turn) is updated as it goes.

    A new turn's context is its date plus the start of the scope's turn before it.
    """
    contexts = []
    for m in memories:
        before = previous.get(m.user_id)
        date = textindex.date_words(m.created_at)
        contexts.append(f"{date}\n{before}" if before is not None else date)
        previous[m.user_id] = m.content[:NEIGHBOUR_CHARS]
    return [
        [m.id for m in memories],
        [m.user_id for m in memories],
        [m.role for m in memories],
        [m.content for m in memories],
        [content_hash(item) for item in items],
        [m.created_at for m in memories],
        [m.model for m in memories],
        [metadata_text(m.metadata) for m in memories],
        contexts,
    ]


def _row(r: asyncpg.Record) -> Memory:
    return Memory(r[0], r[1], r[2], r[3], r[4], r[5], orjson.loads(r[6]), r[7], r[8])


def _stem(word: str) -> str:
    return _STEMMER.stemWord(word)


def tsquery(words: list[str]) -> str:
    """A to_tsquery text matching any of the words (each quoted: \\w+ words hold no quote or backslash)."""
    return " | ".join(f"'{w}'" for w in words)


def within_budget(words: list[str], term_docs: dict[str, int]) -> list[str]:
    """Leave out the most frequent words until the rows they match fit MATCH_BUDGET.

    Ranking costs PostgreSQL per matching row (SQLite's FTS5 ranks from its index), so a question
    of frequent words would otherwise rank most of a large scope. The words left out are the ones
    BM25 weighs least; a question of nothing but such words searches nothing, as SQLite does past
    GENERIC_TERM_DOCS.
    """
    docs = {w: term_docs.get(_stem(w), 0) for w in words}
    kept = sorted(words, key=lambda w: docs[w])
    while kept and sum(docs[w] for w in kept) > MATCH_BUDGET:
        kept.pop()
    return [w for w in words if w in kept]


class PostgresStore(PostgresUsage):
    """PostgreSQL backend. Scoped statements go through `_scoped`, which refuses SQL not bound to a scope."""

    def __init__(self, url: str, pool: asyncpg.Pool) -> None:
        self.url = url
        self._pool = pool
        self.common_terms: dict[str, int] = {}
        self.term_docs: dict[str, int] = {}  # lexeme -> rows, for lexemes in more than FREQUENT_TERM_DOCS
        self._rows_at_refresh = 0
        self._rows_since_refresh = 0
        self._refresh: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._refresh.set_result(None)
        self._sizes: dict[str, int] = {}  # memories per scope, for IDF; another instance's writes drift it a little

    @classmethod
    async def open(cls, url: str) -> PostgresStore:
        """Connect a pool, run pending migrations (one instance at a time) and read the common terms."""
        pool = await asyncpg.create_pool(url, min_size=1, max_size=POOL_SIZE, command_timeout=60)
        store = cls(url, pool)
        try:
            await store._migrate()
        except BaseException:
            await pool.close()
            raise
        # ts_stat reads every row: on a large table that takes seconds, which start-up need not wait for.
        store._refresh_in_background()
        return store

    async def _migrate(self) -> None:
        async with self._pool.acquire() as conn:
            await conn.execute("SELECT pg_advisory_lock($1)", MIGRATION_LOCK)
            try:
                await conn.execute(
                    "CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, name TEXT NOT NULL, "
                    "applied_at TIMESTAMPTZ NOT NULL DEFAULT now())"
                )
                done = {r[0] for r in await conn.fetch("SELECT version FROM schema_migrations")}
                for version, (name, sql) in enumerate(MIGRATIONS, start=1):
                    if version not in done:
                        async with conn.transaction():
                            await conn.execute(sql)
                            await conn.execute(
                                "INSERT INTO schema_migrations (version, name) VALUES ($1, $2)", version, name
                            )
            finally:
                await conn.execute("SELECT pg_advisory_unlock($1)", MIGRATION_LOCK)

    async def _scoped(self, conn: Any, user_id: str, sql: str, *params: Any) -> list[asyncpg.Record]:
        """The one door for scoped reads: the SQL must filter on `m.user_id = $1`."""
        if "m.user_id = $1" not in sql:
            raise AssertionError("scoped SQL must filter on m.user_id = $1")
        return await conn.fetch(sql, user_id, *params)

    async def add_many(self, items: list[NewMemory]) -> list[Memory]:
        """Insert memories in one transaction, skipping duplicates (scope, role, text, metadata) and known ids.

        The unique constraints decide, so instances sharing the database never store a resent turn twice.
        """
        if not items:
            return []
        memories = [as_stored(item) for item in items]
        async with self._pool.acquire() as conn, conn.transaction():
            previous = dict(await conn.fetch(LATEST_SQL, list({m.user_id for m in memories})))
            inserted = await conn.fetch(INSERT_SQL, *insert_args(items, memories, previous))
        kept = {r[0] for r in inserted}
        added = []
        for m in memories:
            if m.id in kept:  # once: a batch may name one id twice
                kept.discard(m.id)
                added.append(m)
        for m in added:
            if m.user_id in self._sizes:
                self._sizes[m.user_id] += 1
        self._rows_since_refresh += len(added)
        if self._rows_since_refresh >= max(COMMON_REFRESH_ROWS, self._rows_at_refresh // 10):
            self._refresh_in_background()
        return added

    def _refresh_in_background(self) -> None:
        """Start a refresh of the term counts unless one is running: writes never wait for ts_stat's scan."""
        if self._refresh.done():
            self._rows_since_refresh = 0  # counted from now; the refresh itself re-reads the total
            self._refresh = asyncio.create_task(self.refresh_common_terms(), name="memory-common-terms")

    async def list(self, user_id: str, limit: int, cursor: str | None) -> tuple[list[Memory], str | None]:
        """Newest first; `cursor` is the opaque value of a previous page's `next_cursor`."""
        limit = max(limit, 1)
        params: tuple[Any, ...] = ()
        sql = f"SELECT {_COLUMNS}, m.seq FROM memories m WHERE m.user_id = $1"
        if cursor:
            ts, _, seq = cursor.partition("_")
            try:
                params = (float(ts), int(seq))
            except ValueError:
                raise InvalidCursor("cursor is not one this server issued") from None
            sql += " AND (m.created_at < $2 OR (m.created_at = $2 AND m.seq < $3))"
        sql += f" ORDER BY m.created_at DESC, m.seq DESC LIMIT ${len(params) + 2}"
        rows = await self._scoped(self._pool, user_id, sql, *params, limit + 1)
        page = rows[:limit]
        next_cursor = f"{page[-1][4]!r}_{page[-1][_N]}" if len(rows) > limit else None
        return [_row(r) for r in page], next_cursor

    async def get(self, user_id: str, memory_id: str) -> Memory | None:
        """One memory of this scope, or None."""
        rows = await self._scoped(
            self._pool, user_id, f"SELECT {_COLUMNS} FROM memories m WHERE m.user_id = $1 AND m.id = $2", memory_id
        )
        return _row(rows[0]) if rows else None

    async def scope_of(self, memory_id: str) -> str | None:
        """The scope holding a memory id (the one unscoped read: it returns a scope name, never a memory)."""
        return await self._pool.fetchval("SELECT user_id FROM memories WHERE id = $1", memory_id)

    async def find_duplicate(self, item: NewMemory) -> Memory | None:
        """The stored memory with the same scope, role and text as `item`, if any."""
        rows = await self._scoped(
            self._pool,
            item.user_id,
            f"SELECT {_COLUMNS} FROM memories m WHERE m.user_id = $1 AND m.content_hash = $2",
            content_hash(item),
        )
        return _row(rows[0]) if rows else None

    async def delete(self, user_id: str, memory_id: str) -> bool:
        """Delete one memory of this scope; the next turn's context, which quoted it, is recomputed."""
        async with self._pool.acquire() as conn, conn.transaction():
            rows = await self._scoped(
                conn, user_id, "DELETE FROM memories m WHERE m.user_id = $1 AND m.id = $2 RETURNING m.seq", memory_id
            )
            if not rows:
                return False
            self._sizes.pop(user_id, None)
            following = await self._scoped(
                conn,
                user_id,
                "SELECT m.seq, m.created_at FROM memories m WHERE m.user_id = $1 AND m.seq > $2 ORDER BY m.seq LIMIT 1",
                rows[0][0],
            )
            if following:
                seq, created_at = following[0]
                await self._scoped(
                    conn,
                    user_id,
                    "UPDATE memories m SET context = $3 || coalesce((SELECT E'\\n' || left(p.content, "
                    f"{NEIGHBOUR_CHARS}) FROM memories p WHERE p.user_id = $1 AND p.seq < $2 "
                    "ORDER BY p.seq DESC LIMIT 1), '') WHERE m.user_id = $1 AND m.seq = $2 RETURNING m.seq",
                    seq,
                    textindex.date_words(created_at),
                )
        return True

    async def forget(self, user_id: str) -> int:
        """Delete every memory of a scope, then VACUUM so the freed rows' space is reclaimed."""
        rows = await self._scoped(self._pool, user_id, "DELETE FROM memories m WHERE m.user_id = $1 RETURNING m.seq")
        self._sizes.pop(user_id, None)
        if rows:
            await self._pool.execute("VACUUM memories")
        return len(rows)

    async def refresh_common_terms(self) -> None:
        """Re-read the document counts of frequent lexemes (ts_stat: a scan of the index column)."""
        async with self._pool.acquire() as conn:
            total = await conn.fetchval("SELECT count(*) FROM memories")
            counts: dict[str, int] = {}
            floor = min(FREQUENT_TERM_DOCS, COMMON_TERM_DOCS)
            if total > floor:
                rows = await conn.fetch(
                    "SELECT word, ndoc FROM ts_stat('SELECT tsv FROM memories') WHERE ndoc > $1", floor
                )
                counts = {r[0]: r[1] for r in rows}
        self.term_docs = counts
        self.common_terms = {t: n for t, n in counts.items() if n > COMMON_TERM_DOCS}
        self._rows_at_refresh = total

    async def _scope_size(self, conn: Any, user_id: str) -> int:
        """How many memories a scope holds (IDF's N), counted once and then kept up to date by this instance."""
        if user_id not in self._sizes:
            rows = await self._scoped(conn, user_id, "SELECT count(*) FROM memories m WHERE m.user_id = $1")
            self._sizes[user_id] = rows[0][0]
        return self._sizes[user_id]

    async def search(self, user_id: str, query: str, limit: int) -> Found:
        """Best matches within the scope, with a positive relevance score (two passes, as on SQLite)."""
        words = within_budget(textindex.query_words(query, self.common_terms, GENERIC_TERM_DOCS, _stem), self.term_docs)
        if not words:
            return []
        async with self._pool.acquire() as conn:
            size = await self._scope_size(conn, user_id)
            rows = await self._scoped(
                conn, user_id, search_sql(len(words)), words, size, max(limit, RERANK_CANDIDATES), tsquery(words)
            )
            if not rows:
                return []
            score = {r[_N + 1]: r[_N] for r in rows}
            around = await self._scoped(conn, user_id, AROUND_SQL, list(score))
        final = {
            seq: score[seq] + NEIGHBOUR_BOOST * (score.get(prev, 0.0) + score.get(nxt, 0.0))
            for seq, prev, nxt in around
        }
        ranked = sorted(rows, key=lambda r: final[r[_N + 1]], reverse=True)
        return [(_row(r), final[r[_N + 1]]) for r in ranked[:limit]]

    async def word_docs(self, user_id: str, words: Sequence[str]) -> tuple[int, dict[str, int]]:
        """The scope's size and, per word, how many of its memories (up to WORD_DOCS_CAP) hold it in their text."""
        async with self._pool.acquire() as conn:
            size = await self._scope_size(conn, user_id)
            rows = await self._scoped(conn, user_id, WORD_DOCS_SQL, words, size, WORD_DOCS_CAP) if words else []
        return size, {r[0]: r[1] for r in rows}

    async def neighbours(self, user_id: str, memory_ids: Sequence[str]) -> dict[str, str]:
        """For each memory, the start of the scope's turns just before and after it (the conversation around it)."""
        rows = await self._scoped(self._pool, user_id, NEIGHBOURS_SQL, memory_ids) if memory_ids else []
        return {r[0]: f"{r[1]}\n{r[2]}" for r in rows}

    async def export(self, user_id: str) -> AsyncIterator[Memory]:
        """Every memory of a scope, oldest first, read a page at a time."""
        base = f"SELECT {_COLUMNS}, m.seq FROM memories m WHERE m.user_id = $1"
        rows = await self._scoped(self._pool, user_id, f"{base} ORDER BY m.created_at, m.seq LIMIT $2", EXPORT_PAGE)
        while rows:
            for r in rows:
                yield _row(r)
            last = rows[-1]
            rows = await self._scoped(
                self._pool,
                user_id,
                f"{base} AND (m.created_at > $2 OR (m.created_at = $2 AND m.seq > $3)) "
                "ORDER BY m.created_at, m.seq LIMIT $4",
                last[4],
                last[_N],
                EXPORT_PAGE,
            )

    async def stats(self) -> dict[str, Any]:
        """Counts per scope (an operator's view, not scoped)."""
        rows = await self._pool.fetch("SELECT user_id, count(*) FROM memories GROUP BY user_id ORDER BY 2 DESC")
        scopes = {r[0]: r[1] for r in rows}
        size = await self._pool.fetchval("SELECT pg_total_relation_size('memories')")
        return {
            "backend": "postgresql",
            "path": redact_url(self.url),
            "memories": sum(scopes.values()),
            "scopes": scopes,
            "bytes": size,
        }

    async def ping(self) -> None:
        """Raise when the database cannot be read."""
        await self._pool.fetchval("SELECT 1 FROM schema_migrations LIMIT 1")

    async def close(self) -> None:
        """Stop a refresh still running, then close the pool's connections."""
        self._refresh.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await self._refresh
        await self._pool.close()
