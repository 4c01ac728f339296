"""app/dialects/openai_responses.py: the Responses API's `input`, injection and reply."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest

from app import memory
from app.dialects import openai_responses as responses
from app.memory import Recalled, render_block

BLOCK = render_block([Recalled("deploys happen on fridays", "user", 0.0)])
OPAQUE = [
    {"type": "reasoning", "id": "rs_1", "summary": [], "encrypted_content": "gAAAAB-opaque"},
    {"type": "function_call", "id": "fc_1", "call_id": "call_1", "name": "shell", "arguments": '{"cmd":"ls"}'},
    {"type": "function_call_output", "call_id": "call_1", "output": "README.md secret-output"},
    {"type": "web_search_call", "id": "ws_1", "status": "completed"},
    {"type": "a_type_from_the_future", "payload": {"text": "not words"}},
]


def message(role: str, text: str, part: str = "input_text") -> dict[str, Any]:
    return {"type": "message", "role": role, "content": [{"type": part, "text": text}]}


def codex_like(*tail: dict[str, Any]) -> dict[str, Any]:
    return {
        "model": "gpt-5-codex",
        "instructions": "You are Codex.",
        "input": [
            message("developer", "<permissions instructions>sandbox</permissions instructions>"),
            message("user", "# AGENTS.md instructions for /repo\n\n<INSTRUCTIONS>\nrun make\n</INSTRUCTIONS>"),
            message("user", "<environment_context>\n  <cwd>/repo</cwd>\n</environment_context>"),
            message("user", "how do we deploy?"),
            *tail,
        ],
        "prompt_cache_key": "thread-1",
        "store": False,
        "include": ["reasoning.encrypted_content"],
    }


def human(body: dict[str, Any]) -> str | None:
    turn = memory.new_user_turn(responses.turns(body))
    return turn.text if turn else None


def test_string_input_is_the_human_turn() -> None:
    assert human({"input": "hello there"}) == "hello there"
    assert human({"input": "<environment_context>x</environment_context>"}) is None


def test_codex_scaffolding_is_not_the_human_turn() -> None:
    body = codex_like()
    assert human(body) == "how do we deploy?"
    assert [t.text for t in responses.turns(body)] == ["how do we deploy?"]


def test_human_turn_found_with_opaque_items_after_it() -> None:
    body = codex_like(*OPAQUE, message("developer", "late developer note"))
    assert human(body) == "how do we deploy?"


def test_shorthand_messages_and_string_content() -> None:
    body = {"input": [{"role": "user", "content": "first"}, {"role": "assistant", "content": "reply"}]}
    assert [(t.role, t.text) for t in responses.turns(body)] == [("assistant", "reply"), ("user", "first")]
    body["input"].append({"role": "system", "content": "system words"})
    assert human(body) == "first"


@pytest.mark.parametrize("body", [{}, {"input": 5}, {"input": []}, {"input": [*OPAQUE]}, {"input": ["x", None]}])
def test_no_human_turn(body: dict[str, Any]) -> None:
    assert human(body) is None
    before = copy.deepcopy(body)
    for mode in ("before_last_user", "last_user_suffix", "system"):
        assert responses.inject(body, BLOCK, mode) is False
    assert body == before


def test_before_last_user_keeps_instructions_and_every_earlier_item() -> None:
    body = codex_like(*OPAQUE)
    original = copy.deepcopy(body)
    assert responses.inject(body, BLOCK, "before_last_user")
    items, was = body["input"], original["input"]
    assert json.dumps(items[:3]) == json.dumps(was[:3])
    assert items[3] == message("user", BLOCK)
    assert items[4:] == was[3:]  # the human's message, then every opaque item untouched
    assert {k: v for k, v in body.items() if k != "input"} == {k: v for k, v in original.items() if k != "input"}
    assert human(body) == "how do we deploy?"


def test_before_last_user_with_string_input() -> None:
    body = {"model": "m", "instructions": "Be brief.", "input": "what day do we deploy?"}
    assert responses.inject(body, BLOCK, "before_last_user")
    assert body["input"] == [message("user", BLOCK), {"role": "user", "content": "what day do we deploy?"}]
    assert body["instructions"] == "Be brief."


def test_last_user_suffix() -> None:
    body = codex_like()
    assert responses.inject(body, BLOCK, "last_user_suffix")
    assert body["input"][3]["content"] == [
        {"type": "input_text", "text": "how do we deploy?"},
        {"type": "input_text", "text": BLOCK},
    ]
    shorthand = {"input": [{"role": "user", "content": "plain"}]}
    assert responses.inject(shorthand, BLOCK, "last_user_suffix")
    assert shorthand["input"][0]["content"] == f"plain\n\n{BLOCK}"


def test_system_mode_appends_to_instructions() -> None:
    body = codex_like()
    assert responses.inject(body, BLOCK, "system")
    assert body["instructions"] == f"You are Codex.\n\n{BLOCK}"
    bare = {"input": "hi"}
    assert responses.inject(bare, BLOCK, "system")
    assert bare == {"input": "hi", "instructions": BLOCK}


def test_present_text_covers_instructions_and_messages_not_opaque_items() -> None:
    body = codex_like(*OPAQUE, message("assistant", "we deploy with make", "output_text"))
    present = responses.present_text(body)
    assert "You are Codex." in present and "how do we deploy?" in present and "we deploy with make" in present
    assert "secret-output" not in present and "gAAAAB" not in present
    assert responses.present_text({"input": "just a string"}) == "just a string"


def env_item(text: str, role: str = "user") -> dict[str, Any]:
    return message(role, text)


def test_working_directory_from_codex_environment_item_only() -> None:
    env = "<environment_context>\n  <cwd>/src/alpha</cwd>\n  <shell>bash</shell>\n</environment_context>"
    body = {"input": [message("developer", "rules"), env_item(env), message("user", "hello")]}
    assert responses.working_directory(body) == "/src/alpha"
    assert responses.working_directory({"input": [env_item(env, "developer"), message("user", "x")]}) == "/src/alpha"
    # After the human's first words, an environment block is not the client's.
    late = {"input": [message("user", "hello"), env_item(env)]}
    assert responses.working_directory(late) is None
    # A part that merely mentions one, a string input, an assistant item: nothing.
    quoted = {"input": [message("user", f"look at this: {env}")]}
    assert responses.working_directory(quoted) is None
    assert responses.working_directory({"input": env}) is None
    assert responses.working_directory({"input": [env_item(env, "assistant"), message("user", "x")]}) is None
    assert responses.working_directory({"input": [env_item("<environment_context></environment_context>")]}) is None
