"""The term index's arithmetic: a memory's postings, IDF, and the exact ranking of candidates."""

from __future__ import annotations

import pytest

from app.store import postings


def by_stem(content: str, context: str) -> dict[int, postings.Posting]:
    return {p.term: p for p in postings.postings(content, context)}


def test_a_memory_posts_each_stem_once_with_its_own_text_marked() -> None:
    got = by_stem("Deploying the deployment, deployed!", "8 May 2023 Monday\nthe kiwi service")
    deploy, kiwi = postings.term_key("deploy"), postings.term_key("kiwi")
    assert got[deploy].own and not got[kiwi].own
    assert postings.term_key("the") not in got  # stopwords are never posted
    assert {postings.term_key(w) for w in ("8", "mai", "2023", "mondai", "servic")} <= got.keys()


def test_impact_grows_with_frequency_and_falls_with_length_and_context_weighs_less() -> None:
    once = by_stem("kiwi pie", "")[postings.term_key("kiwi")].impact
    twice = by_stem("kiwi kiwi pie", "")[postings.term_key("kiwi")].impact
    longer = by_stem("kiwi pie " + "filler " * 40, "")[postings.term_key("kiwi")].impact
    around = by_stem("pie", "kiwi")[postings.term_key("kiwi")].impact
    assert twice > once > longer
    assert around < by_stem("kiwi", "pie")[postings.term_key("kiwi")].impact


def test_idf_is_positive_and_falls_with_document_count() -> None:
    assert postings.idf(1, 100) > postings.idf(50, 100) > postings.idf(100, 100) > 0
    assert postings.idf(5, 3) > 0  # counts drifting past the size never break it


def test_rank_sums_impact_times_idf_best_first() -> None:
    rows = [(1, 10, 0.9), (1, 11, 0.8), (2, 11, 0.5)]
    assert postings.rank(rows, {1: 2.0, 2: 1.0}, 5) == [(11, pytest.approx(2.1)), (10, pytest.approx(1.8))]
    assert postings.rank(rows, {1: 2.0, 2: 1.0}, 1) == [(11, pytest.approx(2.1))]
