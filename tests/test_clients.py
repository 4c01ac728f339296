"""Memory over traffic recorded from real clients (tests/clients/*.json, re-recorded by record.py)."""

from __future__ import annotations

import copy
import dataclasses
import json
from pathlib import Path
from typing import Any

import pytest

from app import memory
from app.auth import ANONYMOUS
from app.config import load_settings
from app.dialects import for_path
from app.memory import Recalled, render_block
from app.scopes import resolve_scope
from tests.inprocess import make_settings, running, upstream_requests

RECORDINGS = Path(__file__).parent / "clients"
ROOT = Path(__file__).parent.parent
# The scope the shipped config.yaml gives each client (llm keeps the OpenAI SDK's User-Agent and
# names its scope with x-memory-user-id, as the README shows).
SCOPES = {
    "claude-code": "claude-cli",
    "codex": "codex-cli",
    "openai-sdk-chat": "openai-sdk",
    "openai-sdk-responses": "openai-sdk",
    "anthropic-sdk": "anthropic-sdk",
    "openai-agents": "openai-agents",
    "llm": "llm",
}
# Words of the clients' own scaffolding: never the human's.
SCAFFOLDING = (
    "system-reminder",
    "Claude Code attached",
    "environment_context",
    "AGENTS.md",
    "INSTRUCTIONS>",
    "permissions instructions",
    "skills_instructions",
    "You are a coding agent",
    "make test",
    "Be brief",
)
BLOCK = render_block([Recalled("the cat is called Zorblax", "user", 0.0)])


def load(name: str) -> dict[str, Any]:
    return json.loads((RECORDINGS / f"{name}.json").read_text())


CASES = [pytest.param(name, i, id=f"{name}-{i}") for name in SCOPES for i in range(len(load(name)["requests"]))]


def human_words(recording: dict[str, Any], request: dict[str, Any]) -> str:
    """What the human typed in this request: the follow-up in a resumed session, else the prompt."""
    return recording["follow_up"] if recording["follow_up"] in json.dumps(request["body"]) else recording["prompt"]


def shipped_scopes():  # type: ignore[no-untyped-def]
    return load_settings(env={"MEMORY_CONFIG": str(ROOT / "config.yaml")}).scopes


def test_every_client_is_recorded_with_its_version() -> None:
    for name in [*SCOPES, "litellm-responses"]:
        recording = load(name)
        assert recording["client"] == name and recording["version"][0].isdigit()
        assert recording["requests"]


@pytest.mark.parametrize(("name", "i"), CASES)
def test_scope_from_the_clients_own_headers(name: str, i: int) -> None:
    headers = {k.lower(): v for k, v in load(name)["requests"][i]["headers"].items()}
    assert resolve_scope(shipped_scopes(), headers, ANONYMOUS).user_id == SCOPES[name]


@pytest.mark.parametrize(("name", "i"), CASES)
def test_human_turn_is_found_and_scaffolding_never(name: str, i: int) -> None:
    recording = load(name)
    request = recording["requests"][i]
    dialect = for_path(request["path"])
    assert dialect is not None
    turn = memory.new_user_turn(dialect.turns(request["body"]))
    assert turn is not None and turn.text == human_words(recording, request)
    assert memory.query_text(dialect.turns(request["body"]), "last_user") == turn.text
    for t in dialect.turns(request["body"]):
        assert not any(s in t.text for s in SCAFFOLDING), (t.role, t.text[:200])


def without_entries(body: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in body.items() if k not in ("messages", "input")}


def entries(body: dict[str, Any]) -> list[Any]:
    items = body.get("messages", body.get("input"))
    return items if isinstance(items, list) else [items]


