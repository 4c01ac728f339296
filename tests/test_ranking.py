"""app/ranking.py: turns by a speaker the question names move up, on every backend."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path

import pytest

from app import ranking
from app.store import Memory
from tests.inprocess import Running, make_settings, running

pytestmark = pytest.mark.timeout(60)


def mem(content: str, speaker: object = None) -> Memory:
    metadata = {} if speaker is None else {"speaker": speaker}
    return Memory(content, "scope", "user", content, 0.0, None, metadata)


def test_a_turn_by_the_named_speaker_moves_above_a_turn_about_them() -> None:
    about = mem("Thanks Caroline, your research on adoption agencies sounds great", "Melanie")
    by = mem("I looked into adoption agencies last week", "Caroline")
    ranked = ranking.rerank([(about, 10.0), (by, 8.0)], "What did Caroline research?")
    assert [m.content for m, _ in ranked] == [by.content, about.content]
    assert ranked[0][1] == pytest.approx(8.0 + ranking.SPEAKER_BOOST * 10.0)


def test_without_a_named_speaker_the_order_and_scores_stand() -> None:
    found = [(mem("a", "Melanie"), 3.0), (mem("b"), 2.0), (mem("c", 42), 1.0), (mem("d", "Dr Smith"), 0.5)]
    assert ranking.rerank(found, "What did Caroline research? Ask Dr Who") == found
    assert ranking.rerank([], "anything") == []


def test_a_speaker_of_several_words_is_named_only_by_all_of_them() -> None:
    found = [(mem("x", "Someone"), 1.2), (mem("y", "Dr Smith"), 1.0)]
    assert ranking.rerank(found, "what did dr smith say")[0][0].content == "y"
    assert ranking.rerank(found, "what did smith say")[0][0].content == "x"


@pytest.fixture
async def proxy(tmp_path: Path, store_url: str) -> AsyncIterator[Running]:
    async with running(tmp_path, settings=replace(make_settings(tmp_path), db_path=store_url)) as p:
        yield p


async def test_memory_search_ranks_the_named_speakers_turn_first(proxy: Running) -> None:
    turns = [
        ("Melanie", "Caroline, what did you find out about the adoption agencies and their research?"),
        ("Caroline", "I found three agencies that support single parents like me."),
        ("Melanie", "Research on adoption sounds like hard work, Caroline!"),
    ]
    lines = [{"user_id": "pair", "content": text, "metadata": {"speaker": who}} for who, text in turns]
    for line in lines:
        assert (await proxy.client.post("/v1/memories", json=line)).status_code == 201
    found = await proxy.client.get("/v1/memories/search", params={"user_id": "pair", "q": "Caroline agencies research"})
    assert found.status_code == 200
    assert found.json()["data"][0]["metadata"]["speaker"] == "Caroline"
