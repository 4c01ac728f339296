"""The MCP server's result bound: notes past MAX_RESULT_CHARS are left out and counted."""

from __future__ import annotations

import json

from app.mcp_server import MAX_RESULT_CHARS, bounded_notes


def note(i: int, chars: int) -> dict:
    return {"id": f"mem_{i}", "date": "2026-12-03", "role": "note", "content": "x" * chars}


def test_notes_past_the_bound_are_omitted_and_counted() -> None:
    shown = json.loads(bounded_notes([note(i, 6_000) for i in range(5)]))
    assert [n["id"] for n in shown["notes"]] == ["mem_0", "mem_1", "mem_2"]
    assert shown["omitted"] == 2
    assert sum(len(n["content"]) for n in shown["notes"]) <= MAX_RESULT_CHARS


def test_a_first_note_over_the_bound_is_cut_and_marked() -> None:
    shown = json.loads(bounded_notes([note(0, MAX_RESULT_CHARS + 500), note(1, 10)]))
    (only,) = shown["notes"]
    assert len(only["content"]) == MAX_RESULT_CHARS and only["truncated"] is True
    assert shown["omitted"] == 1


def test_everything_within_the_bound_is_shown() -> None:
    assert json.loads(bounded_notes([note(0, 10), note(1, 10)])) == {"notes": [note(0, 10), note(1, 10)], "omitted": 0}
