"""The PostgreSQL backend: asyncpg with a pool, the term index (app/store/postings.py), numbered migrations
under an advisory lock.

Search reads the same postings and scores them with the same arithmetic as SQLite, so both backends
rank alike.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from typing import Any

import asyncpg
import orjson

from app import textindex
from app.proxy import redact_url
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
from app.store.postgres_objects import M006_OBJECT_OWNERS, PostgresObjects
from app.store.postgres_projects import M007_SCOPE_PROJECTS, PostgresProjects
from app.store.postgres_retention import M008_SCOPE_RETENTION, PostgresRetention
from app.store.postgres_usage import M002_USAGE, PostgresUsage

POOL_SIZE = 10
MIGRATION_LOCK = 0x6D656D6F7279  # pg_advisory_lock key: "memory"; instances starting together take turns
Posted = list[tuple[int, str, list[postings.Posting]]]  # (memory seq, scope, its postings)


async def _m003_postings(conn: Any) -> None:
    # The term index replaces the tsvector and its GIN index: postings read in impact order, so a
    # search never ranks a whole scope.
    await conn.execute(
        """
        ALTER TABLE memories DROP COLUMN tsv;
        CREATE TABLE memory_terms (
            scope BIGINT NOT NULL, term BIGINT NOT NULL, seq BIGINT NOT NULL, impact DOUBLE PRECISION NOT NULL,
            PRIMARY KEY (scope, term, seq) INCLUDE (impact)  -- a lookup reads the index alone
        );
        CREATE INDEX memory_terms_impact ON memory_terms (scope, term, impact DESC, seq DESC);
        CREATE TABLE memory_term_docs (
            user_id TEXT NOT NULL, term BIGINT NOT NULL, docs INTEGER NOT NULL, own INTEGER NOT NULL,
            PRIMARY KEY (user_id, term)
        );
        """
    )
    last = 0
    while rows := await conn.fetch(
        "SELECT seq, user_id, content, context FROM memories WHERE seq > $1 ORDER BY seq LIMIT 5000", last
    ):
        await _post(conn, [(r[0], r[1], postings.postings(r[2], r[3])) for r in rows])
        last = rows[-1][0]


async def _m004_packed_postings(conn: Any) -> None:
    # Writes: one B-tree of postings instead of two, half the rows. Each memory's postings move onto
    # its own row (packed), where search reads a candidate's impacts; the postings table keeps the
    # impact order (quantised) of each memory's own words only, with no primary key. The index is
    # built after the backfill.
    await conn.execute(
        """
        ALTER TABLE memories ADD COLUMN terms BYTEA NOT NULL DEFAULT '';
        DROP TABLE memory_terms;
        CREATE TABLE memory_terms (
            scope BIGINT NOT NULL, term BIGINT NOT NULL, seq BIGINT NOT NULL, impact SMALLINT NOT NULL
        );
        """
    )
    last = 0
    while rows := await conn.fetch(
        "SELECT seq, user_id, content, context FROM memories WHERE seq > $1 ORDER BY seq LIMIT 5000", last
    ):
        posted = [(r[0], r[1], postings.postings(r[2], r[3])) for r in rows]
        await conn.execute(
            "UPDATE memories SET terms = t.terms FROM unnest($1::bigint[], $2::bytea[]) AS t(seq, terms) "
            "WHERE memories.seq = t.seq",
            [seq for seq, _, _ in posted],
            [postings.pack(ps) for _, _, ps in posted],
        )
        await _insert_postings(conn, posted)
        last = rows[-1][0]
    await conn.execute(POSTINGS_INDEX)


Migration = str | Callable[[Any], Awaitable[None]]  # SQL, or a step that needs Python (the term index's backfill)
MIGRATIONS: list[tuple[str, Migration]] = [
    (
        "m001_initial",
        """
        CREATE TABLE memories (
            seq BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            id TEXT NOT NULL UNIQUE,
            user_id TEXT NOT NULL,
            role TEXT NOT NULL,
            content TEXT NOT NULL,
            content_hash TEXT NOT NULL,
            created_at DOUBLE PRECISION NOT NULL,
            model TEXT,
            metadata TEXT NOT NULL DEFAULT '{}',
            context TEXT NOT NULL DEFAULT '',
            tsv TSVECTOR GENERATED ALWAYS AS (
                setweight(to_tsvector('english', content), 'A')
                || setweight(to_tsvector('english', context), 'B')
                || setweight(to_tsvector('simple', 's' || left(md5(user_id), 20)), 'D')
            ) STORED,
            CONSTRAINT memories_dedup UNIQUE (user_id, content_hash)
        );
        CREATE INDEX memories_scope_time ON memories (user_id, created_at DESC, seq DESC);
        CREATE INDEX memories_scope_seq ON memories (user_id, seq);
        CREATE INDEX memories_tsv ON memories USING GIN (tsv);
        """,
    ),
    M002_USAGE,
    ("m003_postings", _m003_postings),
    ("m004_packed_postings", _m004_packed_postings),
    (
        "m005_previous_turn",
        # Each memory names the scope's turn before it (prev_seq): a search reads that off the row, and
        # the turn after through memories_prev, instead of a min()/max() probe of the scope's index per
        # row. The trigger sets it as a row goes in, seeing the rows its own statement put in before it
        # (never a duplicate ON CONFLICT skipped); writers of a scope hold its lock (SCOPE_LOCK_SQL), so
        # the turn before is the scope's latest committed one.
        """
        ALTER TABLE memories ADD COLUMN prev_seq BIGINT;
        UPDATE memories SET prev_seq = l.prev FROM (
            SELECT seq, lag(seq) OVER (PARTITION BY user_id ORDER BY seq) AS prev FROM memories
        ) l WHERE memories.seq = l.seq AND l.prev IS NOT NULL;
        CREATE INDEX memories_prev ON memories (prev_seq);
        CREATE FUNCTION memories_link() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            NEW.prev_seq := (SELECT max(seq) FROM memories WHERE user_id = NEW.user_id);
            RETURN NEW;
        END $$;
        CREATE TRIGGER memories_link BEFORE INSERT ON memories FOR EACH ROW EXECUTE FUNCTION memories_link();
        """,
    ),
    M006_OBJECT_OWNERS,
    M007_SCOPE_PROJECTS,
    M008_SCOPE_RETENTION,
]
POSTINGS_INDEX = "CREATE INDEX memory_terms_impact ON memory_terms (scope, term, impact DESC, seq DESC)"
_COLUMNS = "m.id, m.user_id, m.role, m.content, m.created_at, m.model, m.metadata, m.recall_count, m.last_recalled_at"
_N = 9  # columns in _COLUMNS: where whatever a query selects after them starts
# One statement per batch; rows go in batch order, and a duplicate or a known id is skipped.
INSERT_SQL = """
    INSERT INTO memories (id, user_id, role, content, content_hash, created_at, model, metadata, context, terms)
    SELECT id, user_id, role, content, content_hash, created_at, model, metadata, context, terms
    FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::float8[], $7::text[], $8::text[],
                $9::text[], $10::bytea[]) WITH ORDINALITY
        AS t(id, user_id, role, content, content_hash, created_at, model, metadata, context, terms, ord)
    ORDER BY ord
    ON CONFLICT DO NOTHING
    RETURNING id, seq
