"""The real Claude Code and Codex CLIs (pinned npm versions) against the real stack.

Each CLI runs non-interactively (`claude -p`, `codex exec`) with its telemetry, update checks and
login flows off. A fact told in one run must be recalled in the next, in the scope named by the
client's own User-Agent; the human's words are stored once and the clients' scaffolding never.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import httpx
import pytest

from tests.clients.install import CLAUDE_CODE, CODEX, missing_tools
from tests.clients.record import claude_argv, codex_argv, codex_home, quiet_env, workspace
from tests.e2e import marker, provider_calls, wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(900)]
# Words of the clients' scaffolding that must never be stored as memories.
SCAFFOLDING = ("system-reminder", "environment_context", "AGENTS.md", "INSTRUCTIONS>", "make test", "coding agent")


@pytest.fixture(scope="module")
def clients() -> None:
    """Install the pinned CLIs; without node/npm skip, except under CI, where that is a failure."""
    missing = missing_tools()
    if missing and os.environ.get("CI") == "true":
        pytest.fail(f"{', '.join(missing)} not on PATH: the live client tests cannot run")
    if missing:
        pytest.skip(f"{', '.join(missing)} not on PATH: the live Claude Code and Codex tests need them")
    CLAUDE_CODE.argv()
    CODEX.argv()


def run(argv: list[str], env: dict[str, str], cwd: Path) -> str:
    done = subprocess.run(argv, env=env, cwd=cwd, input="", capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, f"{argv[:3]} exited {done.returncode}:\n{done.stdout[-1500:]}\n{done.stderr[-1500:]}"
    return done.stdout


def contents(stack, scope: str) -> list[str]:  # type: ignore[no-untyped-def]
    r = httpx.get(f"{stack.memory_url}/v1/memories", params={"user_id": scope, "limit": 100}, timeout=10)
    assert r.status_code == 200, r.text
    return [m["content"] for m in r.json()["data"]]


def tell_then_ask(stack, argv, env: dict[str, str], work: Path, scope: str, m: str) -> tuple[dict, dict, int]:  # type: ignore[no-untyped-def]
    """Run the client twice, telling a fact and then asking about it. Checks the recall and what is
    stored; returns the provider's copy of both calls and where the recalled notes sit in the second."""
    told = f"My cat {m} is called Zorblax and she loves tuna."
    asked = f"What does my cat {m} love to eat?"
    assert f"Fake reply to: {told}" in run(argv(told), env, work)
    assert wait_for(lambda: told in contents(stack, scope))
    run(argv(asked), env, work)
    (first,) = [c for c in provider_calls(stack, told) if asked not in json.dumps(c["body"])]
    (second,) = provider_calls(stack, asked)
    entries = second["body"].get("messages") or second["body"]["input"]
    at = next(i for i, entry in enumerate(entries) if "recalled-memories" in json.dumps(entry))
    assert told in json.dumps(entries[at]) and asked in json.dumps(entries[at + 1])
    stored = wait_for(lambda: (s := contents(stack, scope)) and asked in s and s)
    assert stored.count(told) == 1 and stored.count(asked) == 1
    assert not [c for c in stored if any(w in c for w in SCAFFOLDING)]
    return first, second, at


def without_ids(items: list[dict]) -> list[dict]:
    return [{k: v for k, v in item.items() if k != "id"} for item in items]


def recorded(name: str) -> dict:
    return json.loads((Path(__file__).parent / "clients" / f"{name}.json").read_text())["requests"][0]["body"]


def test_claude_code_remembers_across_runs(stack, clients, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    work = workspace(tmp_path)
    (tmp_path / "home").mkdir()
    env = quiet_env(tmp_path / "home", ANTHROPIC_BASE_URL=stack.memory_url, ANTHROPIC_API_KEY="sk-ant-e2e")
    first, second, _ = tell_then_ask(stack, claude_argv, env, work, "claude-cli", marker())
    # Claude Code's system blocks and its trailing system entry reach the provider unchanged.
    assert second["body"]["system"][1:] == first["body"]["system"][1:]  # [0] is a per-run billing line
    last = second["body"]["messages"][-1]
    assert last["role"] == "system" and last == first["body"]["messages"][-1]
    assert [t["name"] for t in second["body"]["tools"]] == [t["name"] for t in recorded("claude-code")["tools"]]


def test_codex_remembers_across_runs(stack, clients, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    work = workspace(tmp_path)
    (tmp_path / "home").mkdir()
    env = quiet_env(tmp_path / "home", CODEX_HOME=str(codex_home(tmp_path, stack.memory_url)), MEMPROXY_API_KEY="k")
    first, second, at = tell_then_ask(stack, codex_argv, env, work, "codex-cli", marker())
    # Codex's developer items and its scaffolding before the human's message arrive unchanged.
    items = second["body"]["input"]
    assert without_ids(items[:at]) == without_ids(first["body"]["input"][:at])  # Codex makes new ids each run
    assert [i["role"] for i in items[:at] if i.get("role") == "developer"] == ["developer", "developer"]
    assert second["body"]["tools"] == first["body"]["tools"]
    assert [t.get("name") for t in second["body"]["tools"]] == [t.get("name") for t in recorded("codex")["tools"]]


def test_claude_code_uses_the_mcp_server(stack, clients, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """Claude Code loads /mcp from --mcp-config (the README's file) and calls its tools for the model."""
    work = workspace(tmp_path)
    (tmp_path / "home").mkdir()
    # Without ENABLE_TOOL_SEARCH=false Claude Code offers MCP tools only behind its ToolSearch tool.
    env = quiet_env(
        tmp_path / "home",
        ANTHROPIC_BASE_URL=stack.memory_url,
        ANTHROPIC_API_KEY="sk-ant-e2e",
        ENABLE_TOOL_SEARCH="false",
    )
    scope = "mcp-" + marker()
    server = {"type": "http", "url": f"{stack.memory_url}/mcp", "headers": {"x-memory-user-id": scope}}
    config = tmp_path / "memory-mcp.json"
    config.write_text(json.dumps({"mcpServers": {"memory": server}}))
    # The prompt goes first: --mcp-config and --allowedTools take lists.
    mcp = [f"--mcp-config={config}", "--strict-mcp-config", "--allowedTools=mcp__memory"]
    fact = f"The staging database is called {marker()}."

    said = run(claude_argv("TOOL:remember " + json.dumps({"text": fact}), *mcp), env, work)
    assert "Tool said:" in said and '"new":true' in said, said
    assert fact in contents(stack, scope)  # stored by the tool in the scope the header named
    found = run(claude_argv("TOOL:search " + json.dumps({"question": fact}), *mcp), env, work)
    assert "Tool said:" in found and fact in found
    called = [c for c in provider_calls(stack, fact) if "mcp__memory__search" in json.dumps(c["body"].get("tools"))]
    assert called, "Claude Code offered the provider no tools of the memory server"
