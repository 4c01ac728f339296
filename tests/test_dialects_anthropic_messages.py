"""app/dialects/anthropic_messages.py: Claude Code's working directory from its own environment block."""

from __future__ import annotations

from app.dialects import anthropic_messages

ENV = "# Environment\nYou have been invoked in the following environment: \n - Primary working directory: /src/alpha\n"


def test_from_a_system_role_message_or_the_system_prompt() -> None:
    in_messages = {"messages": [{"role": "user", "content": "hi"}, {"role": "system", "content": ENV}]}
    assert anthropic_messages.working_directory(in_messages) == "/src/alpha"
    blocks = {"system": [{"type": "text", "text": "You are Claude."}, {"type": "text", "text": ENV}], "messages": []}
    assert anthropic_messages.working_directory(blocks) == "/src/alpha"
    assert anthropic_messages.working_directory({"system": ENV, "messages": []}) == "/src/alpha"


def test_never_from_user_or_assistant_turns() -> None:
    for role in ("user", "assistant"):
        body = {"messages": [{"role": role, "content": [{"type": "text", "text": ENV}]}]}
        assert anthropic_messages.working_directory(body) is None
    assert anthropic_messages.working_directory({"messages": "not a list"}) is None


def test_only_the_line_itself_counts() -> None:
    mid_line = {"system": "note: - Primary working directory: /x", "messages": []}
    assert anthropic_messages.working_directory(mid_line) is None
