"""How text becomes words: every word (for lengths), the meaningful ones (for the index and questions), stems."""

from __future__ import annotations

from app import textindex


def test_stem_is_porter():
    assert [textindex.stem(w) for w in ("running", "databases", "happily")] == ["run", "databas", "happili"]


def test_words_keep_everything_terms_only_the_meaningful_ones_once():
    text = "The cat's bowl: the CAT ate, didn't it?"
    assert textindex.words(text) == ["the", "cat", "s", "bowl", "the", "cat", "ate", "didn", "t", "it"]
    assert textindex.terms(text) == ["cat", "bowl", "ate"]
