"""app/store.py: the SQLite store (SPEC §5, §6, §7): migrations, WAL, scoped CRUD/search, purge on forget."""

from __future__ import annotations

import os
import tempfile
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from app.store import MIGRATIONS, Memory, NewMemory, SqliteStore, sqlite3

CANARY = "zqxcanary7731"  # lowercase, digit-final: the FTS tokenizer stores it verbatim


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "data" / "memory.db"


@pytest.fixture
def store(db_path: Path) -> Iterator[SqliteStore]:
    s = SqliteStore(str(db_path))
    yield s
    s.close()


def add(
    store: SqliteStore, user_id: str, content: str, role: str = "user", at: float = 1_700_000_000.0, **kw
) -> Memory:
    [m] = store.add_many([NewMemory(user_id, role, content, created_at=at, **kw)])
    return m


def all_pages(store: SqliteStore, user_id: str, limit: int) -> list[Memory]:
    out: list[Memory] = []
    cursor = None
    for _ in range(10_000):
        page, cursor = store.list(user_id, limit, cursor)
        assert len(page) <= limit
        out.extend(page)
        if cursor is None:
            return out
    raise AssertionError("pagination never ended")


def raw_bytes(db_path: Path) -> bytes:
    data = b""
    for suffix in ("", "-wal"):
        p = Path(str(db_path) + suffix)
        if p.exists():
            data += p.read_bytes()
    return data


# --- schema --------------------------------------------------------------------------------------


def test_migrations_recorded_and_idempotent(db_path: Path) -> None:
    s = SqliteStore(str(db_path))
    m = add(s, "a", "kept across reopen")
    s.close()
    s2 = SqliteStore(str(db_path))  # reopen: migrations must not run again
    s3 = SqliteStore(str(db_path))
    try:
        conn = sqlite3.connect(str(db_path))
        rows = conn.execute("SELECT version, name FROM schema_migrations ORDER BY version").fetchall()
        conn.close()
        assert [v for v, _ in rows] == list(range(1, len(MIGRATIONS) + 1))
        assert [n for _, n in rows] == [f.__name__ for f in MIGRATIONS]
        assert s2.get("a", m.id) == m
        assert s3.get("a", m.id) == m
    finally:
        s2.close()
        s3.close()


def test_wal_mode(store: SqliteStore, db_path: Path) -> None:
    add(store, "a", "x")
    conn = sqlite3.connect(str(db_path))
    try:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0].lower() == "wal"
    finally:
        conn.close()


def test_creates_parent_directory_and_pings(tmp_path: Path) -> None:
    s = SqliteStore(str(tmp_path / "deep" / "er" / "m.db"))
    try:
        s.ping()
        assert (tmp_path / "deep" / "er" / "m.db").exists()
    finally:
        s.close()


# --- add / get / list --------------------------------------------------------------------------


def test_add_and_get_round_trip(store: SqliteStore) -> None:
    m = add(store, "proj", "we use Postgres 16", role="assistant", model="demo", metadata={"k": [1, "x"]})
    assert m.id and m.user_id == "proj" and m.role == "assistant" and m.model == "demo"
    assert store.get("proj", m.id) == m
    js = m.to_json()
    assert set(js) == {
        "id",
        "user_id",
        "role",
        "content",
        "created_at",
        "model",
        "metadata",
        "recall_count",
        "last_recalled_at",
    }
    assert js["created_at"].endswith("Z") and js["created_at"].startswith("2023-11-14T")


def test_ids_are_unique(store: SqliteStore) -> None:
    ms = store.add_many([NewMemory("a", "user", f"text {i}") for i in range(50)])
    assert len({m.id for m in ms}) == 50


def test_list_newest_first(store: SqliteStore) -> None:
    for i, at in enumerate([5.0, 1.0, 3.0, 4.0, 2.0]):
        add(store, "a", f"m{i}", at=1_700_000_000 + at)
    page, cursor = store.list("a", 10, None)
    assert cursor is None
    times = [m.created_at for m in page]
    assert times == sorted(times, reverse=True) and len(page) == 5