"""
# A writer of scopes' memories takes their locks first, in key order ($1 sorted): the turn before a new
# one (its context, its prev_seq) is then the latest turn of the scope, whatever another instance writes.
SCOPE_LOCK_SQL = "SELECT pg_advisory_xact_lock(k) FROM unnest($1::bigint[]) AS k"
# The latest turn of each scope: the first new turn's neighbour.
LATEST_SQL = f"""
    SELECT DISTINCT ON (user_id) user_id, left(content, {NEIGHBOUR_CHARS}) FROM memories
    WHERE user_id = ANY($1::text[]) ORDER BY user_id, seq DESC
"""


_DOCS_UPSERT = """
    INSERT INTO memory_term_docs (user_id, term, docs, own)
    SELECT * FROM unnest($1::text[], $2::bigint[], $3::int[], $4::int[])
    ON CONFLICT (user_id, term) DO UPDATE
    SET docs = memory_term_docs.docs + excluded.docs, own = memory_term_docs.own + excluded.own
"""
# A search's first read: each question term's postings of highest impact in the scope (one range scan
# of memory_terms_impact each) as (term, seq, impact, NULL), then the terms' document counts as
# (term, NULL, docs, own).
TOP_SQL = """
    SELECT k.term, x.seq, x.impact, NULL::int FROM unnest($3::bigint[]) AS k(term) CROSS JOIN LATERAL (
        SELECT t.seq, t.impact FROM memory_terms t WHERE t.scope = $2 AND t.term = k.term
        ORDER BY t.impact DESC, t.seq DESC LIMIT $4
    ) x
    UNION ALL
    SELECT m.term, NULL, m.docs, m.own FROM memory_term_docs m WHERE m.user_id = $1 AND m.term = ANY($3::bigint[])
