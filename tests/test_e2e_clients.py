"""The real Claude Code, Codex and Gemini CLIs (pinned npm versions) against the real stack.

Each CLI runs non-interactively (`claude -p`, `codex exec`, `gemini -p`) with its telemetry, update
checks and login flows off. A fact told in one run must be recalled in the next, in the scope named by the
client's own User-Agent; the human's words are stored once and the clients' scaffolding never.
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
from tests.stack import start_keyed_memory

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
    assert wait_for(lambda: told in contents(stack, "gemini-cli"))
    assert f"Fake reply to: {asked}" in run(gemini_argv(asked), env, work)  # a new session, same scope
    (first,) = [c for c in provider_calls(stack, told) if asked not in json.dumps(c["body"])]
    (second,) = provider_calls(stack, asked)
    recalled_before_words(second, told, asked)
    # Gemini CLI's system instruction and tools reach the provider unchanged by the recall.
    assert second["body"]["messages"][0] == first["body"]["messages"][0]
    assert second["body"]["tools"] == first["body"]["tools"]
    stored = wait_for(lambda: (s := contents(stack, "gemini-cli")) and asked in s and s)
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
        assert wait_for(lambda: told in contents(stack, "pycharm-ai", url, admin))  # the key's own scope
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
