"""The term index's arithmetic: a memory's postings, IDF, and the exact ranking of candidates."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from app.store import Held, postings


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
    rows = [(1, 10, 9000), (1, 11, 8000), (2, 11, 5000)]  # impacts 0.9, 0.8, 0.5 in IMPACT_SCALE steps
    assert postings.rank(rows, {1: 2.0, 2: 1.0}, 5) == [(11, pytest.approx(2.1)), (10, pytest.approx(1.8))]
    assert postings.rank(rows, {1: 2.0, 2: 1.0}, 1) == [(11, pytest.approx(2.1))]


def test_impacts_are_small_positive_integers() -> None:
    got = postings.postings("kiwi " * 50 + "pie", "kiwi " * 500)
    assert all(isinstance(p.impact, int) and 0 < p.impact < 1 << 15 for p in got)


def test_packed_postings_round_trip_with_the_own_text_mark() -> None:
    posted = postings.postings("Deploying the kiwi service", "8 May 2023 Monday\nthe kiwi pie")
    packed = postings.pack(posted)
    assert len(packed) == 10 * len(posted)
    assert postings.unpack(packed) == posted
    # The plain-tuple forms a write and a merge use carry the same postings.
    assert postings.impacts("Deploying the kiwi service", "8 May 2023 Monday\nthe kiwi pie") == posted
    assert postings.entries(packed) == posted


def test_hits_tell_which_memorys_own_text_holds_a_term() -> None:
    a = postings.postings("kiwi pie", "")
    b = postings.postings("deploy", "kiwi")  # kiwi only in its context
    kiwi = postings.term_key("kiwi")
    got = postings.hits([(1, postings.pack(a)), (2, postings.pack(b))], [kiwi])
    assert [(mem, own) for _, mem, _, own in got] == [(1, True), (2, False)]


def test_doc_totals_count_each_scope_and_term_in_order() -> None:
    kiwi, pie = postings.term_key("kiwi"), postings.term_key("pie")
    items = [
        ("b", postings.postings("kiwi", "")),
        ("a", postings.postings("kiwi pie", "")),
        ("a", postings.postings("pie", "kiwi")),
    ]
    got = postings.doc_totals(items, sign=-1)
    assert got == sorted(got)  # the same lock order for every writer
    assert {(u, t): (d, o) for u, t, d, o in got} == {
        ("a", kiwi): (-2, -1),
        ("a", pie): (-2, -2),
        ("b", kiwi): (-1, -1),
    }


def test_looked_up_reads_each_terms_impact_from_packed_postings() -> None:
    a = postings.postings("kiwi pie", "")
    b = postings.postings("deploy kiwi kiwi", "")
    kiwi, pie, absent = (postings.term_key(w) for w in ("kiwi", "pie", "nowher"))
    got = postings.looked_up([(1, postings.pack(a)), (2, postings.pack(b))], [kiwi, pie, absent])
    expected = {(p.term, 1, p.impact) for p in a} | {(p.term, 2, p.impact) for p in b if p.term == kiwi}
    assert set(got) == expected


def test_looked_up_skips_a_term_key_straddling_two_entries() -> None:
    # Entries (term, impact): the 8 bytes at offset 5 are a key no entry has; it must not be read.
    posted = [postings.Posting(0x0102030405060708, 300, True), postings.Posting(0x1112131415161718, 400, False)]
    packed = postings.pack(posted)
    straddling = int.from_bytes(packed[5:13], "big", signed=True)
    assert postings.looked_up([(1, packed)], [straddling]) == []
    assert postings.looked_up([(1, packed)], [0x1112131415161718]) == [(0x1112131415161718, 1, 400)]


def test_held_splits_a_questions_terms_into_own_text_and_the_turns_around() -> None:
    words = ("kiwi", "pie", "mango", "appl", "lemon", "fig")
    kiwi, pie, mango, apple, lemon, fig = (postings.term_key(w) for w in words)
    packed = postings.pack(postings.postings("kiwi pie", "8 May 2023\nmango"))  # its context: the turn before
    after = postings.pack(postings.postings("apple", "lemon"))  # the turn after: only its own text counts
    got = postings.held([("m", packed, after), ("first", packed, b"")], [kiwi, pie, mango, apple, lemon, fig])
    assert got["m"] == Held(frozenset({kiwi, pie}), frozenset({mango, apple}))
    assert got["first"] == Held(frozenset({kiwi, pie}), frozenset({mango}))  # the scope's latest turn: none after


entries = st.lists(st.tuples(st.integers(-(2**63), 2**63 - 1), st.integers(1, 20_000), st.booleans()), max_size=30)


@given(entries, entries, st.lists(st.integers(-(2**63), 2**63 - 1), max_size=5))
def test_held_finds_exactly_the_asked_terms_whatever_the_bytes(
    mine: list[tuple[int, int, bool]], next_turn: list[tuple[int, int, bool]], extra: list[int]
) -> None:
    mine = list({t: (t, i, o) for t, i, o in mine}.values())  # one posting per term, as postings() makes them
    next_turn = list({t: (t, i, o) for t, i, o in next_turn}.values())
    asked = {t for t, _, _ in mine[:3] + next_turn[:3]} | set(extra)
    packed = postings.pack(postings.Posting(*e) for e in mine)
    after = postings.pack(postings.Posting(*e) for e in next_turn)
    if len(packed) >= 20:  # eight bytes across two entries: a match there is no posting
        asked.add(int.from_bytes(packed[5:13], "big", signed=True))
    own = {t for t, _, o in mine if o} & asked
    near = ({t for t, _, o in mine if not o} | {t for t, _, o in next_turn if o}) & asked - own
    assert postings.held([(1, packed, after), (2, b"", b"")], asked) == {
        1: Held(frozenset(own), frozenset(near)),
        2: Held(frozenset(), frozenset()),
    }


def test_a_memory_gains_a_share_of_its_scored_neighbours_once_each() -> None:
    score = {1: 1.0, 2: 2.0, 3: 4.0, 9: 8.0}
    # 2 follows 1 and 3 follows 2; 3 was read twice (shortlisted, and as the turn after 2); 9 is alone
    # (its turn before, 8, was never scored); 1 is the scope's first turn.
    links = [(1, None), (2, 1), (3, 2), (3, 2), (9, 8)]
    b = postings.NEIGHBOUR_BOOST
    assert postings.boosted(score, links) == {1: 1.0 + b * 2.0, 2: 2.0 + b * 5.0, 3: 4.0 + b * 2.0, 9: 8.0}


def test_hostile_long_words_post_and_match_without_growing_the_caches() -> None:
    words = [f"{n:06d}" + "q" * 98_000 for n in range(20)]  # what a hostile import sent, one word a line
    sizes = (postings._short_word_key.cache_info().currsize, postings._term_key.cache_info().currsize)
    posted = [postings.postings(w, "") for w in words]
    assert (postings._short_word_key.cache_info().currsize, postings._term_key.cache_info().currsize) == sizes
    assert all(len(p) == 1 for p in posted)
    # A question holding the whole word finds it: the long word is its own term, as typed.
    assert postings.question_terms(words[3])[words[3]] == posted[3][0].term
    assert len({p[0].term for p in posted}) == len(words)
