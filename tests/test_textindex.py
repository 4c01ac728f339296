"""Query shaping: stopwords, stems, and leaving out terms too common to be worth ranking."""

from __future__ import annotations

from app import textindex


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
