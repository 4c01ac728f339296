"""The real Claude Code, Codex and Gemini CLIs (pinned npm versions) against the real stack.

Each CLI runs non-interactively (`claude -p`, `codex exec`, `gemini -p`) with its telemetry, update
checks and login flows off. A fact told in one run must be recalled in the next, in the scope of the
git repository the client works in (its own environment block names it); the human's words are
stored once and the clients' scaffolding never. Projects: every client of one owner in one directory
shares its scope, another directory (even of the same folder name) does not, and two people never meet.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import httpx
import pytest

from tests.clients.install import CLAUDE_CODE, CODEX, GEMINI_CLI, missing_tools
from tests.clients.record import claude_argv, codex_argv, codex_home, gemini_argv, gemini_env, quiet_env, workspace
from tests.e2e import marker, provider_calls, wait_for
from tests.stack import stack_config, start_keyed_memory, start_memory

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
        pytest.skip(f"{', '.join(missing)} not on PATH: the live Claude Code, Codex and Gemini CLI tests need them")
    CLAUDE_CODE.argv()
    CODEX.argv()
    GEMINI_CLI.argv()


def run(argv: list[str], env: dict[str, str], cwd: Path) -> str:
    done = subprocess.run(argv, env=env, cwd=cwd, input="", capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, f"{argv[:3]} exited {done.returncode}:\n{done.stdout[-1500:]}\n{done.stderr[-1500:]}"
    return done.stdout


def contents(stack, scope: str, url: str | None = None, key: str | None = None) -> list[str]:  # type: ignore[no-untyped-def]
    headers = {"authorization": f"Bearer {key}"} if key else {}
    r = httpx.get(
        f"{url or stack.memory_url}/v1/memories", params={"user_id": scope, "limit": 100}, headers=headers, timeout=10
    )
    assert r.status_code == 200, r.text
    return [m["content"] for m in r.json()["data"]]


def project_scope(url: str, work: Path, **headers: str) -> str:
    """The scope the proxy gives a chat from `work` (as GET /memory-routing/info?directory= reports it)."""
    r = httpx.get(f"{url}/memory-routing/info", params={"directory": str(work)}, headers=headers, timeout=10)
    assert r.status_code == 200, r.text
    info = r.json()
    assert info["directory"] == str(work) and info["project_signal"] == "environment"
    return info["user_id"]


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
    scope = project_scope(stack.memory_url, work)
    assert scope.startswith("local:project-")
    first, second, _ = tell_then_ask(stack, claude_argv, env, work, scope, marker())
    # Claude Code's system blocks and its trailing system entry reach the provider unchanged.
    assert second["body"]["system"][1:] == first["body"]["system"][1:]  # [0] is a per-run billing line
    last = second["body"]["messages"][-1]
    assert last["role"] == "system" and last == first["body"]["messages"][-1]
    assert [t["name"] for t in second["body"]["tools"]] == [t["name"] for t in recorded("claude-code")["tools"]]


def test_codex_remembers_across_runs(stack, clients, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    work = workspace(tmp_path)
    (tmp_path / "home").mkdir()
    env = quiet_env(tmp_path / "home", CODEX_HOME=str(codex_home(tmp_path, stack.memory_url)), MEMPROXY_API_KEY="k")
    first, second, at = tell_then_ask(stack, codex_argv, env, work, project_scope(stack.memory_url, work), marker())
    # Codex's developer items and its scaffolding before the human's message arrive unchanged.
    items = second["body"]["input"]
    assert without_ids(items[:at]) == without_ids(first["body"]["input"][:at])  # Codex makes new ids each run
    assert [i["role"] for i in items[:at] if i.get("role") == "developer"] == ["developer", "developer"]
    assert second["body"]["tools"] == first["body"]["tools"]
    assert [t.get("name") for t in second["body"]["tools"]] == [t.get("name") for t in recorded("codex")["tools"]]


GEMINI_SCAFFOLDING = (*SCAFFOLDING, "session_context", "Workspace Directories", "Gemini CLI")


def recalled_before_words(call: dict, told: str, asked: str) -> None:
    """LiteLLM hands the provider the Gemini request as chat messages: the notes (holding what was
    told) come after the session context and right before the words asked, in the same turn."""
    text = json.dumps(call["body"]["messages"])
    assert text.index("session_context") < text.index("recalled-memories") < text.index(asked)
    block = text[text.index("<recalled-memories>") : text.index("</recalled-memories>")]
    assert told in block and asked not in block


def test_gemini_cli_remembers_across_runs(stack, clients, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    work = workspace(tmp_path)
    env = gemini_env(tmp_path, stack.memory_url, "unused-on-loopback")
    m = marker()
    told = f"My cat {m} is called Zorblax and she loves tuna."
    asked = f"What does my cat {m} love to eat?"
    assert f"Fake reply to: {told}" in run(gemini_argv(told), env, work)  # streamed (?alt=sse)
    scope = project_scope(stack.memory_url, work)  # Gemini CLI names its workspace in its session context
    assert wait_for(lambda: told in contents(stack, scope))
    assert f"Fake reply to: {asked}" in run(gemini_argv(asked), env, work)  # a new session, same scope
    (first,) = [c for c in provider_calls(stack, told) if asked not in json.dumps(c["body"])]
    (second,) = provider_calls(stack, asked)
    recalled_before_words(second, told, asked)
    # Gemini CLI's system instruction and tools reach the provider unchanged by the recall.
    assert second["body"]["messages"][0] == first["body"]["messages"][0]
    assert second["body"]["tools"] == first["body"]["tools"]
    stored = wait_for(lambda: (s := contents(stack, scope)) and asked in s and s)
    assert stored.count(told) == 1 and stored.count(asked) == 1
    assert not [c for c in stored if any(w in c for w in GEMINI_SCAFFOLDING)]


def test_gemini_cli_pinned_key_and_wrong_key(stack, clients, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    pinned, admin = "gk-e2e-" + marker(), "gk-admin-" + marker()
    proc, url = start_keyed_memory(stack, tmp_path, "keyed", pinned, admin)
    try:
        work = workspace(tmp_path)
        m = marker()
        told = f"My parrot {m} is called Kiwi."
        out = run(gemini_argv(told), gemini_env(tmp_path, url, pinned), work)  # the key goes in x-goog-api-key
        assert f"Fake reply to: {told}" in out
        own = project_scope(url, work, **{"x-goog-api-key": pinned})
        assert own.startswith("pycharm-ai:")  # the key's own project scope
        assert wait_for(lambda: told in contents(stack, own, url, admin))
        assert told not in contents(stack, "gemini-cli", url, admin)
        wrong = subprocess.run(
            gemini_argv(f"never stored {m}"),
            env=gemini_env(tmp_path, url, "gk-wrong-key"),
            cwd=work,
            input="",
            capture_output=True,
            text=True,
            timeout=180,
        )
        assert wrong.returncode != 0 and "401" in wrong.stdout + wrong.stderr
        r = httpx.post(
            f"{url}/v1beta/models/fake-model:streamGenerateContent",
            params={"alt": "sse", "key": "gk-wrong-key"},
            json={"contents": [{"role": "user", "parts": [{"text": f"never stored {m}"}]}]},
            timeout=30,
        )
        assert r.status_code == 401
        assert r.json() == {
            "error": {"code": 401, "message": "missing or invalid API key", "status": "UNAUTHENTICATED"}
        }
        assert provider_calls(stack, f"never stored {m}") == []
    finally:
        proc.stop()


def test_gemini_generate_content_not_streamed(stack, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """What a Gemini SDK's generate_content sends: one reply, captured, in Gemini CLI's scope by its User-Agent."""
    m = marker()
    user_agent = "GeminiCLI/0.61.0/fake-model (linux; x64; terminal)"
    for version in ("v1beta", "v1"):
        said = f"My dog {m} answers to Rex on {version}."
        body = {
            "contents": [{"role": "user", "parts": [{"text": said}]}],
            "systemInstruction": {"parts": [{"text": "Be brief."}]},
        }
        r = httpx.post(
            f"{stack.memory_url}/{version}/models/fake-model:generateContent",
            json=body,
            headers={"x-goog-api-key": "unused-on-loopback", "user-agent": user_agent},
            timeout=60,
        )
        assert r.status_code == 200, r.text
        assert r.json()["candidates"][0]["content"]["parts"][0]["text"] == f"Fake reply to: {said}"
        assert r.headers["x-memory-user-id"] == "gemini-cli"
        stored = wait_for(lambda: (s := contents(stack, "gemini-cli")) and f"Fake reply to: {said}" in s and s)  # noqa: B023
        assert said in stored and not [c for c in stored if "Be brief" in c]


def repository(where: Path) -> Path:
    """A git repository at `where` (its folder name is the project's name)."""
    where.mkdir(parents=True)
    subprocess.run(["git", "init", "-q", str(where)], check=True)
    return where.resolve()


def injected(stack, asked: str, told: str) -> bool:  # type: ignore[no-untyped-def]
    """Whether the provider's copy of the request that asked `asked` carried `told` as a recalled note."""
    (call,) = provider_calls(stack, asked)
    entries = call["body"].get("messages") or call["body"]["input"]
    return any("recalled-memories" in json.dumps(e) and told in json.dumps(e) for e in entries)


def test_claude_code_and_codex_share_a_project_and_nothing_else(stack, clients, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    alpha, beta = repository(tmp_path / "src" / "alpha"), repository(tmp_path / "src" / "beta")
    other_alpha = repository(tmp_path / "elsewhere" / "alpha")
    (tmp_path / "home").mkdir()
    claude = quiet_env(tmp_path / "home", ANTHROPIC_BASE_URL=stack.memory_url, ANTHROPIC_API_KEY="sk-ant-e2e")
    codex = quiet_env(tmp_path / "home", CODEX_HOME=str(codex_home(tmp_path, stack.memory_url)), MEMPROXY_API_KEY="k")
    m = marker()
    told = f"The staging database of service {m} listens on port 5433."
    run(claude_argv(told), claude, alpha)
    scope = project_scope(stack.memory_url, alpha)
    assert wait_for(lambda: told in contents(stack, scope))
    assert told not in contents(stack, "claude-cli")  # words said in a project stay in the project
    assert project_scope(stack.memory_url, other_alpha) != scope  # the same folder name elsewhere

    asks = {
        "codex in alpha": (codex_argv, codex, alpha, True),
        "claude code in beta": (claude_argv, claude, beta, False),
        "codex in the other alpha": (codex_argv, codex, other_alpha, False),
    }
    for who, (argv, env, work, expected) in asks.items():
        asked = f"Which port does the staging database of service {m} listen on? ({who})"
        run(argv(asked), env, work)
        assert injected(stack, asked, told) is expected, who
    later = wait_for(lambda: (s := contents(stack, scope)) and len(s) >= 4 and s)
    assert any("(codex in alpha)" in c for c in later)  # Codex's turn joined the shared project scope
    assert not [c for c in later if "(claude code in beta)" in c or "(codex in the other alpha)" in c]


def test_pinned_keys_of_two_people_in_one_repository_never_meet(stack, clients, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    keys = {"alice": "sk-ant-" + "alice-e2e", "bob": "sk-ant-" + "bob-e2e"}
    config = stack_config(int(stack.provider_url.rsplit(":", 1)[1]))
    config["auth"] = {
        "keys": [
            {"key": "os.environ/ALICE_PROXY_KEY", "user_id": "alice"},
            {"key": "os.environ/BOB_PROXY_KEY", "user_id": "bob"},
        ]
    }
    litellm_port = int(stack.litellm_url.rsplit(":", 1)[1])
    proc, url = start_memory(
        tmp_path, "keyed", config, litellm_port, ALICE_PROXY_KEY=keys["alice"], BOB_PROXY_KEY=keys["bob"]
    )
    try:
        alpha = repository(tmp_path / "src" / "alpha")
        (tmp_path / "home").mkdir()

        def env(person: str) -> dict[str, str]:
            return quiet_env(tmp_path / "home", ANTHROPIC_BASE_URL=url, ANTHROPIC_API_KEY=keys[person])

        m = marker()
        told = f"My locker code {m} is 4711."
        run(claude_argv(told), env("alice"), alpha)
        scopes = {p: project_scope(url, alpha, **{"x-api-key": k}) for p, k in keys.items()}
        assert scopes["alice"].startswith("alice:alpha-") and scopes["bob"].startswith("bob:alpha-")

        def held(person: str, scope: str) -> httpx.Response:
            headers = {"x-api-key": keys[person], "x-memory-user-id": scope}
            return httpx.get(f"{url}/v1/memories", params={"limit": 100}, headers=headers, timeout=10)

        assert wait_for(lambda: told in [m["content"] for m in held("alice", scopes["alice"]).json()["data"]])
        assert held("bob", scopes["alice"]).status_code == 403
        for person, expected in (("bob", False), ("alice", True)):
            asked = f"What is my locker code {m}? ({person})"
            run(claude_argv(asked), env(person), alpha)
            (call,) = [c for c in provider_calls(stack, asked)]
            assert (told in json.dumps(call["body"]["messages"])) is expected, person
    finally:
        proc.stop()


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