"""
# The packed postings of memories and of the scope's turn after each (whose context quotes them),
# with the turn before each: (seq, prev_seq, terms).
# A turn after another is found through memories_prev alone, one probe each (LIMIT 1: there is one),
# and checked against the scope on its row: a planner without statistics (no ANALYZE yet) would
# otherwise AND the probe with the scope's whole index.
PACKED_SQL = """
    SELECT m.seq, m.prev_seq, m.terms FROM (
        SELECT c.user_id, c.seq, c.prev_seq, c.terms FROM memories c WHERE c.seq = ANY(ARRAY(
            SELECT s.seq FROM unnest($2::bigint[]) AS s(seq)
            UNION
            SELECT n.seq FROM unnest($2::bigint[]) AS s(seq)
                CROSS JOIN LATERAL (SELECT n.seq FROM memories n WHERE n.prev_seq = s.seq LIMIT 1) n
        ))
        OFFSET 0  -- read by primary key, then checked: the scope's index would compare its name in every probe
    ) m WHERE m.user_id = $1
"""
# The matches' rows, with their packed postings and those of the scope's turn after each (found as
# PACKED_SQL finds it).
ROWS_SQL = f"""
    SELECT {_COLUMNS}, m.seq, m.terms, coalesce(n.terms, ''::bytea)
    FROM memories m
    LEFT JOIN LATERAL (SELECT x.user_id, x.terms FROM memories x WHERE x.prev_seq = m.seq LIMIT 1) n
        ON n.user_id = m.user_id
    WHERE m.user_id = $1 AND m.seq = ANY($2::bigint[])
