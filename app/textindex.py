"""How text becomes words: for the term index (app/store/postings.py), questions and relevance."""

from __future__ import annotations

import functools
import re
from datetime import UTC, datetime

import snowballstemmer

_WORD = re.compile(r"\w+", re.UNICODE)
# Words too common to help ranking; the rest of the question is OR-ed so any overlap counts.
STOPWORDS = frozenset(
    """a about above after again against all am an and any are as at be because been before being below
    between both but by can could did do does doing down during each few for from further had has have
    having he her here hers herself him himself his how i if in into is it its itself just me more most my
    myself no nor not now of off on once only or other our ours ourselves out over own same she should so
    some such than that the their theirs them themselves then there these they this those through to too
    under until up very was we were what when where which while who whom why will with would you your
    yours yourself yourselves""".split()
    # what \w+ leaves of contractions and possessives: "Caroline's" -> caroline s, "don't" -> don t
    + "s t d ll m o re ve y doesn didn isn aren wasn weren hasn haven hadn wouldn couldn shouldn".split()
)
MAX_TERMS = 32


def words(text: str) -> list[str]:
    """Every word of a text, lower-cased, in order (what a memory's length is counted in)."""
    return _WORD.findall(text.lower())


def terms(text: str, limit: int | None = MAX_TERMS) -> list[str]:
    """The distinct, meaningful words of a text, in order (the first `limit` of them; None: all)."""
    seen: dict[str, None] = {}
    for word in words(text):
        if word not in STOPWORDS and word not in seen:
            seen[word] = None
            if len(seen) == limit:
                break
    return list(seen)


_STEMMER = snowballstemmer.stemmer("porter")


# Word caches hold words of at most MAX_WORD_CHARS characters, CACHED_WORDS of them: at most about
# 40 MB each even for 4-byte characters, where 200,000 entries of any length held gigabytes. A longer
# word (a hash, a blob, a hostile import) is its own stem and is looked up uncached.
MAX_WORD_CHARS = 64
CACHED_WORDS = 100_000


def stem(word: str) -> str:
    """A word's stem as the term index stores it (Porter); a word past MAX_WORD_CHARS is kept as it is."""
    return _stem(word) if len(word) <= MAX_WORD_CHARS else word


# Stemming is pure Python and a text's words are mostly words seen before: every memory written is stemmed.
@functools.lru_cache(maxsize=CACHED_WORDS)
def _stem(word: str) -> str:
    return _STEMMER.stemWord(word)


def question_stems(question: str) -> dict[str, str]:
    """A question's meaningful words (as typed, lower-cased) with their stems: what search and relevance weigh."""
    return {w: stem(w) for w in terms(question)}


def date_words(created_at: float) -> str:
    """Searchable words for a memory's date (e.g. `8 May 2023 Monday`)."""
    return _day_words(int(created_at // 86_400))


# Every memory written and every note weighed names its date: formatting one costs more than a search's probe.
@functools.lru_cache(maxsize=4096)
def _day_words(day: int) -> str:
    d = datetime.fromtimestamp(day * 86_400, UTC)  # a UTC day starts at a multiple of 86,400 s
    return f"{d.day} {d:%B} {d.year} {d:%A}"
