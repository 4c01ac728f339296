"""app/dialects/messages.py, openai_chat.py, anthropic_messages.py: turns and injection in `messages`."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest

from app import memory
from app.dialects import anthropic_messages, messages, openai_chat
from app.memory import Recalled, human_text, render_block

REMINDER = "<system-reminder>\nAs you answer, use this context: CLAUDE.md says run tests.\n</system-reminder>"
BLOCK = render_block([Recalled("the user prefers tabs", "user", 0.0), Recalled("Postgres 16", "assistant", 0.0)])


def dumps(obj: Any) -> str:
    return json.dumps(obj, sort_keys=False, ensure_ascii=False)


def new_user_turn(body: dict[str, Any]) -> str | None:
    turn = memory.new_user_turn(messages.turns(body))
    return turn.text if turn else None


def query_text(body: dict[str, Any], strategy: str) -> str:
    return memory.query_text(messages.turns(body), strategy)


def inject(body: dict[str, Any], block: str, mode: str, anthropic: bool) -> bool:
    return (anthropic_messages if anthropic else openai_chat).inject(body, block, mode)


# --- new_user_turn ------------------------------------------------------------------------------


def test_new_user_turn() -> None:
    body = {"messages": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}]}
    assert new_user_turn(body) == "a"  # an assistant prefill after the human's words
    body["messages"].append(
        {"role": "user", "content": [{"type": "text", "text": REMINDER}, {"type": "text", "text": "c"}]}
    )
    assert new_user_turn(body) == "c"


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"messages": []},
        {"messages": "hello"},
        {"messages": [{"role": "user", "content": REMINDER}]},
        {"messages": [{"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t", "content": "x"}]}]},
        {"messages": [{"role": "system", "content": "you are helpful"}]},
        {"messages": ["not a dict"]},
    ],
)
def test_new_user_turn_none(body: dict[str, Any]) -> None:
    assert new_user_turn(body) is None


# --- query_text ---------------------------------------------------------------------------------

CONVO = {
    "messages": [
        {"role": "system", "content": "system prompt words"},
        {"role": "user", "content": "u1"},
        {"role": "assistant", "content": "a1"},
        {"role": "user", "content": "u2"},
        {"role": "assistant", "content": "a2"},
        {"role": "user", "content": "u3"},
        {
            "role": "assistant",
            "content": [{"type": "text", "text": "a3"}, {"type": "tool_use", "id": "t", "input": {}}],
        },
        {"role": "user", "content": [{"type": "text", "text": REMINDER}, {"type": "text", "text": "u4"}]},
        {"role": "assistant", "content": [{"type": "tool_use", "id": "t2", "name": "bash", "input": {}}]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t2", "content": "output"}]},
    ]
}


def test_query_last_user_skips_tool_result_turns() -> None:
    assert query_text(CONVO, "last_user") == "u4"


def test_query_last_user_and_assistant() -> None:
    assert query_text(CONVO, "last_user_and_assistant") == "a3\nu4"


def test_query_recent_user() -> None:
    assert query_text(CONVO, "recent_user") == "u2\nu3\nu4"


@pytest.mark.parametrize("strategy", ["last_user", "last_user_and_assistant", "recent_user"])
def test_query_never_includes_system_or_scaffolding(strategy: str) -> None:
    q = query_text(CONVO, strategy)
    assert "system prompt" not in q and "CLAUDE.md" not in q and "output" not in q


@pytest.mark.parametrize("strategy", ["last_user", "last_user_and_assistant", "recent_user"])
def test_query_empty_conversation(strategy: str) -> None:
    assert query_text({}, strategy) == ""
    assert query_text({"messages": [{"role": "assistant", "content": ""}]}, strategy) == ""


# --- inject -------------------------------------------------------------------------------------


def openai_body() -> dict[str, Any]:
    return {
        "model": "gpt-4o",
        "messages": [
            {"role": "system", "content": "You are a careful assistant."},
            {"role": "user", "content": "first question"},
            {"role": "assistant", "content": "first answer"},
            {"role": "user", "content": "second question"},
        ],
    }


def anthropic_body(system: Any) -> dict[str, Any]:
    return {
        "model": "claude-sonnet-4",
        "system": system,
        "messages": [
            {"role": "user", "content": [{"type": "text", "text": REMINDER}, {"type": "text", "text": "hello"}]},
            {"role": "assistant", "content": [{"type": "text", "text": "hi!"}]},
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": REMINDER},
                    {"type": "text", "text": "what next?", "cache_control": {"type": "ephemeral"}},
                ],
            },
        ],
    }


CACHED_SYSTEM = [
    {"type": "text", "text": "You are Claude Code.", "cache_control": {"type": "ephemeral"}},
    {"type": "text", "text": "Project instructions...", "cache_control": {"type": "ephemeral", "ttl": "1h"}},
]


def test_inject_before_last_user_openai_keeps_prefix_byte_identical() -> None:
    body = openai_body()
    before = copy.deepcopy(body)
    assert inject(body, BLOCK, "before_last_user", anthropic=False) is True
    msgs = body["messages"]
    assert len(msgs) == len(before["messages"]) + 1
    assert dumps(msgs[:3]) == dumps(before["messages"][:3])
    assert msgs[3] == {"role": "user", "content": BLOCK}
    assert dumps(msgs[4]) == dumps(before["messages"][3])
    assert {k: v for k, v in body.items() if k != "messages"} == {k: v for k, v in before.items() if k != "messages"}


@pytest.mark.parametrize("system", ["You are Claude Code.", CACHED_SYSTEM])
def test_inject_before_last_user_anthropic_leaves_system_untouched(system: Any) -> None:
    body = anthropic_body(copy.deepcopy(system))
    before = copy.deepcopy(body)
    assert inject(body, BLOCK, "before_last_user", anthropic=True) is True
    assert dumps(body["system"]) == dumps(before["system"])
    msgs = body["messages"]
    assert dumps(msgs[:2]) == dumps(before["messages"][:2])
    assert msgs[2] == {"role": "user", "content": BLOCK}
    assert dumps(msgs[3]) == dumps(before["messages"][2])
    assert len(msgs) == 4


def test_inject_before_last_user_skips_trailing_tool_result_turn() -> None:
    body = {
        "messages": [
            {"role": "user", "content": "run the tests"},
            {"role": "assistant", "content": [{"type": "tool_use", "id": "t1", "name": "bash", "input": {}}]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t1", "content": "ok"}]},
        ]
    }
    before = copy.deepcopy(body)
    assert inject(body, BLOCK, "before_last_user", anthropic=True)
    assert body["messages"][0] == {"role": "user", "content": BLOCK}
    assert body["messages"][1:] == before["messages"]  # tool_use/tool_result stay adjacent


def test_inject_system_mode_openai_appends_to_existing_system_message() -> None:
    body = openai_body()
    before = copy.deepcopy(body)
    assert inject(body, BLOCK, "system", anthropic=False)
    msgs = body["messages"]
    assert len(msgs) == 4
    assert msgs[0]["role"] == "system"
    assert msgs[0]["content"].startswith("You are a careful assistant.") and msgs[0]["content"].endswith(BLOCK)
    assert msgs[1:] == before["messages"][1:]


def test_inject_system_mode_openai_without_system_message_adds_one() -> None:
    body = {"messages": [{"role": "user", "content": "hi"}]}
    assert inject(body, BLOCK, "system", anthropic=False)
    assert body["messages"] == [{"role": "system", "content": BLOCK}, {"role": "user", "content": "hi"}]


def test_inject_system_mode_anthropic_string_system() -> None:
    body = anthropic_body("You are Claude Code.")
    before = copy.deepcopy(body)
    assert inject(body, BLOCK, "system", anthropic=True)
    assert body["system"].startswith("You are Claude Code.") and body["system"].endswith(BLOCK)
    assert body["messages"] == before["messages"]


def test_inject_system_mode_anthropic_block_system_keeps_cache_control() -> None:
    body = anthropic_body(copy.deepcopy(CACHED_SYSTEM))
    assert inject(body, BLOCK, "system", anthropic=True)
    assert body["system"][:2] == CACHED_SYSTEM
    assert body["system"][2] == {"type": "text", "text": BLOCK}


def test_inject_system_mode_anthropic_without_system() -> None:
    body = {"messages": [{"role": "user", "content": "hi"}]}
    assert inject(body, BLOCK, "system", anthropic=True)
    assert body["system"] == BLOCK
    assert body["messages"] == [{"role": "user", "content": "hi"}]


def test_inject_last_user_suffix_string_content() -> None:
    body = openai_body()
    before = copy.deepcopy(body)
    assert inject(body, BLOCK, "last_user_suffix", anthropic=False)
    msgs = body["messages"]
    assert len(msgs) == 4
    assert msgs[:3] == before["messages"][:3]
    assert msgs[3]["role"] == "user"
    assert msgs[3]["content"].startswith("second question") and msgs[3]["content"].endswith(BLOCK)
    assert human_text(msgs[3]["content"]) == "second question"


def test_inject_last_user_suffix_block_content() -> None:
    body = anthropic_body(copy.deepcopy(CACHED_SYSTEM))
    before = copy.deepcopy(body)
    assert inject(body, BLOCK, "last_user_suffix", anthropic=True)
    last = body["messages"][2]["content"]
    assert last[:2] == before["messages"][2]["content"]
    assert last[2] == {"type": "text", "text": BLOCK}
    assert body["system"] == before["system"]
    assert body["messages"][:2] == before["messages"][:2]


@pytest.mark.parametrize("mode", ["before_last_user", "system", "last_user_suffix"])
@pytest.mark.parametrize(
    "body",
    [
        {},
        {"messages": None},
        {"messages": []},
        {"messages": [{"role": "assistant", "content": "hi"}]},
        {"messages": [{"role": "user", "content": REMINDER}]},
    ],
)
def test_inject_without_user_turn_does_nothing(body: dict[str, Any], mode: str) -> None:
    before = copy.deepcopy(body)
    assert inject(body, BLOCK, mode, anthropic=False) is False
    assert body == before


def test_injected_block_is_not_taken_as_the_users_turn() -> None:
    body = openai_body()
    inject(body, BLOCK, "before_last_user", anthropic=False)
    assert new_user_turn(body) == "second question"
    assert query_text(body, "last_user") == "second question"
    assert "tabs" not in query_text(body, "recent_user")


def test_injection_never_splits_tool_use_from_its_tool_result() -> None:
    tool_turn = {
        "role": "user",
        "content": [
            {"type": "tool_result", "tool_use_id": "t1", "content": "ok"},
            {"type": "text", "text": "now also update the docs"},
        ],
    }
    body = {
        "messages": [
            {"role": "user", "content": "refactor the parser"},
            {"role": "assistant", "content": [{"type": "tool_use", "id": "t1", "name": "edit", "input": {}}]},
            tool_turn,
        ]
    }
    assert inject(body, BLOCK, "before_last_user", anthropic=True)
    msgs = body["messages"]
    assert len(msgs) == 3 and msgs[1]["content"][0]["type"] == "tool_use"
    assert msgs[2]["content"][0]["type"] == "tool_result"  # still first in the turn after tool_use
    assert msgs[2]["content"][-1] == {"type": "text", "text": BLOCK}