@pytest.mark.parametrize(("name", "i"), CASES)
def test_injection_keeps_every_byte_before_the_human_turn(name: str, i: int) -> None:
    recording = load(name)
    request = recording["requests"][i]
    dialect = for_path(request["path"])
    assert dialect is not None
    body = copy.deepcopy(request["body"])
    turn = memory.new_user_turn(dialect.turns(body))
    assert turn is not None
    assert dialect.inject(body, BLOCK, "before_last_user")
    before, after = entries(request["body"]), entries(body)
    # Everything but the entry list is untouched (system, instructions, tools, cache keys).
    assert without_entries(body) == without_entries(request["body"])
    if isinstance(request["body"].get("input"), str):
        assert after[-1]["content"] == request["body"]["input"]
    else:
        assert json.dumps(after[: turn.position]) == json.dumps(before[: turn.position])
        assert after[turn.position + 1 :] == before[turn.position :]
    block_at = -2 if isinstance(request["body"].get("input"), str) else turn.position
    assert json.dumps(BLOCK)[1:-1] in json.dumps(after[block_at])
    again = memory.new_user_turn(dialect.turns(body))
    assert again is not None and again.text == turn.text  # the block is not taken for the human


@pytest.mark.parametrize(("name", "i"), CASES)
async def test_recorded_request_through_the_proxy(tmp_path: Path, name: str, i: int) -> None:
    """Scope, recall, injection and capture for the recorded bytes, through the real app."""
    recording = load(name)
    request = recording["requests"][i]
    words = human_words(recording, request)
    scope = SCOPES[name]
    settings = dataclasses.replace(make_settings(tmp_path), scopes=shipped_scopes())
    headers = {k: v for k, v in request["headers"].items() if k.lower() not in ("authorization", "x-api-key")}
    marker = f"seeded-{name}-{i}"
    async with running(tmp_path, settings=settings) as p:
        seeded = await p.client.post(
            "/v1/memories", json={"content": f"cat called Zorblax loves to eat tuna {marker}", "user_id": scope}
        )
        assert seeded.status_code == 201, seeded.text
        r = await p.client.post(request["path"], content=json.dumps(request["body"]), headers=headers)
        await p.drain()
        rows = await p.memories(scope)
    assert r.status_code == 200, r.text[:300]
    assert r.headers["x-memory-user-id"] == scope
    assert r.headers["x-memory-injected"] == "1"
    (call,) = upstream_requests(marker)
    sent = entries(call["body"])
    at = next(k for k, e in enumerate(sent) if marker in json.dumps(e))
    assert words in json.dumps(sent[at + 1])  # the notes sit right before the human's message
    # Everything else reaches the provider as the client sent it: system blocks, instructions,
    # tools, developer items and the entries on both sides of the notes.
    assert without_entries(call["body"]) == without_entries(request["body"])
    recorded = entries(request["body"])
    if not isinstance(request["body"].get("input"), str):
        assert sent[:at] == recorded[:at] and sent[at + 1 :] == recorded[at:]
    stored = [row["content"] for row in rows]
    assert stored.count(words) == 1
    assert f"Fake reply to: {words}" in stored
    assert not any(s in c for c in stored for s in SCAFFOLDING)


@pytest.mark.parametrize(
    ("user_agent", "scope"),
    [
        ("codex_cli_rs/0.171.0 (Debian 12.0.0; x86_64) xterm-256color (codex-tui; 0.171.0)", "codex-cli"),
        ("codex_exec/0.169.0 (Mac OS 15.1.0; arm64) iTerm.app/3.5.10 (codex_exec; 0.169.0)", "codex-cli"),
        ("Agents/Python 0.24.0", "openai-agents"),
        ("OpenAI/Python 3.57.0", "openai-sdk"),
        ("AsyncOpenAI/Python 3.57.0", "openai-sdk"),
        ("AsyncAnthropic/Python 2.10.0", "anthropic-sdk"),
        ("codex-like-but-not/1.0", "default-dev"),
    ],
)
def test_shipped_patterns_for_user_agents_not_recorded(user_agent: str, scope: str) -> None:
    """The interactive Codex CLI and other versions map like the recorded ones."""
    assert resolve_scope(shipped_scopes(), {"user-agent": user_agent}, ANONYMOUS).user_id == scope
