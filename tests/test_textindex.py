"""Query shaping: stopwords, stems, and leaving out terms too common to be worth ranking."""

from __future__ import annotations

import pytest

from app import store as store_mod
from app import textindex
from app.store import NewMemory, SqliteStore


def test_stem_matches_the_index_tokenizer():
    assert [textindex.stem(w) for w in ("running", "databases", "happily")] == ["run", "databas", "happili"]


def test_common_terms_are_left_out_of_the_query():
    expr = textindex.match_expression("s", "python decorator caching", {"python": 50_000}, 40_000)
    assert '"python"' not in expr and '"decorator"' in expr and '"caching"' in expr
    assert expr.startswith(f"scope : {textindex.scope_token('s')} AND (")


def test_all_common_keeps_the_rarest_unless_generic():
    common = {"python": 50_000, "code": 20_000}
    assert textindex.match_expression("s", "python code", common, 40_000).endswith('("code")')
    assert textindex.match_expression("s", "python code", {"python": 50_000, "code": 45_000}, 40_000) is None
    assert '"python"' in textindex.match_expression("s", "python code", None)


def test_store_prunes_its_own_common_terms(tmp_path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(store_mod, "COMMON_TERM_DOCS", 5)
    monkeypatch.setattr(store_mod, "GENERIC_TERM_DOCS", 8)
    monkeypatch.setattr(store_mod, "COMMON_REFRESH_ROWS", 1)
    store = SqliteStore(str(tmp_path / "m.db"))
    try:
        items = [NewMemory("a", "user", f"deploy note number {i}") for i in range(10)]
        store.add_many([*items, NewMemory("a", "user", "deploy the kiwi service")])
        assert textindex.stem("deploy") in store.common_terms and "kiwi" not in store.common_terms
        hits = store.search("a", "how do we deploy kiwi", 3)
        assert hits[0][0].content == "deploy the kiwi service"
        assert store.search("a", "deploy", 3) == []  # only a generic word: nothing worth ranking
    finally:
        store.close()
