"""app/relevance.py: which recalled notes are relevant to a question."""

from __future__ import annotations

from dataclasses import replace

import pytest
from hypothesis import given
from hypothesis import strategies as st

from app import relevance, textindex
from app.memory import Recalled
from app.store import Held, postings

MAY_8_2023 = 1683547200.0


def note(content: str, context: str = "") -> Recalled:
    """A note as the store gives it: every term of its text, and those only its context (the turns around it) holds."""
    posted = postings.postings(content, context)
    own = frozenset(p.term for p in posted if p.own)
    return Recalled(content, "user", MAY_8_2023, held=Held(own, frozenset(p.term for p in posted) - own))


def shares(question: str, docs: dict[str, int], size: int) -> dict[str, float]:
    return relevance.weights(textindex.question_stems(question), docs, size)


def test_idf_falls_as_a_word_gets_common_and_is_highest_for_unseen_words() -> None:
    values = [relevance.idf(d, 1000) for d in (0, 1, 10, 100, 1000)]
    assert values == sorted(values, reverse=True)
    assert values[-1] > 0


@given(st.dictionaries(st.sampled_from("ab cd ef gh".split()), st.integers(0, 50), min_size=1), st.integers(50, 500))
def test_weights_are_shares_that_sum_to_one(docs: dict[str, int], size: int) -> None:
    w = relevance.weights({word: word for word in docs}, docs, size)
    assert sum(w.values()) == pytest.approx(1.0)
    assert all(v > 0 for v in w.values())


def test_weights_count_words_sharing_a_stem_once() -> None:
    w = shares("walk walked walking walks", {}, 10)
    assert w == {"walk": pytest.approx(1.0)}


def test_a_word_the_scope_never_saw_weighs_the_most() -> None:
    w = shares("what did Caroline research", {"research": 5}, 400)
    assert w["carolin"] > w["research"]


def test_a_new_scope_of_a_few_notes_still_recalls_a_note_missing_one_word() -> None:
    # Told "my cat loves tuna" (and the reply quoting it), then asked what the cat loves to eat.
    w = shares("What does my cat love to eat?", {"cat": 2, "love": 2, "eat": 0}, 2)
    told = note("My cat is called Zorblax and she loves tuna.")
    assert relevance.relevant([told], w, 0.4) == [told]


def test_coverage_counts_text_and_date_fully_and_context_at_half() -> None:
    w = shares("zebrafish tank May", {"zebrafish": 3, "tank": 3, "may": 3}, 100)
    third = 1 / 3
    assert relevance.coverage(note("my zebrafish"), w) == pytest.approx(2 / 3)  # the note is dated 8 May 2023
    assert relevance.coverage(note("my zebrafish", context="the tank"), w) == pytest.approx(2 / 3 + third / 2)
    assert relevance.coverage(note("nothing here", context="zebrafish tank"), w) == pytest.approx(1 / 3 + 1 / 3)
    assert relevance.coverage(note("zebrafishes in tanks"), w) == pytest.approx(1.0)  # stems match


def test_nothing_passes_when_the_best_note_covers_too_little() -> None:
    # Asked in another scope: the names are unknown there, so shared common words cannot carry a note.
    w = shares("When did Caroline go to the LGBTQ support group?", {"support": 20, "group": 15, "go": 30}, 400)
    found = [note("my support group for dancers"), note("we go to the group")]
    assert relevance.relevant(found, w, 0.4) == []


def test_companions_of_the_best_note_need_half_the_threshold() -> None:
    w = shares("zebrafish tank cleaning", {"zebrafish": 2, "tank": 2, "cleaning": 2}, 100)
    best = note("cleaning the zebrafish tank")
    half = note("the tank leaks")  # a third of the question: over half of 0.5
    off = note("unrelated words entirely")
    assert relevance.relevant([half, best, off], w, 0.5) == [half, best]
    assert relevance.relevant([half, off], w, 0.5) == []  # no note reaches the threshold itself


def test_near_duplicates_keep_the_first() -> None:
    w = shares("zebrafish tank cleaning", {}, 100)
    first = note("Cleaning the zebrafish tank today.")
    again = note("cleaning the zebrafish tank today!!")
    other = note("the zebrafish tank needs cleaning weekly with vinegar")
    assert relevance.relevant([first, again, other], w, 0.5) == [first, other]


def test_long_notes_are_read_whole() -> None:
    filler = " ".join(f"word{i}" for i in range(100))
    w = shares("zebrafish", {"zebrafish": 1}, 100)
    assert relevance.coverage(note(f"{filler} zebrafish"), w) == pytest.approx(1.0)


@pytest.mark.parametrize(
    ("question", "expected"),
    [
        ("What did Caroline research?", {"caroline"}),
        ("Caroline went where?", set()),  # a sentence's first word is capitalised anyway
        ("I met Bob. Then we talked about SQLite", {"bob", "sqlite"}),
        ('She said "Hello" to Dr. Seuss', {"hello", "dr"}),
        ("When did Melanie go camping in June, on a Friday?", {"melanie"}),  # calendar words are dates
        ("what did i say about the api", set()),
    ],
)
def test_names_are_capitalised_words_inside_a_sentence(question: str, expected: set[str]) -> None:
    assert relevance.names(question) == expected


def test_a_name_the_scope_never_saw_closes_the_gate_a_plain_unseen_word_leaves_open() -> None:
    # Asked in a scope where someone else ran a race: the unseen name tips the balance.
    question = "What did Caroline's charity race raise awareness for?"
    docs = {"charity": 4, "race": 6, "raise": 8, "awareness": 3}
    race = note("The race was great fun and we raised a lot of money.")
    plain = relevance.weights(textindex.question_stems(question), docs, 600)
    named = relevance.weights(textindex.question_stems(question), docs, 600, relevance.names(question))
    assert relevance.relevant([race], plain, 0.3) == [race]
    assert relevance.relevant([race], named, 0.3) == []
    assert named["carolin"] > plain["carolin"]


def test_a_name_the_scope_knows_weighs_as_any_word() -> None:
    question = "What did Caroline research?"
    docs = {"caroline": 40, "research": 5}
    words = textindex.question_stems(question)
    assert relevance.weights(words, docs, 600, relevance.names(question)) == relevance.weights(words, docs, 600)


def test_a_note_covers_its_speakers_name() -> None:
    # Nobody says "Caroline" in her own turn: who said it covers the name, as its date covers "May".
    w = shares("What did Caroline research?", {"caroline": 30, "research": 5}, 600)
    said = Recalled("I looked into adoption agencies", "user", MAY_8_2023, speaker="caroline")
    assert relevance.coverage(said, w) == pytest.approx(w["carolin"])
    assert relevance.coverage(replace(said, speaker=""), w) == 0.0


@given(st.sets(st.sampled_from("abcdefghij"), max_size=10), st.sets(st.sampled_from("abcdefghij"), max_size=10))
def test_near_duplicates_are_word_sets_overlapping_by_the_jaccard_threshold(a: set[str], b: set[str]) -> None:
    jaccard = len(a & b) / len(a | b) if a or b else 1.0
    assert relevance._repeats(a, b) == (jaccard >= relevance.NEAR_DUPLICATE)
