"""How text becomes words: every word (for lengths), the meaningful ones (for the index and questions), stems."""

from __future__ import annotations

from app import textindex


def test_stem_is_porter():
    assert [textindex.stem(w) for w in ("running", "databases", "happily")] == ["run", "databas", "happili"]


def test_words_keep_everything_terms_only_the_meaningful_ones_once():
    text = "The cat's bowl: the CAT ate, didn't it?"
    assert textindex.words(text) == ["the", "cat", "s", "bowl", "the", "cat", "ate", "didn", "t", "it"]
    assert textindex.terms(text) == ["cat", "bowl", "ate"]


def test_date_words_change_at_utc_midnight_before_and_after_the_epoch() -> None:
    assert textindex.date_words(86_399.9) == "1 January 1970 Thursday"
    assert textindex.date_words(86_400.0) == "2 January 1970 Friday"
    assert textindex.date_words(-0.5) == "31 December 1969 Wednesday"


def test_long_words_are_neither_stemmed_nor_cached() -> None:
    long_word = "running" * 20  # 140 characters, past MAX_WORD_CHARS
    before = textindex._stem.cache_info().currsize
    assert textindex.stem(long_word) == long_word
    assert textindex.stem("z" * textindex.MAX_WORD_CHARS + "ing") == "z" * textindex.MAX_WORD_CHARS + "ing"
    assert textindex._stem.cache_info().currsize == before
    assert textindex.stem("running") == "run"  # words up to the limit are stemmed as before
