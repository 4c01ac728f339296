"""The impact-ordered term index both backends search: what a memory posts per word, and how candidates score.

A memory has one posting per distinct word stem of its text and context: (term, impact), where the
impact is the word's BM25 term-frequency part in that memory (its own text weighted over its
context, SEARCH_WEIGHTS), quantised to IMPACT_SCALE steps. All of them, packed, sit on the memory's
own row (`pack`); the postings of its own text's words also go into the scope's one B-tree of
postings, keyed (scope, term, impact, memory) for reading in impact order. A word that only the
context holds is the previous turn's own word, so the index needs it once, not twice.

A search reads, per question word, the postings of highest impact (an index range scan,
CANDIDATES_PER_WORD rows at most); the memories those postings alone score best are shortlisted,
and the shortlist and the turn after each (whose context quotes them) are scored exactly (every
question word's impact in each, from their packed postings, times the word's IDF in the scope);
the rest of the scope is never touched. A word in no more than CANDIDATES_PER_WORD memories' own
text brings all of them, so in a small scope every turn holding a question word is weighed.
"""

from __future__ import annotations

import bisect
import functools
import hashlib
import math
import struct
from collections import Counter, defaultdict
from collections.abc import Hashable, Iterable, Mapping, Sequence
from typing import NamedTuple, TypeVar

from app import textindex
from app.store import NEIGHBOUR_BOOST, SEARCH_WEIGHTS, Held

K = TypeVar("K", bound=Hashable)  # what a caller keys memories by (a rowid, a seq, an id)
CANDIDATES_PER_WORD = 50  # postings read per question word: the bound on a search's work
K1 = 1.2  # BM25's term-frequency saturation
B = 0.75  # BM25's length normalisation
# A typical memory's length in words (its text and context together): BM25 normalises against the
# average length, fixed here so that an impact, once written, never changes.
AVERAGE_LENGTH = 64.0
# Impacts are stored as integers of this many steps per unit (below 2.2 = K1 + 1, so they fit 15
# bits): a small integer key is 2 bytes on disk where a float is 8, and ranks as the float did.
IMPACT_SCALE = 10_000
_OWN = 1 << 15  # in a packed posting's 16-bit field: the memory's own text holds the word
_ENTRY = struct.Struct(">qH")  # a packed posting: term key, impact (with the _OWN bit)


def _hash64(text: str) -> int:
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "big", signed=True)


@functools.lru_cache(maxsize=10_000)
def scope_key(user_id: str) -> int:
    """A scope as the index stores it (a signed 64-bit hash)."""
    return _hash64(user_id)


def term_key(stem: str) -> int:
    """A word stem as the index stores it (a signed 64-bit hash); cached up to textindex.MAX_WORD_CHARS."""
    return _term_key(stem) if len(stem) <= textindex.MAX_WORD_CHARS else _hash64(stem)


_term_key = functools.lru_cache(maxsize=textindex.CACHED_WORDS)(_hash64)


class Posting(NamedTuple):
    """One word of a memory: its term key, its impact (IMPACT_SCALE steps), whether its own text holds it."""

    term: int
    impact: int
    own: bool


def _word_key(word: str) -> int | None:
    """A word's term key, None for a stopword (every memory written looks up each of its words)."""
    return None if word in textindex.STOPWORDS else term_key(textindex.stem(word))


# The lookup of every word written, cached for words up to textindex.MAX_WORD_CHARS (the C cache is
# called straight from map(), which a Python wrapper per word would slow).
_short_word_key = functools.lru_cache(maxsize=textindex.CACHED_WORDS)(_word_key)


def _counts(text: str) -> tuple[Counter[int | None], int]:
    words = textindex.words(text)
    limit = textindex.MAX_WORD_CHARS
    if max(map(len, words), default=0) <= limit:
        counts = Counter(map(_short_word_key, words))
    else:
        counts = Counter(_short_word_key(w) if len(w) <= limit else _word_key(w) for w in words)
    counts.pop(None, None)
    return counts, len(words)


def postings(content: str, context: str) -> list[Posting]:
    """The postings of a memory with this text and context, one per distinct stem (see `impacts`)."""
    return [Posting._make(p) for p in impacts(content, context)]


def impacts(content: str, context: str) -> list[tuple[int, int, bool]]:
    """`postings` as plain (term, impact, own) tuples: half the cost of a write that only packs them.

    BM25 as FTS5 computes it: a word's frequency is its count in each field times the field's
    weight, saturated against the memory's whole length.
    """
    (own, own_length), (near, near_length) = _counts(content), _counts(context)
    norm = K1 * (1 - B + B * (own_length + near_length) / AVERAGE_LENGTH)
    weight_own, weight_near, scale = SEARCH_WEIGHTS[0], SEARCH_WEIGHTS[1], IMPACT_SCALE * (K1 + 1)
    out: list[tuple[int, int, bool]] = []
    for key in own.keys() | near.keys():
        # get(): a Counter's missing key costs a Python-level __missing__ call, per posting of every write
        tf = weight_own * own.get(key, 0) + weight_near * near.get(key, 0)
        out.append((key, max(1, round(scale * tf / (tf + norm))), key in own))  # type: ignore[arg-type]
    return out


def pack(posted: Iterable[tuple[int, int, bool]]) -> bytes:
    """A memory's postings as its row stores them: 10 bytes each (term key, impact with the own-text bit)."""
    return b"".join(_ENTRY.pack(term, impact | (_OWN if own else 0)) for term, impact, own in posted)


