"""The memory store on both backends (SQLite, PostgreSQL): migrations, scoped CRUD/search, dedup, forget."""

from __future__ import annotations

import asyncio
import os
import tempfile
from collections import defaultdict
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import TypeVar

import asyncpg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from app import textindex
from app.records import memory_json
from app.store import Held, InvalidCursor, Memory, MemoryStore, NewMemory, open_store, postings
from app.store.objects import Owner
from app.store.sqlite import MIGRATIONS, SqliteStore, sqlite3
from tests.backends import reset_schema
from tests.test_cli import RECALL_FIELDS

T = TypeVar("T")

CANARY = "zqxcanary7731"  # lowercase, digit-final: the FTS tokenizer stores it verbatim


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "data" / "memory.db"


@pytest.fixture
async def store(store_url: str) -> AsyncIterator[MemoryStore]:
    s = await open_store(store_url)
    yield s
    await s.close()


@pytest.fixture
async def sqlite_store(db_path: Path) -> AsyncIterator[SqliteStore]:
    s = SqliteStore(str(db_path))
    yield s
    await s.close()


async def add(
    store: MemoryStore, user_id: str, content: str, role: str = "user", at: float = 1_700_000_000.0, **kw
) -> Memory:
    [m] = await store.add_many([NewMemory(user_id, role, content, created_at=at, **kw)])
    return m


async def all_pages(store: MemoryStore, user_id: str, limit: int) -> list[Memory]:
    out: list[Memory] = []
    cursor = None
    for _ in range(10_000):
        page, cursor = await store.list(user_id, limit, cursor)
        assert len(page) <= limit
        out.extend(page)
        if cursor is None:
            return out
    raise AssertionError("pagination never ended")


async def exported(store: MemoryStore, user_id: str) -> list[Memory]:
    return [m async for m in store.export(user_id)]


def raw_bytes(db_path: Path) -> bytes:
    data = b""
    for suffix in ("", "-wal"):
        p = Path(str(db_path) + suffix)
        if p.exists():
            data += p.read_bytes()
    return data


# --- schema --------------------------------------------------------------------------------------


async def test_migrations_recorded_and_idempotent(db_path: Path) -> None:
    s = SqliteStore(str(db_path))
    m = await add(s, "a", "kept across reopen")
    await s.close()
    s2 = SqliteStore(str(db_path))  # reopen: migrations must not run again
    s3 = SqliteStore(str(db_path))
    try:
        conn = sqlite3.connect(str(db_path))
        rows = conn.execute("SELECT version, name FROM schema_migrations ORDER BY version").fetchall()
        conn.close()
        assert [v for v, _ in rows] == list(range(1, len(MIGRATIONS) + 1))
        assert [n for _, n in rows] == [f.__name__ for f in MIGRATIONS]
        assert await s2.get("a", m.id) == m
        assert await s3.get("a", m.id) == m
    finally:
        await s2.close()
        await s3.close()


async def test_wal_mode(sqlite_store: SqliteStore, db_path: Path) -> None:
    await add(sqlite_store, "a", "x")
    conn = sqlite3.connect(str(db_path))
    try:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0].lower() == "wal"
    finally:
        conn.close()


async def test_creates_parent_directory_and_pings(tmp_path: Path) -> None:
    s = SqliteStore(str(tmp_path / "deep" / "er" / "m.db"))
    try:
        await s.ping()
        assert (tmp_path / "deep" / "er" / "m.db").exists()
    finally:
        await s.close()


# --- add / get / list --------------------------------------------------------------------------


async def test_add_and_get_round_trip(store: MemoryStore) -> None:
    m = await add(store, "proj", "we use Postgres 16", role="assistant", model="demo", metadata={"k": [1, "x"]})
    assert m.id and m.user_id == "proj" and m.role == "assistant" and m.model == "demo"
    assert await store.get("proj", m.id) == m
    js = memory_json(m)
    assert set(js) == {"id", "user_id", "role", "content", "created_at", "model", "metadata", *RECALL_FIELDS}
    assert js["created_at"].endswith("Z") and js["created_at"].startswith("2023-11-14T")


async def test_ids_are_unique(store: MemoryStore) -> None:
    ms = await store.add_many([NewMemory("a", "user", f"text {i}") for i in range(50)])
    assert len({m.id for m in ms}) == 50


async def test_list_newest_first(store: MemoryStore) -> None:
    for i, at in enumerate([5.0, 1.0, 3.0, 4.0, 2.0]):
        await add(store, "a", f"m{i}", at=1_700_000_000 + at)
    page, cursor = await store.list("a", 10, None)
    assert cursor is None
    times = [m.created_at for m in page]
    assert times == sorted(times, reverse=True) and len(page) == 5


