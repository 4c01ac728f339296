"""The last ranking step, on every backend: a turn by someone the question names moves up."""

from __future__ import annotations

import re

from app.store import Found, Memory, MemoryStore

# How many of the store's best matches are re-ranked: enough that a turn the store put in the
# second ten can still reach the first five.
POOL = 20
# A turn whose speaker the question names gains this share of the best match's score. The question
# "What did Caroline research?" is answered by what Caroline said, while the other speaker's
# turns that mention her by name match the words better. Measured on the LoCoMo dev conversations
# (bench/recall.py), leave-one-conversation-out: 0.3 to 0.5 all give the same gain.
SPEAKER_BOOST = 0.3
_WORD = re.compile(r"\w+")


def speaker(m: Memory) -> str:
    """Who said a memory, as its metadata names them (`speaker`), lower-cased; empty when unknown."""
    name = m.metadata.get("speaker")
    return name.strip().lower() if isinstance(name, str) else ""


def rerank(found: Found, query: str) -> Found:
    """`found` re-ordered: turns by a speaker the question names gain SPEAKER_BOOST of the best score."""
    if not found:
        return found
    words = set(_WORD.findall(query.lower()))
    bonus = SPEAKER_BOOST * max(score for _, score in found)

    def named(m: Memory) -> bool:
        who = _WORD.findall(speaker(m))
        return bool(who) and all(w in words for w in who)

    rescored = [(m, score + bonus if named(m) else score) for m, score in found]
    return sorted(rescored, key=lambda pair: pair[1], reverse=True)


async def search(store: MemoryStore, user_id: str, query: str, limit: int) -> Found:
    """The scope's best `limit` matches for `query`: the store's best POOL, re-ranked."""
    return rerank(await store.search(user_id, query, max(limit, POOL)), query)[:limit]
