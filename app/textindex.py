"""What goes into the full-text index for a memory, and how a question becomes a query."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable
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


def scope_token(user_id: str) -> str:
    """The token that puts a scope into the full-text index's access path."""
    return "s" + hashlib.blake2b(user_id.encode(), digest_size=10).hexdigest()


def terms(text: str) -> list[str]:
    """The distinct, meaningful words of a text, in order."""
    seen: dict[str, None] = {}
    for word in _WORD.findall(text.lower()):
        if word not in STOPWORDS and word not in seen:
            seen[word] = None
            if len(seen) == MAX_TERMS:
                break
    return list(seen)


_STEMMER = snowballstemmer.stemmer("porter")  # the same Porter algorithm as FTS5's tokenizer


def stem(word: str) -> str:
    """A word as the full-text index stores it (FTS5 `porter` stem)."""
    return _STEMMER.stemWord(word)


def query_words(
    text: str, common: dict[str, int] | None = None, generic_docs: int = 0, stem_of: Callable[[str], str] = stem
) -> list[str]:
    """The words of a question worth searching for (the common-term rule).

    Words whose stem (`stem_of`, as the index stems) is in `common` (stem -> document count, the
    index's most frequent terms) are left out: they match most rows, so they cost the most to rank
    and tell the least. When every word is common, the rarest one stays unless even it is in more
    than `generic_docs` rows.
    """
    words = terms(text)
    if common:
        rare = [w for w in words if stem_of(w) not in common]
        if not rare and words:
            rarest = min(words, key=lambda w: common[stem_of(w)])
            rare = [rarest] if common[stem_of(rarest)] <= generic_docs else []
        words = rare
    return words


def match_expression(
    user_id: str, text: str, common: dict[str, int] | None = None, generic_docs: int = 0
) -> str | None:
    """An FTS5 MATCH expression: the scope token AND any of the query's words (see query_words)."""
    words = query_words(text, common, generic_docs)
    if not words:
        return None
    anyof = " OR ".join(f'"{w}"' for w in words)
    return f"scope : {scope_token(user_id)} AND ({anyof})"


def date_words(created_at: float) -> str:
    """Searchable words for a memory's date (e.g. `8 May 2023 Monday`)."""
    d = datetime.fromtimestamp(created_at, UTC)
    return f"{d.day} {d:%B} {d.year} {d:%A}"
