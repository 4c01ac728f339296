"""Whether recalled notes are relevant to a question: IDF-weighted coverage, and near-duplicates."""

from __future__ import annotations

import functools
import math
import re
from collections.abc import Mapping, Set

from app import textindex
from app.memory import Recalled
from app.store import postings

# Words found only around a note (the turns before and after it) count this much of their weight:
# the same weight the search gives a memory's context against its own text.
CONTEXT_SHARE = 0.5
# A note riding along with the best one must still cover this share of the relevance threshold.
COMPANION_SHARE = 0.5
# A scope is weighed as if it held at least this many memories: in a new scope of a few notes every
# word it knows is in a large share of them, and the one word it has not seen would outweigh the rest.
MIN_SCOPE_SIZE = 100
# A name the scope has never seen weighs this many times its inverse document frequency. An unseen
# ordinary word may be a paraphrase of one the notes use; an unseen name means the question is about
# someone or something this scope has never talked about.
UNSEEN_NAME_WEIGHT = 3.0
# Capitalised words that are not names: calendar words (they are matched against the notes' dates).
_CALENDAR = frozenset(
    """january february march april may june july august september october november december
    monday tuesday wednesday thursday friday saturday sunday""".split()
)
_WORD = re.compile(r"\w+")
_SENTENCE_END = frozenset(".!?:;\n")
_BEFORE_WORD = frozenset(" \t\"'([")
# Two notes whose word sets overlap this much (Jaccard) say the same thing: the later one is dropped.
NEAR_DUPLICATE = 0.8


def names(query: str) -> frozenset[str]:
    """The question's names, lower-cased: capitalised words inside a sentence, other than calendar words.

    A sentence's first word is capitalised whatever it is, so it is never taken for a name.
    """
    out = set()
    for m in _WORD.finditer(query):
        word = m.group()
        if not word[0].isupper():
            continue
        i = m.start() - 1
        while i >= 0 and query[i] in _BEFORE_WORD:  # back over the spaces and quotes before it
            i -= 1
        if i >= 0 and query[i] not in _SENTENCE_END:
            out.add(word.lower())
    return frozenset(out - _CALENDAR - textindex.STOPWORDS)


def idf(docs: int, size: int) -> float:
    """BM25's inverse document frequency of a word found in `docs` of a scope's `size` memories.

    A word the scope has never seen weighs the most: a question about things a scope has never
    heard of (another project's names, say) cannot be covered by any of its notes.
    """
    return math.log(1 + (size - docs + 0.5) / (docs + 0.5))


def weights(
    words: Mapping[str, str], docs: Mapping[str, int], size: int, named: Set[str] = frozenset()
) -> dict[str, float]:
    """Each question stem's share of the question's information in a scope (the shares sum to 1).

    `words` maps the question's words to their stems, `docs` the words to the number of the
    scope's memories holding them; words sharing a stem count once. Words in `named` (the
    question's names) that the scope has never seen weigh UNSEEN_NAME_WEIGHT times more.
    """
    size = max(size, MIN_SCOPE_SIZE)
    raw = {
        stem: idf(docs.get(word, 0), size) * (UNSEEN_NAME_WEIGHT if word in named and not docs.get(word) else 1.0)
        for word, stem in words.items()
    }
    total = sum(raw.values())
    return {stem: v / total for stem, v in raw.items()} if total > 0 else {}


@functools.lru_cache(maxsize=4096)
def _said(date: str, speaker: str) -> frozenset[str]:
    """The stems a note's date words and its speaker's name cover."""
    return frozenset(textindex.stem(w) for w in textindex.words(f"{date} {speaker}"))


def coverage(note: Recalled, shares: Mapping[str, float]) -> float:
    """The share (0 to 1) of the question's information a note covers: its text, date and speaker, then around it."""
    date = textindex.date_words(note.created_at)
    # A speaker name is metadata of any length: only short ones are cached.
    said = (
        _said(date, note.speaker)
        if len(note.speaker) <= textindex.MAX_WORD_CHARS
        else _said.__wrapped__(date, note.speaker)
    )
    total = 0.0
    for stem, share in shares.items():
        term = postings.term_key(stem)
        if stem in said or term in note.held.own:
            total += share
        elif term in note.held.near:
            total += CONTEXT_SHARE * share
    return total


def _repeats(a: set[str], b: set[str]) -> bool:
    """Whether two notes' word sets overlap NEAR_DUPLICATE or more (Jaccard)."""
    # Jaccard is at most the smaller set's size over the larger's: most pairs fail that first, cheaply.
    if NEAR_DUPLICATE * max(len(a), len(b)) > min(len(a), len(b)):
        return False
    return len(a & b) >= NEAR_DUPLICATE * len(a | b) if a or b else True


def relevant(candidates: list[Recalled], shares: Mapping[str, float], min_relevance: float) -> list[Recalled]:
    """The candidates, in order, that are relevant to the question and repeat no earlier one.

    The scope answers the question only when its best note covers `min_relevance` of it; the notes
    that go in with that one must each cover COMPANION_SHARE of the threshold.
    """
    scored = [(c, coverage(c, shares)) for c in candidates]
    if not scored or max(s for _, s in scored) < min_relevance:
        return []
    kept: list[Recalled] = []
    seen: list[set[str]] = []
    for c, score in scored:
        if score < COMPANION_SHARE * min_relevance:
            continue
        words = set(textindex.words(c.content)) - textindex.STOPWORDS
        if any(_repeats(words, s) for s in seen):
            continue
        kept.append(c)
        seen.append(words)
    return kept