def unpack(packed: bytes) -> list[Posting]:
    """The postings `pack` stored."""
    return [Posting._make(e) for e in entries(packed)]


def entries(packed: bytes) -> list[tuple[int, int, bool]]:
    """The (term, impact, own) postings `pack` stored, as plain tuples: what a merge reads by the hundred
    thousand (the garbage collector stops tracking a tuple of numbers, never a NamedTuple)."""
    return [(t, v & ~_OWN, bool(v & _OWN)) for t, v in _ENTRY.iter_unpack(packed)]


def looked_up(rows: Iterable[tuple[K, bytes]], terms: Iterable[int]) -> list[tuple[int, K, int]]:
    """The (term, memory, impact) of each of `terms` in each (memory, packed postings) row that holds it."""
    return [(term, mem, impact) for term, mem, impact, _ in hits(rows, terms)]


def hits(rows: Iterable[tuple[K, bytes]], terms: Iterable[int]) -> list[tuple[int, K, int, bool]]:
    """`looked_up`, with whether each memory's own text holds the term."""
    mems: list[K] = []
    ends: list[int] = []
    parts: list[bytes] = []
    for mem, packed in rows:
        mems.append(mem)
        parts.append(packed)
        ends.append((ends[-1] if ends else 0) + len(packed))
    # One search per term through all rows at once: every row is whole entries, so entries stay aligned.
    joined = b"".join(parts)
    out = []
    for term in terms:
        key = term.to_bytes(8, "big", signed=True)
        at = joined.find(key)
        while at >= 0:
            if at % _ENTRY.size == 0:  # else a match straddling two entries
                value = _ENTRY.unpack_from(joined, at)[1]
                out.append((term, mems[bisect.bisect_right(ends, at)], value & ~_OWN, bool(value & _OWN)))
            at = joined.find(key, at + 1)
    return out


def held(rows: Sequence[tuple[K, bytes, bytes]], terms: Iterable[int]) -> dict[K, Held]:
    """For each (key, packed postings, the turn after's packed postings) row, which of `terms` the
    memory's own text holds and which only the turns around it hold (its context, a posting without
    the own-text bit: its date and the turn before it; the turn after's own text)."""
    terms = list(terms)
    own: defaultdict[K, set[int]] = defaultdict(set)
    near: defaultdict[K, set[int]] = defaultdict(set)
    for term, key, _, mine in hits(((k, packed) for k, packed, _ in rows), terms):
        (own if mine else near)[key].add(term)
    for term, key, _, mine in hits(((k, after) for k, _, after in rows), terms):
        if mine:
            near[key].add(term)
    return {k: Held(frozenset(own[k]), frozenset(near[k] - own[k])) for k, _, _ in rows}


def question_terms(query: str) -> dict[str, int]:
    """A question's meaningful words (as typed, lower-cased) with their term keys."""
    return {w: term_key(s) for w, s in textindex.question_stems(query).items()}


def idf(docs: int, size: int) -> float:
    """BM25's inverse document frequency of a term in `docs` of a scope's `size` memories (always positive)."""
    return math.log(1 + (max(size, docs) - docs + 0.5) / (docs + 0.5))


def rank(rows: Iterable[tuple[int, int, float]], weights: Mapping[int, float], keep: int) -> list[tuple[int, float]]:
    """The best `keep` memories with their scores, best first (ties: the newer memory).

    `rows` are the (term, memory, impact) postings of the question's terms in the candidates; a
    memory's score is the sum of each term's impact in it times the term's IDF (`weights`).
    """
    score: dict[int, float] = {}
    for term, mem, impact in rows:
        score[mem] = score.get(mem, 0.0) + weights[term] * impact / IMPACT_SCALE
    ranked = sorted(((s, m) for m, s in score.items()), reverse=True)
    return [(m, s) for s, m in ranked[:keep] if s > 0]


def boosted(score: Mapping[int, float], links: Iterable[tuple[int, int | None]]) -> dict[int, float]:
    """Each scored memory's score plus NEIGHBOUR_BOOST of its turns before and after, where they scored.

    `links` are the (memory, the scope's turn before it) pairs a search read: the shortlist's and
    the turns after them. They hold every neighbour that can have a score (a scored turn that was
    not shortlisted is the turn after a shortlisted one, which is its turn before).
    """
    gain = dict.fromkeys(score, 0.0)
    for m, p in dict((m, p) for m, p in links if p is not None).items():  # once each: a turn can be read twice
        if m in gain:
            gain[m] += score.get(p, 0.0)
        if p in gain:
            gain[p] += score.get(m, 0.0)
    return {m: s + NEIGHBOUR_BOOST * gain[m] for m, s in score.items()}


def doc_totals(
    items: Iterable[tuple[str, Sequence[tuple[int, int, bool]]]], sign: int = 1
) -> list[tuple[str, int, int, int]]:
    """Per (scope, term), the change in memories holding it and in those holding it in their own text.

    Sorted, so concurrent writers update the counts in the same order (no deadlock on PostgreSQL).
    """
    # Per scope, then per term: sorting integer keys is several times cheaper than (scope, term) pairs.
    counts: dict[str, tuple[Counter[int], Counter[int]]] = {}
    for user_id, posted in items:
        docs, own = counts.setdefault(user_id, (Counter(), Counter()))
        docs.update([term for term, _, _ in posted])
        own.update([term for term, _, mine in posted if mine])
    return [
        (u, t, sign * docs[t], sign * own.get(t, 0)) for u, (docs, own) in sorted(counts.items()) for t in sorted(docs)
    ]