@pytest.mark.parametrize("limit", [1, 2, 3, 5, 7, 23, 100])
def test_cursor_pagination_covers_every_row_exactly_once(store: SqliteStore, limit: int) -> None:
    # Many equal timestamps exercise the tie-breaker; fractional ones exercise float round-tripping.
    items = [NewMemory("a", "user", f"row {i}", created_at=1_700_000_000 + (i // 4) + 0.1 * (i % 3)) for i in range(23)]
    store.add_many(items)
    add(store, "b", "another scope")
    got = all_pages(store, "a", limit)
    assert len(got) == 23
    assert len({m.id for m in got}) == 23
    assert {m.content for m in got} == {f"row {i}" for i in range(23)}
    assert [m.created_at for m in got] == sorted((m.created_at for m in got), reverse=True)


def test_list_rejects_garbage_cursor(store: SqliteStore) -> None:
    add(store, "a", "x")
    with pytest.raises(ValueError):
        store.list("a", 10, "not-a-cursor")


def test_list_empty_scope(store: SqliteStore) -> None:
    add(store, "a", "x")
    assert store.list("b", 10, None) == ([], None)


# --- dedup ---------------------------------------------------------------------------------------


def test_dedup_of_identical_scope_role_content(store: SqliteStore) -> None:
    first = add(store, "a", "same words")
    assert store.add_many([NewMemory("a", "user", "same words", created_at=2e9)]) == []
    assert store.add_many([NewMemory("a", "user", "same words"), NewMemory("a", "user", "same words")]) == []
    assert store.find_duplicate(NewMemory("a", "user", "same words")) == first
    # a different role or scope is a different memory
    assert len(store.add_many([NewMemory("a", "assistant", "same words")])) == 1
    assert len(store.add_many([NewMemory("b", "user", "same words")])) == 1
    assert store.find_duplicate(NewMemory("c", "user", "same words")) is None
    assert len(all_pages(store, "a", 10)) == 2
    assert len(all_pages(store, "b", 10)) == 1


def test_dedup_within_one_batch(store: SqliteStore) -> None:
    out = store.add_many([NewMemory("a", "user", "dup"), NewMemory("a", "user", "dup"), NewMemory("a", "user", "x")])
    assert [m.content for m in out] == ["dup", "x"]


# --- delete / cross-scope ----------------------------------------------------------------------


def test_delete(store: SqliteStore) -> None:
    m = add(store, "a", "to delete")
    keep = add(store, "a", "to keep")
    assert store.delete("a", m.id) is True
    assert store.get("a", m.id) is None
    assert store.delete("a", m.id) is False
    assert store.get("a", keep.id) == keep
    assert store.delete("a", "mem_doesnotexist") is False


def test_other_scopes_id_is_invisible(store: SqliteStore) -> None:
    theirs = add(store, "alice", "alice private note")
    assert store.get("bob", theirs.id) is None
    assert store.delete("bob", theirs.id) is False
    assert store.get("alice", theirs.id) == theirs
    assert store.search("bob", "alice private note", 10) == []


def test_deleted_memory_no_longer_matches_search(store: SqliteStore, db_path: Path) -> None:
    add(store, "a", "hello world one", at=1.0)
    m = add(store, "a", f"secret {CANARY} here", at=2.0)
    add(store, "a", "later reply", role="assistant", at=3.0)
    assert store.search("a", CANARY, 10)
    assert store.delete("a", m.id)
    # The deleted words must be gone from the index, not linger in a neighbour's indexed context.
    assert store.search("a", CANARY, 10) == []


# --- forget --------------------------------------------------------------------------------------


def test_forget_removes_rows_and_index_entries(store: SqliteStore, db_path: Path) -> None:
    store.add_many([NewMemory("gone", "user", f"fact {i} about {CANARY}", created_at=1e9 + i) for i in range(7)])
    kept = add(store, "stay", f"shared words fact about {CANARY}x")
    assert store.forget("gone") == 7
    assert store.list("gone", 10, None) == ([], None)
    assert store.search("gone", "fact", 10) == []
    assert list(store.export("gone")) == []
    assert store.get("stay", kept.id) == kept
    assert [m.id for m, _ in store.search("stay", "fact", 10)] == [kept.id]
    assert store.forget("gone") == 0
    conn = sqlite3.connect(str(db_path))
    try:
        n_fts = conn.execute("SELECT count(*) FROM memories_fts").fetchone()[0]
        n_rows = conn.execute("SELECT count(*) FROM memories").fetchone()[0]
    finally:
        conn.close()
    assert n_fts == n_rows == 1


def test_forget_purges_canary_from_db_and_wal_bytes(store: SqliteStore, db_path: Path) -> None:
    other = add(store, "neighbour", "unrelated neighbour memory")
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
    store.add_many(items)
    assert CANARY.encode() in raw_bytes(db_path)
    assert store.forget("victim") == 20
    data = raw_bytes(db_path)
    assert CANARY.encode() not in data
    assert CANARY.upper().encode() not in data
    assert store.get("neighbour", other.id) == other
    store.close()
    assert CANARY.encode() not in raw_bytes(db_path)


# --- search --------------------------------------------------------------------------------------


def test_search_scoped_scored_best_first(store: SqliteStore) -> None:
    best = add(store, "a", "postgres replication lag on the postgres primary", at=1e9)
    mid = add(store, "a", "we talked about replication once", at=1e9 + 10)
    add(store, "a", "completely different topic about cats", at=1e9 + 20)
    add(store, "b", "postgres replication postgres replication", at=1e9 + 30)
    results = store.search("a", "postgres replication", 10)
    assert [m.user_id for m, _ in results] == ["a"] * len(results)
    ids = [m.id for m, _ in results]
    assert ids[0] == best.id
    assert mid.id in ids
    scores = [s for _, s in results]
    assert all(s > 0 for s in scores)
    assert scores == sorted(scores, reverse=True)


def test_search_limit_and_empty_queries(store: SqliteStore) -> None:
    for i in range(6):
        add(store, "a", f"kubernetes note {i}", at=1e9 + i)
    assert len(store.search("a", "kubernetes", 3)) == 3
    assert store.search("a", "", 10) == []
    assert store.search("a", "the and of", 10) == []  # stopwords only
    assert store.search("a", '"*) OR NEAR(', 10) == []  # FTS syntax is data, not an error


def test_search_stems_words(store: SqliteStore) -> None:
    m = add(store, "a", "the deployments were failing")
    assert [x.id for x, _ in store.search("a", "deployment fails", 10)] == [m.id]


# --- export --------------------------------------------------------------------------------------


def test_export_oldest_first_and_scoped(store: SqliteStore) -> None:
    for at in (3.0, 1.0, 2.0):
        add(store, "a", f"a{at}", at=1e9 + at)
    add(store, "b", "b only")
    out = list(store.export("a"))
    assert [m.content for m in out] == ["a1.0", "a2.0", "a3.0"]
    assert all(m.user_id == "a" for m in out)


def test_stats(store: SqliteStore) -> None:
    add(store, "a", "1")
    add(store, "a", "2")
    add(store, "b", "3")
    st_ = store.stats()
    assert st_["memories"] == 3 and st_["scopes"] == {"a": 2, "b": 1}


# --- isolation, property-based -----------------------------------------------------------------

SCOPE_ALPHABET = "ABCXYZabcxyz0189._:@-"
WORDS = ["alpha", "beta", "gamma", "delta", "postgres", "deploy", "tabs", "secret", "2023", "monday"]
scopes_st = st.text(alphabet=SCOPE_ALPHABET, min_size=1, max_size=12)
content_st = st.lists(st.sampled_from(WORDS), min_size=1, max_size=5).map(" ".join)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    rows=st.lists(st.tuples(scopes_st, st.sampled_from(["user", "assistant"]), content_st), min_size=1, max_size=30),
    page=st.integers(1, 7),
)
def test_scopes_never_leak(rows: list[tuple[str, str, str]], page: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        store = SqliteStore(os.path.join(tmp, "m.db"))
        try:
            added = store.add_many([NewMemory(s, r, c, created_at=1e9 + i * 0.5) for i, (s, r, c) in enumerate(rows)])
            expected: dict[str, dict[str, Memory]] = defaultdict(dict)
            for m in added:
                expected[m.user_id][m.id] = m
            assert {(s, r, c) for s, r, c in rows} == {(m.user_id, m.role, m.content) for m in added}
            scopes = set(expected)

            for scope in scopes:
                mine = expected[scope]
                listed = all_pages(store, scope, page)
                assert {m.id for m in listed} == set(mine) and len(listed) == len(mine)
                assert all(m.user_id == scope for m in listed)
                exported = list(store.export(scope))
                assert {m.id for m in exported} == set(mine)
                for word in WORDS:
                    for m, score in store.search(scope, word, 50):
                        assert m.user_id == scope and m.id in mine and score > 0
                for other in scopes - {scope}:
                    for mid in expected[other]:
                        assert store.get(scope, mid) is None
                        assert store.delete(scope, mid) is False

            # nothing was affected by the cross-scope attempts
            for scope in scopes:
                assert {m.id for m in store.export(scope)} == set(expected[scope])

            # forgetting one scope leaves every other scope whole
            victim = sorted(scopes)[0]
            assert store.forget(victim) == len(expected[victim])
            assert list(store.export(victim)) == []
            for scope in scopes - {victim}:
                assert {m.id for m in store.export(scope)} == set(expected[scope])
                one = next(iter(expected[scope]))
                assert store.get(scope, one) == expected[scope][one]
            # a scope name that never stored anything sees nothing
            assert store.list("never-used-scope!", 10, None) == ([], None)
        finally:
            store.close()


async def test_store_threads_are_a_fixed_pool(tmp_path: Path) -> None:
    """Bursts of concurrent calls never open more connections than the store has threads."""
    import asyncio

    from app.store import STORE_THREADS

    store = SqliteStore(str(tmp_path / "pool.db"))
    try:
        await store.call(store.add_many, [NewMemory("p", "user", "kiwi deploy notes")])
        for _ in range(5):
            await asyncio.gather(*(store.call(store.search, "p", "kiwi", 5) for _ in range(16)))
        assert len(store._all) <= STORE_THREADS + 1  # + the opener's own connection
    finally:
        store.close()


async def test_in_memory_store_is_shared_by_its_threads() -> None:
    store = SqliteStore(":memory:")
    try:
        await store.call(store.add_many, [NewMemory("m", "user", "kiwi in memory")])
        hits = await store.call(store.search, "m", "kiwi", 5)
        assert [m.content for m, _ in hits] == ["kiwi in memory"]
    finally:
        store.close()