@pytest.mark.parametrize("limit", [1, 2, 3, 5, 7, 23, 100])
async def test_cursor_pagination_covers_every_row_exactly_once(store: MemoryStore, limit: int) -> None:
    # Many equal timestamps exercise the tie-breaker; fractional ones exercise float round-tripping.
    items = [NewMemory("a", "user", f"row {i}", created_at=1_700_000_000 + (i // 4) + 0.1 * (i % 3)) for i in range(23)]
    await store.add_many(items)
    await add(store, "b", "another scope")
    got = await all_pages(store, "a", limit)
    assert len(got) == 23
    assert len({m.id for m in got}) == 23
    assert {m.content for m in got} == {f"row {i}" for i in range(23)}
    assert [m.created_at for m in got] == sorted((m.created_at for m in got), reverse=True)


async def test_list_rejects_garbage_cursor(store: MemoryStore) -> None:
    await add(store, "a", "x")
    with pytest.raises(InvalidCursor):
        await store.list("a", 10, "not-a-cursor")


async def test_list_empty_scope(store: MemoryStore) -> None:
    await add(store, "a", "x")
    assert await store.list("b", 10, None) == ([], None)


# --- dedup ---------------------------------------------------------------------------------------


async def test_dedup_of_identical_scope_role_content(store: MemoryStore) -> None:
    first = await add(store, "a", "same words")
    assert await store.add_many([NewMemory("a", "user", "same words", created_at=2e9)]) == []
    assert await store.add_many([NewMemory("a", "user", "same words"), NewMemory("a", "user", "same words")]) == []
    assert await store.find_duplicate(NewMemory("a", "user", "same words")) == first
    # a different role or scope is a different memory
    assert len(await store.add_many([NewMemory("a", "assistant", "same words")])) == 1
    assert len(await store.add_many([NewMemory("b", "user", "same words")])) == 1
    assert await store.find_duplicate(NewMemory("c", "user", "same words")) is None
    assert len(await all_pages(store, "a", 10)) == 2
    assert len(await all_pages(store, "b", 10)) == 1


async def test_dedup_within_one_batch(store: MemoryStore) -> None:
    out = await store.add_many(
        [NewMemory("a", "user", "dup"), NewMemory("a", "user", "dup"), NewMemory("a", "user", "x")]
    )
    assert [m.content for m in out] == ["dup", "x"]


# --- delete / cross-scope ----------------------------------------------------------------------


async def test_delete(store: MemoryStore) -> None:
    m = await add(store, "a", "to delete")
    keep = await add(store, "a", "to keep")
    assert await store.delete("a", m.id) is True
    assert await store.get("a", m.id) is None
    assert await store.delete("a", m.id) is False
    assert await store.get("a", keep.id) == keep
    assert await store.delete("a", "mem_doesnotexist") is False


async def test_other_scopes_id_is_invisible(store: MemoryStore) -> None:
    theirs = await add(store, "alice", "alice private note")
    assert await store.get("bob", theirs.id) is None
    assert await store.delete("bob", theirs.id) is False
    assert await store.get("alice", theirs.id) == theirs
    assert await store.search("bob", "alice private note", 10) == []


async def test_deleted_memory_no_longer_matches_search(store: MemoryStore) -> None:
    await add(store, "a", "hello world one", at=1.0)
    m = await add(store, "a", f"secret {CANARY} here", at=2.0)
    await add(store, "a", "later reply", role="assistant", at=3.0)
    assert await store.search("a", CANARY, 10)
    assert await store.delete("a", m.id)
    # The deleted words must be gone from the index, not linger in a neighbour's indexed context.
    assert await store.search("a", CANARY, 10) == []


# --- forget --------------------------------------------------------------------------------------


async def test_forget_removes_rows_and_index_entries(store: MemoryStore) -> None:
    await store.add_many([NewMemory("gone", "user", f"fact {i} about {CANARY}", created_at=1e9 + i) for i in range(7)])
    kept = await add(store, "stay", f"shared words fact about {CANARY}x")
    assert await store.forget("gone") == 7
    assert await store.list("gone", 10, None) == ([], None)
    assert await store.search("gone", "fact", 10) == []
    assert await exported(store, "gone") == []
    assert await store.get("stay", kept.id) == kept
    assert [m.id for m, _ in await store.search("stay", "fact", 10)] == [kept.id]
    assert await store.forget("gone") == 0
    assert (await store.stats())["memories"] == 1


async def test_forget_leaves_no_index_entries_sqlite(sqlite_store: SqliteStore, db_path: Path) -> None:
    await sqlite_store.add_many([NewMemory("gone", "user", f"fact {i}", created_at=1e9 + i) for i in range(7)])
    await add(sqlite_store, "stay", "kept fact")
    sqlite_store.db.merge()  # the postings pending on the rows go into the index
    assert await sqlite_store.forget("gone") == 7
    conn = sqlite3.connect(str(db_path))
    try:
        n_rows = conn.execute("SELECT count(*) FROM memories").fetchone()[0]
        terms = conn.execute("SELECT count(*), count(DISTINCT mem) FROM memory_terms").fetchone()
        counted = conn.execute("SELECT DISTINCT user_id FROM memory_term_docs").fetchall()
    finally:
        conn.close()
    assert n_rows == 1
    assert terms == (2, 1)  # "kept" and "fact" (its own words: its date is in its packed postings only)
    assert counted == [("stay",)]


async def test_forget_purges_canary_from_db_and_wal_bytes(sqlite_store: SqliteStore, db_path: Path) -> None:
    store = sqlite_store
    other = await add(store, "neighbour", "unrelated neighbour memory")
    items = [
        NewMemory(
            "victim",
            "user" if i % 2 else "assistant",
            f"turn {i}: my token is {CANARY} ok",
            created_at=1e9 + i,
            metadata={"note": CANARY},
        )
        for i in range(20)
    ]
    await store.add_many(items)
    assert CANARY.encode() in raw_bytes(db_path)
    assert await store.forget("victim") == 20
    data = raw_bytes(db_path)
    assert CANARY.encode() not in data
    assert CANARY.upper().encode() not in data
    assert await store.get("neighbour", other.id) == other
    await store.close()
    assert CANARY.encode() not in raw_bytes(db_path)


# --- search --------------------------------------------------------------------------------------


async def test_search_scoped_scored_best_first(store: MemoryStore) -> None:
    best = await add(store, "a", "postgres replication lag on the postgres primary", at=1e9)
    mid = await add(store, "a", "we talked about replication once", at=1e9 + 10)
    await add(store, "a", "completely different topic about cats", at=1e9 + 20)
    await add(store, "b", "postgres replication postgres replication", at=1e9 + 30)
    results = await store.search("a", "postgres replication", 10)
    assert [m.user_id for m, _ in results] == ["a"] * len(results)
    ids = [m.id for m, _ in results]
    assert ids[0] == best.id
    assert mid.id in ids
    scores = [s for _, s in results]
    assert all(s > 0 for s in scores)
    assert scores == sorted(scores, reverse=True)


async def test_search_limit_and_empty_queries(store: MemoryStore) -> None:
    for i in range(6):
        await add(store, "a", f"kubernetes note {i}", at=1e9 + i)
    assert len(await store.search("a", "kubernetes", 3)) == 3
    assert await store.search("a", "", 10) == []
    assert await store.search("a", "the and of", 10) == []  # stopwords only
    assert await store.search("a", '"*) OR NEAR(', 10) == []  # FTS syntax is data, not an error


async def test_search_stems_words(store: MemoryStore) -> None:
    m = await add(store, "a", "the deployments were failing")
    assert [x.id for x, _ in await store.search("a", "deployment fails", 10)] == [m.id]


async def test_a_frequent_words_postings_are_read_by_impact_up_to_the_budget(
    store_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:

    monkeypatch.setattr(postings, "CANDIDATES_PER_WORD", 3)
    store = await open_store(store_url)
    try:
        notes = [NewMemory("a", "user", f"deploy note {i} " + "filler " * i, created_at=1e9 + 2 * i) for i in range(10)]
        chatter = [NewMemory("a", "user", f"unrelated chatter {i}", created_at=1e9 + 2 * i + 1) for i in range(10)]
        # Last, after a turn that shares no word with the question: no neighbour of it scores, cut or not.
        quiet = NewMemory("a", "user", "more chatter", created_at=1.5e9)
        kiwi = NewMemory("a", "user", "deploy the kiwi service with a long tail " + "filler " * 20, created_at=2e9)
        await store.add_many([*sorted([*notes, *chatter], key=lambda m: m.created_at), quiet, kiwi])
        # Only the three highest-impact postings of "deploy" are read: the shortest notes, which say it most,
        # and with them the turns after them, whose context quotes them.
        found = {m.content for m, _ in await store.search("a", "deploy", 10)}
        assert found == {n.content for n in [*notes[:3], *chatter[:3]]}
        # A memory found through a rare word still gets the frequent word's share: its score is exact.
        hits = await store.search("a", "deploy kiwi", 3)
        assert hits[0][0].content == kiwi.content
        monkeypatch.setattr(postings, "CANDIDATES_PER_WORD", 1000)
        exact = await store.search("a", "deploy kiwi", 3)
        assert (hits[0][0].id, round(hits[0][1], 9)) == (exact[0][0].id, round(exact[0][1], 9))
    finally:
        await store.close()


REPLICATION_TURNS = [
    "we moved the postgres primary to the new rack",
    "replication lag spiked after the move",
    "the cat knocked the router off the desk",
    "postgres replication is healthy again",
    "lunch was a kiwi salad",
    "the replication slot filled the disk on the primary",
]


async def on_both(pg_database: str, tmp_path: Path, run: Callable[[MemoryStore], Awaitable[T]]) -> list[T]:
    """What `run` gives on a new SQLite store and on a new PostgreSQL one."""
    await reset_schema(pg_database)
    results = []
    for url in (str(tmp_path / "m.db"), pg_database):
        store = await open_store(url)
        try:
            results.append(await run(store))
        finally:
            await store.close()
    return results


async def replication_search(store: MemoryStore) -> list[tuple[str, float]]:
    return [(m.content, round(s, 9)) for m, s in await store.search("a", "postgres replication primary", 10)]


async def test_both_backends_rank_alike(pg_database: str, tmp_path: Path) -> None:
    async def run(store: MemoryStore) -> list[tuple[str, float]]:
        await store.add_many([NewMemory("a", "user", t, created_at=1e9 + i) for i, t in enumerate(REPLICATION_TURNS)])
        return await replication_search(store)

    results = await on_both(pg_database, tmp_path, run)
    assert results[0] == results[1] and len(results[0]) == 6  # the cat turn by its context


async def test_both_backends_rank_alike_after_deletes(pg_database: str, tmp_path: Path) -> None:
    # The neighbour boost reads the turns around each match: they must stay the scope's adjacent turns
    # when turns in the middle go and another scope's turns come between.
    async def run(store: MemoryStore) -> list[tuple[str, float]]:
        turns = [NewMemory("a", "user", t, created_at=1e9 + i) for i, t in enumerate(REPLICATION_TURNS)]
        added = await store.add_many(turns)
        await store.add_many(
            [
                NewMemory("b", "user", "postgres replication in another scope", created_at=1e9),
                NewMemory("a", "user", "the primary is back on postgres replication", created_at=1e9 - 5),
            ]
        )
        assert await store.delete("a", added[1].id) and await store.delete("a", added[4].id)
        return await replication_search(store)

    results = await on_both(pg_database, tmp_path, run)
    assert results[0] == results[1] and len(results[0]) == 5


async def test_the_turns_around_a_match_stay_adjacent_after_deletes_and_skipped_duplicates(
    store: MemoryStore,
) -> None:
    first = await add(store, "a", "first kiwi apple", at=1e9)
    gone = await add(store, "a", "gone kiwi banana", at=1e9 + 1)
    await store.add_many(
        [
            NewMemory("b", "user", "other kiwi cherry", created_at=1e9 + 2),
            NewMemory("a", "user", "first kiwi apple", created_at=1e9 + 3),  # a duplicate: skipped
            NewMemory("a", "user", "late kiwi date", created_at=1e9 - 9),  # imported out of order
            NewMemory("a", "user", "last kiwi elder", created_at=1e9 + 4),
        ]
    )
    assert await store.delete("a", gone.id)
    kiwi, apple, date, elder = postings.question_terms("kiwi apple date elder").values()
    read = await store.recall("a", "kiwi apple banana cherry date elder", 5)
    assert {m.content: read.held[m.id] for m, _ in read.found} == {
        "first kiwi apple": Held(frozenset({kiwi, apple}), frozenset({date})),
        "late kiwi date": Held(frozenset({kiwi, date}), frozenset({apple, elder})),
        "last kiwi elder": Held(frozenset({kiwi, elder}), frozenset({date})),
    }
    assert await store.delete("a", first.id)
    read = await store.recall("a", "kiwi apple banana cherry date elder", 5)
    assert {m.content: read.held[m.id] for m, _ in read.found} == {
        "late kiwi date": Held(frozenset({kiwi, date}), frozenset({elder})),
        "last kiwi elder": Held(frozenset({kiwi, elder}), frozenset({date})),
    }


# --- postings pending a merge (SQLite) -----------------------------------------------------------

TURNS = [
    *REPLICATION_TURNS,
    "a kiwi fell off the desk next to the router",
    "postgres vacuum ran long on the primary",
]
QUESTIONS = ["postgres replication primary", "kiwi desk", "router cat", "disk lag", "vacuum"]


def indexed(store: SqliteStore) -> tuple[int, int]:
    """(postings in the term index, the rowid up to which memories are merged into it)."""
    conn = store.db._conn()
    (count,) = conn.execute("SELECT count(*) FROM memory_terms").fetchone()
    (upto,) = conn.execute("SELECT upto FROM memory_terms_merged").fetchone()
    return count, upto


async def answers(store: MemoryStore) -> list[tuple[list[tuple[str, float]], dict[str, int]]]:
    out = []
    for q in QUESTIONS:
        found = [(m.content, round(s, 9)) for m, s in await store.search("a", q, 10)]
        out.append((found, (await store.recall("a", q, 10)).docs))
    return out


async def test_a_merge_changes_no_search_result(sqlite_store: SqliteStore) -> None:
    await sqlite_store.add_many([NewMemory("a", "user", t, created_at=1e9 + i) for i, t in enumerate(TURNS[:4])])
    sqlite_store.db.merge()
    await sqlite_store.add_many([NewMemory("a", "user", t, created_at=2e9 + i) for i, t in enumerate(TURNS[4:])])
    await add(sqlite_store, "b", "postgres kiwi router", at=3e9)  # another scope's pending memory counts nowhere
    assert indexed(sqlite_store)[1] == 4  # half merged, half pending
    before = await answers(sqlite_store)
    assert {c for found, _ in before for c, _ in found} == set(TURNS)  # pending and merged memories are found
    sqlite_store.db.merge()
    assert indexed(sqlite_store)[1] == len(TURNS) + 1
    assert await answers(sqlite_store) == before


async def test_pending_and_merged_memories_rank_as_on_postgresql(pg_database: str, tmp_path: Path) -> None:
    async def run(store: MemoryStore) -> list[tuple[list[tuple[str, float]], dict[str, int]]]:
        await store.add_many([NewMemory("a", "user", t, created_at=1e9 + i) for i, t in enumerate(TURNS[:5])])
        if isinstance(store, SqliteStore):
            store.db.merge()
        await store.add_many([NewMemory("a", "user", t, created_at=2e9 + i) for i, t in enumerate(TURNS[5:])])
        return await answers(store)

    results = await on_both(pg_database, tmp_path, run)
    assert results[0] == results[1]


async def test_deleting_a_pending_or_a_merged_memory_takes_its_postings_out(sqlite_store: SqliteStore) -> None:
    merged = await add(sqlite_store, "a", "the walrus story", at=1e9)
    await add(sqlite_store, "a", "unrelated chatter", at=1e9 + 1)
    sqlite_store.db.merge()
    pending = await add(sqlite_store, "a", "the narwhal story", at=1e9 + 2)
    await add(sqlite_store, "a", "more chatter", at=1e9 + 3)  # its context quotes the narwhal turn
    postings_before, _ = indexed(sqlite_store)
    assert await sqlite_store.delete("a", pending.id)
    assert await sqlite_store.search("a", "narwhal", 5) == []
    assert (await sqlite_store.recall("a", "narwhal", 5)).docs == {"narwhal": 0}
    assert indexed(sqlite_store)[0] == postings_before  # nothing of it was in the index
    assert await sqlite_store.delete("a", merged.id)
    assert await sqlite_store.search("a", "walrus", 5) == []
    assert (await sqlite_store.recall("a", "walrus", 5)).docs == {"walrus": 0}
    sqlite_store.db.merge()
    remaining = [m async for m in sqlite_store.export("a")]
    own = [p for m in remaining for p in postings.postings(m.content, "") if p.own]
    assert indexed(sqlite_store)[0] == len(own)  # the two left, each posted once


async def test_a_write_merges_past_the_store_or_scope_bound(
    sqlite_store: SqliteStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    from app.store import sqlite as backend

    monkeypatch.setattr(backend, "MERGE_ROWS", 6)
    monkeypatch.setattr(backend, "SCOPE_PENDING", 3)
    for i in range(2):
        await add(sqlite_store, "a", f"kiln note {i}", at=1e9 + i)
    assert indexed(sqlite_store) == (0, 0)
    await add(sqlite_store, "a", "kiln note 2", at=1e9 + 2)  # the scope's third pending memory
    assert indexed(sqlite_store) == (9, 3)
    for i in range(5):
        await add(sqlite_store, f"s{i}", "kiln note", at=1e9 + 3 + i)  # five scopes, one each
    assert indexed(sqlite_store) == (9, 3)
    await add(sqlite_store, "s5", "kiln note", at=1e9 + 9)  # the sixth memory since the merge
    assert indexed(sqlite_store) == (9 + 6 * 2, 9)


async def test_a_rowid_below_the_merge_mark_is_indexed_at_once(sqlite_store: SqliteStore) -> None:
    await add(sqlite_store, "a", "first turn", at=1e9)
    newest = await add(sqlite_store, "a", "second turn", at=1e9 + 1)
    sqlite_store.db.merge()
    assert await sqlite_store.delete("a", newest.id)
    again = await add(sqlite_store, "a", "the walrus turn", at=1e9 + 2)  # takes the deleted row's rowid
    assert indexed(sqlite_store) == (2 + 2, 2)
    assert [m.id for m, _ in await sqlite_store.search("a", "walrus", 5)] == [again.id]
    assert await sqlite_store.delete("a", again.id)
    assert indexed(sqlite_store) == (2, 2)


# --- export --------------------------------------------------------------------------------------


async def test_export_oldest_first_and_scoped(store: MemoryStore) -> None:
    for at in (3.0, 1.0, 2.0):
        await add(store, "a", f"a{at}", at=1e9 + at)
    await add(store, "b", "b only")
    out = await exported(store, "a")
    assert [m.content for m in out] == ["a1.0", "a2.0", "a3.0"]
    assert all(m.user_id == "a" for m in out)


async def test_stats(store: MemoryStore) -> None:
    await add(store, "a", "1")
    await add(store, "a", "2")
    await add(store, "b", "3")
    st_ = await store.stats()
    assert st_["memories"] == 3 and st_["scopes"] == {"a": 2, "b": 1}


# --- isolation, property-based -----------------------------------------------------------------

SCOPE_ALPHABET = "ABCXYZabcxyz0189._:@-"
WORDS = ["alpha", "beta", "gamma", "delta", "postgres", "deploy", "tabs", "secret", "2023", "monday"]
scopes_st = st.text(alphabet=SCOPE_ALPHABET, min_size=1, max_size=12)
content_st = st.lists(st.sampled_from(WORDS), min_size=1, max_size=5).map(" ".join)


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_scopes_never_leak(backend: str, request: pytest.FixtureRequest) -> None:
    url = request.getfixturevalue("pg_database") if backend == "postgresql" else None

    @settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(
        rows=st.lists(
            st.tuples(scopes_st, st.sampled_from(["user", "assistant"]), content_st), min_size=1, max_size=30
        ),
        page=st.integers(1, 7),
    )
    def check(rows: list[tuple[str, str, str]], page: int) -> None:
        with tempfile.TemporaryDirectory() as tmp:
            if url is not None:
                asyncio.run(reset_schema(url))
            asyncio.run(scopes_never_leak(url or os.path.join(tmp, "m.db"), rows, page))

    check()


async def scopes_never_leak(url: str, rows: list[tuple[str, str, str]], page: int) -> None:
    store = await open_store(url)
    try:
        added = await store.add_many([NewMemory(s, r, c, created_at=1e9 + i * 0.5) for i, (s, r, c) in enumerate(rows)])
        expected: dict[str, dict[str, Memory]] = defaultdict(dict)
        for m in added:
            expected[m.user_id][m.id] = m
        assert {(s, r, c) for s, r, c in rows} == {(m.user_id, m.role, m.content) for m in added}
        scopes = set(expected)

        for scope in scopes:
            mine = expected[scope]
            listed = await all_pages(store, scope, page)
            assert {m.id for m in listed} == set(mine) and len(listed) == len(mine)
            assert all(m.user_id == scope for m in listed)
            assert {m.id for m in await exported(store, scope)} == set(mine)
            for word in WORDS:
                for m, score in await store.search(scope, word, 50):
                    assert m.user_id == scope and m.id in mine and score > 0
            for other in scopes - {scope}:
                for mid in expected[other]:
                    assert await store.get(scope, mid) is None
                    assert await store.delete(scope, mid) is False

        # nothing was affected by the cross-scope attempts
        for scope in scopes:
            assert {m.id for m in await exported(store, scope)} == set(expected[scope])

        # forgetting one scope leaves every other scope whole
        victim = sorted(scopes)[0]
        assert await store.forget(victim) == len(expected[victim])
        assert await exported(store, victim) == []
        for scope in scopes - {victim}:
            assert {m.id for m in await exported(store, scope)} == set(expected[scope])
            one = next(iter(expected[scope]))
            assert await store.get(scope, one) == expected[scope][one]
        # a scope name that never stored anything sees nothing
        assert await store.list("never-used-scope!", 10, None) == ([], None)
    finally:
        await store.close()


async def test_store_threads_are_a_fixed_pool(tmp_path: Path) -> None:
    """Bursts of concurrent calls never open more connections than the store has threads."""
    from app.store.sqlite import STORE_THREADS

    store = SqliteStore(str(tmp_path / "pool.db"))
    try:
        await store.add_many([NewMemory("p", "user", "kiwi deploy notes")])
        for _ in range(5):
            await asyncio.gather(*(store.search("p", "kiwi", 5) for _ in range(16)))
        assert len(store.db._all) <= STORE_THREADS + 1  # + the opener's own connection
    finally:
        await store.close()


async def test_in_memory_store_is_shared_by_its_threads() -> None:
    store = SqliteStore(":memory:")
    try:
        await store.add_many([NewMemory("m", "user", "kiwi in memory")])
        hits = await store.search("m", "kiwi", 5)
        assert [m.content for m, _ in hits] == ["kiwi in memory"]
    finally:
        await store.close()


# --- PostgreSQL: several instances on one database ---------------------------------------------


@pytest.fixture
def pg_url(pg_database: str) -> str:
    asyncio.run(reset_schema(pg_database))
    return pg_database


async def test_instances_starting_together_migrate_once(pg_url: str) -> None:
    from app.store.postgres import MIGRATIONS as PG_MIGRATIONS

    stores = await asyncio.gather(*(open_store(pg_url) for _ in range(4)))
    try:
        await stores[0].add_many([NewMemory("a", "user", "after a racing start")])
        assert [m.content for s in stores for m in await exported(s, "a")] == ["after a racing start"] * 4
        conn = await asyncpg.connect(pg_url)
        try:
            rows = await conn.fetch("SELECT version, name FROM schema_migrations ORDER BY version")
        finally:
            await conn.close()
        assert [(r[0], r[1]) for r in rows] == [(i, name) for i, (name, _) in enumerate(PG_MIGRATIONS, start=1)]
    finally:
        for s in stores:
            await s.close()


async def test_a_history_resent_through_two_instances_is_stored_once(pg_url: str) -> None:
    one, two = await open_store(pg_url), await open_store(pg_url)
    try:
        turns = [NewMemory("h", "user" if i % 2 else "assistant", f"turn {i}", created_at=1e9 + i) for i in range(40)]
        results = await asyncio.gather(*(s.add_many(turns[:k]) for k in (10, 20, 30, 40) for s in (one, two)))
        assert sum(len(r) for r in results) == 40
        assert sorted(m.content for m in await exported(one, "h")) == sorted(t.content for t in turns)
    finally:
        await one.close()
        await two.close()


async def test_credentials_stay_out_of_stats(pg_url: str) -> None:
    with_password = pg_url.replace("postgresql://postgres@", "postgresql://postgres:sekrit-pw@")
    store = await open_store(with_password)
    try:
        stats = await store.stats()
        assert stats["backend"] == "postgresql" and "sekrit-pw" not in str(stats)
    finally:
        await store.close()


async def _links_are_adjacent_turns(url: str) -> None:
    """Each memory's prev_seq is the scope's turn just before it (by seq), as m005 defines it."""
    conn = await asyncpg.connect(url)
    try:
        rows = await conn.fetch(
            "SELECT seq, prev_seq, lag(seq) OVER (PARTITION BY user_id ORDER BY seq) FROM memories ORDER BY seq"
        )
    finally:
        await conn.close()
    assert rows and [(r[0], r[1]) for r in rows] == [(r[0], r[2]) for r in rows]


async def test_each_memory_links_the_scopes_turn_before_it(pg_url: str) -> None:
    one, two = await open_store(pg_url), await open_store(pg_url)
    try:
        turns = [NewMemory("a" if i % 3 else "b", "user", f"turn {i}", created_at=1e9 - i) for i in range(30)]
        await one.add_many([*turns[:10], turns[3], NewMemory("a", "user", "known id", id=turns[0].id), *turns[10:]])
        await _links_are_adjacent_turns(pg_url)
        # Two instances writing one scope at once: each batch follows the other's, whichever commits first.
        more = [NewMemory("a", "user", f"more {i}", created_at=1e9) for i in range(40)]
        await asyncio.gather(*(s.add_many(more[k : k + 5]) for k in range(0, 40, 5) for s in (one, two)))
        await _links_are_adjacent_turns(pg_url)
        a = await exported(one, "a")
        for m in (a[5], a[0], a[-1]):  # the middle, the first and the last turn
            assert await one.delete("a", m.id)
            await _links_are_adjacent_turns(pg_url)
        assert await two.forget("b") == 10
        await one.add_many([NewMemory("b", "user", "b again"), NewMemory("a", "user", "a again")])
        await _links_are_adjacent_turns(pg_url)
    finally:
        await one.close()
        await two.close()


def test_on_sqlite_a_search_and_a_recall_read_in_the_same_five_statements(tmp_path: Path) -> None:
    from app.store.sqlite import SqliteDb

    db = SqliteDb(str(tmp_path / "m.db"))
    try:
        db.add_many([NewMemory("a", "user", f"kiwi note {i}", created_at=1e9 + i) for i in range(5)])
        db.recall("a", "kiwi", 5)  # the scope's size is counted once, then kept
        statements: list[str] = []
        db._conn().set_trace_callback(statements.append)
        assert len(db.search("a", "kiwi", 5)) == 5
        searched = statements[:]
        recalled = db.recall("a", "kiwi note", 5)
        assert len(recalled.found) == 5 and all(recalled.held[m.id].own for m, _ in recalled.found)
        # Pending memories, document counts, top postings, the shortlist's packed postings with the turns
        # around each, then the matches (for recall, with the turn after each), in one read transaction.
        reads = [q for q in statements if q not in ("BEGIN", "COMMIT")]
        assert len(searched) == 7 and len(statements) == 14 and len(reads) == 10
        # (The trace shows each statement with its parameters bound.)
        assert all("m.user_id = 'a'" in q or f"t.scope = {postings.scope_key('a')}" in q for q in reads)
    finally:
        db.close()


async def test_a_search_and_a_recall_read_in_three_statements_each(pg_url: str) -> None:
    from app.store.postgres import PostgresStore

    store = await PostgresStore.open(pg_url)
    try:
        await store.add_many([NewMemory("a", "user", f"kiwi note {i}", created_at=1e9 + i) for i in range(5)])
        await store.recall("a", "kiwi", 5)  # the scope's size is counted once, then kept
        statements: list[str] = []
        async with store._pool.acquire() as conn:
            conn.add_query_logger(lambda q: statements.append(q.query))
        assert len(await store.search("a", "kiwi", 5)) == 5
        assert len((await store.recall("a", "kiwi note", 5)).found) == 5
        # The top postings with the document counts, the shortlist's packed postings, then the matches
        # (with the turn after each); no reset query when the pool gets the connection back.
        assert len(statements) == 6 and all("m.user_id = $1" in q for q in statements)
        async with store._pool.acquire() as conn:
            await conn.execute("BEGIN")
        async with store._pool.acquire() as conn:
            assert not conn.is_in_transaction()  # a transaction left open is rolled back
    finally:
        await store.close()


# --- what recall's relevance gate reads ----------------------------------------------------------


async def test_recall_counts_the_scopes_memories_holding_each_word(store: MemoryStore) -> None:
    await add(store, "a", "the zebrafish tank needs cleaning", at=1e9)
    await add(store, "a", "zebrafish eat flakes", at=1e9 + 1)
    await add(store, "a", "the kiln is hot", at=1e9 + 2)
    await add(store, "b", "zebrafish zebrafish kiln", at=1e9 + 3)
    read = await store.recall("a", "zebrafish kiln walrus", 5)
    assert (read.size, read.docs) == (3, {"zebrafish": 2, "kiln": 1, "walrus": 0})
    await add(store, "a", "another kiln story", at=1e9 + 4)  # the size is kept up to date
    read = await store.recall("a", "kiln", 5)
    assert (read.size, read.docs) == (4, {"kiln": 2})
    assert await store.forget("a") == 4
    read = await store.recall("a", "kiln", 5)
    assert (read.found, read.size, read.docs) == ([], 0, {"kiln": 0})


async def test_recall_stops_counting_at_the_cap(store_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from app.store import postgres, sqlite

    for module in (sqlite, postgres):
        monkeypatch.setattr(module, "WORD_DOCS_CAP", 3)
    store = await open_store(store_url)
    try:
        await store.add_many([NewMemory("a", "user", f"kiln note {i}", created_at=1e9 + i) for i in range(5)])
        read = await store.recall("a", "kiln note walrus", 5)
        assert (read.size, read.docs) == (5, {"kiln": 3, "note": 3, "walrus": 0})
    finally:
        await store.close()


async def test_recall_counts_a_memorys_own_text_not_its_context(store: MemoryStore) -> None:
    await add(store, "a", "the walrus story", at=1e9)
    await add(store, "a", "next turn without the animal", at=1e9 + 1)  # its context quotes the walrus turn
    read = await store.recall("a", "walrus", 5)
    assert (read.size, read.docs) == (2, {"walrus": 1})
    assert len(read.found) == 2  # the search itself finds a turn by its context too


async def test_recall_tells_which_question_words_each_match_and_the_turns_around_it_hold(store: MemoryStore) -> None:
    first = await add(store, "a", "first turn kiwi", at=1e9)
    await add(store, "b", "another scope's kiwi mango turn", at=1e9 + 1)
    second = await add(store, "a", "second turn kiwi pear", at=1e9 + 2)
    third = await add(store, "a", "third turn kiwi mango", at=1e9 + 3)
    read = await store.recall("a", "kiwi pear mango", 5)
    kiwi, pear, mango = (postings.term_key(w) for w in ("kiwi", "pear", "mango"))
    assert {m.id for m, _ in read.found} == {first.id, second.id, third.id}
    assert read.held == {
        first.id: Held(frozenset({kiwi}), frozenset({pear})),  # the turn after it, in its own scope, says pear
        second.id: Held(frozenset({kiwi, pear}), frozenset({mango})),
        third.id: Held(frozenset({kiwi, mango}), frozenset({pear})),  # the turn before it says pear
    }
    assert [s for _, s in read.found] == sorted((s for _, s in read.found), reverse=True)


async def test_deleting_a_turn_reindexes_the_next_one(store: MemoryStore) -> None:
    gone = await add(store, "a", "the walrus story", at=1e9)
    await add(store, "a", "next turn without the animal", at=1e9 + 1)  # found by its context (the walrus turn)
    assert len(await store.search("a", "walrus", 5)) == 2
    assert await store.delete("a", gone.id)
    assert await store.search("a", "walrus", 5) == []
    assert (await store.recall("a", "walrus", 5)).docs == {"walrus": 0}


# --- migrating an existing store onto the term index ---------------------------------------------


async def test_sqlite_store_of_the_full_text_era_is_migrated_onto_the_term_index(db_path: Path) -> None:
    from app.store import sqlite as backend

    db_path.parent.mkdir(parents=True)  # the schema as it was: migrations 1-3, FTS5
    conn = sqlite3.connect(str(db_path), isolation_level=None)
    conn.execute("CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at REAL)")
    for version, migration in enumerate(backend.MIGRATIONS[:3], start=1):
        migration(conn)
        conn.execute("INSERT INTO schema_migrations VALUES (?, ?, 0)", (version, migration.__name__))
    for i, (text, context) in enumerate([("the walrus story", "1 May"), ("next turn", "2 May\nthe walrus story")]):
        conn.execute(
            "INSERT INTO memories (rowid, id, user_id, role, content, content_hash, created_at) "
            "VALUES (?, ?, 'a', 'user', ?, ?, ?)",
            (i + 1, f"mem_{i}", text, f"h{i}", 1e9 + i),
        )
        conn.execute(
            "INSERT INTO memories_fts (rowid, content, context, scope) VALUES (?, ?, ?, 'x')", (i + 1, text, context)
        )
    conn.close()
    store = SqliteStore(str(db_path))
    try:
        assert [m.id for m, _ in await store.search("a", "walrus", 5)] == ["mem_0", "mem_1"]
        assert (await store.recall("a", "walrus", 5)).docs == {"walrus": 1}
        tables = {r[0] for r in store.db._conn().execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        assert "memories_fts" not in tables and "memory_terms" in tables
        # The packed postings the migrations wrote are exact: deleting takes every posting back out.
        assert await store.delete("a", "mem_0")
        assert await store.search("a", "walrus", 5) == []
        (count,) = store.db._conn().execute("SELECT count(*) FROM memory_terms").fetchone()
        assert count == sum(p.own for p in postings.postings("next turn", textindex.date_words(1e9 + 1)))
    finally:
        await store.close()


async def test_postgres_store_of_the_tsvector_era_is_migrated_onto_the_term_index(pg_url: str) -> None:
    from app.store.postgres import MIGRATIONS as PG_MIGRATIONS

    conn = await asyncpg.connect(pg_url)
    try:
        await conn.execute(
            "CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at TIMESTAMPTZ)"
        )
        for version, (name, step) in enumerate(PG_MIGRATIONS[:2], start=1):
            assert isinstance(step, str)
            await conn.execute(step)
            await conn.execute("INSERT INTO schema_migrations (version, name) VALUES ($1, $2)", version, name)
        for i, (text, context) in enumerate([("the walrus story", "1 May"), ("next turn", "2 May\nthe walrus story")]):
            await conn.execute(
                "INSERT INTO memories (id, user_id, role, content, content_hash, created_at, context) "
                "VALUES ($1, 'a', 'user', $2, $3, $4, $5)",
                f"mem_{i}",
                text,
                f"h{i}",
                1e9 + i,
                context,
            )
    finally:
        await conn.close()
    store = await open_store(pg_url)
    try:
        assert [m.id for m, _ in await store.search("a", "walrus", 5)] == ["mem_0", "mem_1"]
        assert (await store.recall("a", "walrus", 5)).docs == {"walrus": 1}
        await _links_are_adjacent_turns(pg_url)  # m005 linked the rows already there
        # The packed postings the migrations wrote are exact: deleting takes every posting back out.
        assert await store.delete("a", "mem_0")
        assert await store.search("a", "walrus", 5) == []
        conn = await asyncpg.connect(pg_url)
        try:
            count = await conn.fetchval("SELECT count(*) FROM memory_terms")
        finally:
            await conn.close()
        assert count == sum(p.own for p in postings.postings("next turn", textindex.date_words(1e9 + 1)))
    finally:
        await store.close()


async def test_object_owners_are_recorded_once_and_go_with_their_scope(store: MemoryStore) -> None:
    alice, bob = Owner("k-alice", "alice"), Owner("k-bob", "bob")
    await store.own_object("resp_1", alice)
    await store.own_object("resp_1", bob)  # the first record stands
    await store.own_object("resp_2", bob)
    assert await store.object_owner("resp_1") == alice
    assert await store.object_owner("resp_2") == bob
    assert await store.object_owner("resp_unknown") is None
    await store.forget("alice")
    assert await store.object_owner("resp_1") is None
    assert await store.object_owner("resp_2") == bob