"""


def insert_args(
    items: list[NewMemory], memories: list[Memory], previous: dict[str, str], posted: list[list[postings.Posting]]
) -> list[list[Any]]:
    """INSERT_SQL's columns for a batch; `previous` (scope -> start of its latest turn) is updated as it goes,
    and each memory's postings are appended to `posted`.

    A new turn's context is its date plus the start of the scope's turn before it.
    """
    contexts = []
    for m in memories:
        before = previous.get(m.user_id)
        date = textindex.date_words(m.created_at)
        contexts.append(f"{date}\n{before}" if before is not None else date)
        posted.append(postings.postings(m.content, contexts[-1]))
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
        [postings.pack(ps) for ps in posted],
    ]


def _row(r: asyncpg.Record) -> Memory:
    return Memory(r[0], r[1], r[2], r[3], r[4], r[5], orjson.loads(r[6]), r[7], r[8])


async def _handed_back(conn: asyncpg.Connection) -> None:
    """The pool's reset of a connection it gets back: asyncpg's full reset only when a transaction was left open.

    The store keeps no other session state (no SET, LISTEN, cursors, or session locks past _migrate's),
    so the reset query, one more round trip on every call, is skipped.
    """
    if conn.is_in_transaction():
        await conn.reset()


async def _insert_postings(conn: Any, posted: Posted) -> None:
    # In key order: a batch's postings of one scope and term land on the same index pages one after another.
    rows = sorted((postings.scope_key(u), p.term, p.impact, seq) for seq, u, ps in posted for p in ps if p.own)
    await conn.execute(
        "INSERT INTO memory_terms (scope, term, impact, seq) "
        "SELECT * FROM unnest($1::bigint[], $2::bigint[], $3::smallint[], $4::bigint[])",
        *(zip(*rows, strict=True) if rows else ([], [], [], [])),
    )


async def _post(conn: Any, posted: Posted) -> None:
    """Add memories' postings to the term index and their counts to the scopes' document counts."""
    await _insert_postings(conn, posted)
    await _count(conn, postings.doc_totals((u, ps) for _, u, ps in posted))


async def _unpost(conn: Any, posted: Posted) -> None:
    """Take memories' postings out of the term index and their counts out of the document counts."""
    rows = [(postings.scope_key(u), p.term, p.impact, seq) for seq, u, ps in posted for p in ps if p.own]
    await conn.execute(
        "DELETE FROM memory_terms WHERE (scope, term, impact, seq) IN "
        "(SELECT * FROM unnest($1::bigint[], $2::bigint[], $3::smallint[], $4::bigint[]))",
        *(zip(*rows, strict=True) if rows else ([], [], [], [])),
    )
    totals = postings.doc_totals(((u, ps) for _, u, ps in posted), sign=-1)
    await _count(conn, totals)
    await conn.execute(
        "DELETE FROM memory_term_docs WHERE docs <= 0 AND (user_id, term) IN "
        "(SELECT * FROM unnest($1::text[], $2::bigint[]))",
        [t[0] for t in totals],
        [t[1] for t in totals],
    )


async def _count(conn: Any, totals: Iterable[tuple[str, int, int, int]]) -> None:
    columns = list(zip(*totals, strict=True))
    if columns:
        await conn.execute(_DOCS_UPSERT, *columns)


class PostgresStore(PostgresUsage, PostgresObjects, PostgresProjects, PostgresRetention):
    """PostgreSQL backend. Scoped statements go through `_scoped`, which refuses SQL not bound to a scope."""

    def __init__(self, url: str, pool: asyncpg.Pool) -> None:
        self.url = url
        self._pool = pool
        self._sizes: dict[str, int] = {}  # memories per scope, for IDF; another instance's writes drift it a little

    @classmethod
    async def open(cls, url: str) -> PostgresStore:
        """Connect a pool and run pending migrations (one instance at a time)."""
        pool = await asyncpg.create_pool(url, min_size=1, max_size=POOL_SIZE, command_timeout=60, reset=_handed_back)
        store = cls(url, pool)
        try:
            await store._migrate()
        except BaseException:
            await pool.close()
            raise
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
                for version, (name, step) in enumerate(MIGRATIONS, start=1):
                    if version not in done:
                        async with conn.transaction():
                            await (conn.execute(step) if isinstance(step, str) else step(conn))
                            await conn.execute(
                                "INSERT INTO schema_migrations (version, name) VALUES ($1, $2)", version, name
                            )
            finally:
                await conn.execute("SELECT pg_advisory_unlock($1)", MIGRATION_LOCK)

    async def _scoped(self, conn: Any, user_id: str, sql: str, *params: Any) -> list[asyncpg.Record]:
        """The one door for scoped reads: the SQL must filter on `m.user_id = $1` (memories and their
        counts); one that reads postings too filters them on `t.scope = $2`, bound here to the scope's key."""
        if "m.user_id = $1" not in sql:
            raise AssertionError("scoped SQL must filter on m.user_id = $1")
        if "t.scope = $2" in sql:
            params = (postings.scope_key(user_id), *params)
        return await conn.fetch(sql, user_id, *params)

    async def _lock(self, conn: Any, user_ids: Iterable[str]) -> None:
        """Take the scopes' write locks until the transaction ends (see SCOPE_LOCK_SQL)."""
        await conn.execute(SCOPE_LOCK_SQL, sorted({postings.scope_key(u) for u in user_ids}))

    async def add_many(self, items: list[NewMemory]) -> list[Memory]:
        """Insert memories in one transaction, skipping duplicates (scope, role, text, metadata) and known ids.

        The unique constraints decide, so instances sharing the database never store a resent turn twice.
        """
        if not items:
            return []
        memories = [as_stored(item) for item in items]
        async with self._pool.acquire() as conn, conn.transaction():
            await self._lock(conn, (m.user_id for m in memories))
            previous = dict(await conn.fetch(LATEST_SQL, list({m.user_id for m in memories})))
            posted: list[list[postings.Posting]] = []
            seqs = dict(await conn.fetch(INSERT_SQL, *insert_args(items, memories, previous, posted)))
            added = []
            for m, ps in zip(memories, posted, strict=True):
                if m.id in seqs:  # once: a batch may name one id twice
                    added.append((seqs.pop(m.id), m, ps))
            await _post(conn, [(seq, m.user_id, ps) for seq, m, ps in added])
        for _, m, _ in added:
            if m.user_id in self._sizes:
                self._sizes[m.user_id] += 1
        return [m for _, m, _ in added]

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
        """Delete one memory of this scope; the next turn now follows the one before, and its context,
        which quoted the deleted turn, is recomputed."""
        async with self._pool.acquire() as conn, conn.transaction():
            await self._lock(conn, [user_id])
            rows = await self._scoped(
                conn,
                user_id,
                "DELETE FROM memories m WHERE m.user_id = $1 AND m.id = $2 RETURNING m.seq, m.terms, m.prev_seq",
                memory_id,
            )
            if not rows:
                return False
            self._sizes.pop(user_id, None)
            seq, packed, prev_seq = rows[0]
            await _unpost(conn, [(seq, user_id, postings.unpack(packed))])
            following = await self._scoped(
                conn,
                user_id,
                f"SELECT m.seq, m.created_at, m.content, m.terms, left(p.content, {NEIGHBOUR_CHARS}) "
                "FROM (SELECT * FROM memories x WHERE x.prev_seq = $2 LIMIT 1) m "  # as PACKED_SQL finds it
                "LEFT JOIN memories p ON p.seq = $3 AND p.user_id = m.user_id WHERE m.user_id = $1",
                seq,
                prev_seq,
            )
            if following:
                seq, created_at, content, packed, before = following[0]
                context = "\n".join([textindex.date_words(created_at), *([before] if before is not None else [])])
                fresh = postings.postings(content, context)
                await self._scoped(
                    conn,
                    user_id,
                    "UPDATE memories m SET context = $3, terms = $4, prev_seq = $5 WHERE m.user_id = $1 AND m.seq = $2 "
                    "RETURNING m.seq",
                    seq,
                    context,
                    postings.pack(fresh),
                    prev_seq,
                )
                await _unpost(conn, [(seq, user_id, postings.unpack(packed))])
                await _post(conn, [(seq, user_id, fresh)])
        return True

    async def forget(self, user_id: str) -> int:
        """Delete every memory of a scope with its postings and object owners, then VACUUM (reclaims the space)."""
        async with self._pool.acquire() as conn, conn.transaction():
            await self._lock(conn, [user_id])
            rows = await self._scoped(conn, user_id, "DELETE FROM memories m WHERE m.user_id = $1 RETURNING m.seq")
            await conn.execute("DELETE FROM memory_terms WHERE scope = $1", postings.scope_key(user_id))
            await conn.execute("DELETE FROM memory_term_docs WHERE user_id = $1", user_id)
            await conn.execute("DELETE FROM object_owners WHERE user_id = $1", user_id)
        self._sizes.pop(user_id, None)
        if rows:
            await self._pool.execute("VACUUM memories, memory_terms, memory_term_docs")
        return len(rows)

    async def _scope_size(self, conn: Any, user_id: str) -> int:
        """How many memories a scope holds (IDF's N), counted once and then kept up to date by this instance."""
        if user_id not in self._sizes:
            rows = await self._scoped(conn, user_id, "SELECT count(*) FROM memories m WHERE m.user_id = $1")
            self._sizes[user_id] = rows[0][0]
        return self._sizes[user_id]

    async def _matches(
        self, conn: Any, user_id: str, terms: Sequence[int], limit: int
    ) -> tuple[Found, dict[str, Held], dict[int, int]]:
        """The scope's best matches for these terms, best first (the same two passes as SqliteDb._ranked),
        which of the terms each one's text holds and which only the turns around it hold, and each term's
        count of memories holding it in their own text."""
        if not terms:
            return [], {}, {}
        read = await self._scoped(conn, user_id, TOP_SQL, list(terms), postings.CANDIDATES_PER_WORD)
        top = [r[:3] for r in read if r[1] is not None]
        docs = {r[0]: r[2] for r in read if r[1] is None}
        own = {r[0]: r[3] for r in read if r[1] is None}
        size = await self._scope_size(conn, user_id)
        weights = {t: postings.idf(docs.get(t, 0), size) for t in terms}
        keep = max(limit, RERANK_CANDIDATES)
        short = [m for m, _ in postings.rank(top, weights, keep)]
        packed = await self._scoped(conn, user_id, PACKED_SQL, short) if short else []
        score = dict(postings.rank(postings.looked_up(((r[0], r[2]) for r in packed), terms), weights, keep))
        final = postings.boosted(score, ((r[0], r[1]) for r in packed))
        best = sorted(final, key=lambda m: (final[m], m), reverse=True)[:limit]
        rows = await self._scoped(conn, user_id, ROWS_SQL, best) if best else []
        ranked = sorted(rows, key=lambda r: (final[r[_N]], r[_N]), reverse=True)
        held = postings.held([(r[0], r[_N + 1], r[_N + 2]) for r in ranked], terms)
        return [(_row(r), final[r[_N]]) for r in ranked], held, own

    async def search(self, user_id: str, query: str, limit: int) -> Found:
        """Best matches within the scope, with a positive relevance score (see SqliteDb._ranked)."""
        terms = list(set(postings.question_terms(query).values()))
        async with self._pool.acquire() as conn:
            found, _, _ = await self._matches(conn, user_id, terms, limit)
        return found

    async def recall(self, user_id: str, query: str, limit: int) -> Recall:
        """What recall reads for a question, in one call: the best matches and what the relevance gate needs."""
        words = postings.question_terms(query)
        async with self._pool.acquire() as conn:
            found, held, docs = await self._matches(conn, user_id, list(set(words.values())), limit)
            size = await self._scope_size(conn, user_id)
        own = {w: min(docs.get(t, 0), WORD_DOCS_CAP) for w, t in words.items()}
        return Recall(found, held, size, own)

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
        size = await self._pool.fetchval(
            "SELECT sum(pg_total_relation_size(t::regclass))::bigint "
            "FROM unnest(ARRAY['memories', 'memory_terms', 'memory_term_docs']) t"
        )
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
        """Close the pool's connections."""
        await self._pool.close()
