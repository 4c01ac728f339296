"""Re-record what real AI clients send: `python -m tests.clients.record [NAME ...]`.

Each client runs once (Claude Code, Codex and Gemini CLI twice: a new session, then a resumed one) against
the fake provider, pointed straight at it, so the file holds the client's own bytes. One more
recording, `litellm-responses`, is what LiteLLM forwards upstream for an OpenAI-SDK Responses
call. Files are `tests/clients/<name>.json`; the versions are pinned below and in install.py.
Needs node/npm (for the CLIs) and PyPI (for llm and the Agents SDK, in `.clients/py`).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import httpx

from tests.clients.install import CLAUDE_CODE, CLIENTS_DIR, CODEX, GEMINI_CLI
from tests.stack import MASTER_KEY, ROOT, free_port, http_ok, spawn, start_stack, wait_until

HERE = Path(__file__).resolve().parent
PY_PACKAGES = ("llm==0.36", "openai-agents==0.24.0")
PROMPT = "My cat is called Zorblax and she loves tuna."
FOLLOW_UP = "What does my cat love to eat?"
AGENTS_MD = "# Repository rules\n\nRun the tests with `make test` before every commit.\n"
# Variables that would point a client elsewhere or log it in: the developer's, not the run's.
CLIENT_VARS = ("PYTEST", "ANTHROPIC_", "OPENAI_", "CODEX_", "CLAUDE_", "LLM_", "GEMINI_", "GOOGLE_")
DROPPED_HEADERS = {"host", "content-length", "connection"}  # transport details that change every run


class Provider:
    """The fake provider as a process, with its request log."""

    def __init__(self, workdir: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc = spawn(
            "provider",
            [sys.executable, str(ROOT / "tests" / "fake_provider.py"), "--port", str(self.port)],
            {**os.environ},
            workdir,
        )
        wait_until(lambda: http_ok(f"{self.url}/_requests"), self.proc, 30, "the fake provider")

    def take(self) -> list[dict]:
        """The requests received since the last call, with transport headers dropped."""
        calls = httpx.get(f"{self.url}/_requests", timeout=10).json()
        httpx.delete(f"{self.url}/_requests", timeout=10)
        for call in calls:
            call["headers"] = {k: v for k, v in call["headers"].items() if k.lower() not in DROPPED_HEADERS}
            call.pop("at", None)
        return calls


def run(argv: list[str], env: dict[str, str], cwd: Path, stdin: str | None = None) -> None:
    """Run a client to completion; fail loudly with its output."""
    done = subprocess.run(argv, env=env, cwd=cwd, input=stdin or "", capture_output=True, text=True, timeout=180)
    if done.returncode != 0:
        raise RuntimeError(f"{argv[0]} exited {done.returncode}:\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}")


def quiet_env(home: Path, **extra: str) -> dict[str, str]:
    """A clean environment: its own HOME, none of the developer's client settings or keys, no
    telemetry or update checks."""
    env = {k: v for k, v in os.environ.items() if not k.endswith("_API_KEY") and not k.startswith(CLIENT_VARS)}
    env.update(
        HOME=str(home),
        # Claude Code: one switch for telemetry, error reporting, auto-update and other non-API traffic.
        CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC="1",
        DISABLE_AUTOUPDATER="1",
        DISABLE_TELEMETRY="1",
        DISABLE_ERROR_REPORTING="1",
        NO_UPDATE_NOTIFIER="1",
        **extra,
    )
    return env


def workspace(root: Path) -> Path:
    """A git repository with an AGENTS.md, a CLAUDE.md and a GEMINI.md, as a real project has."""
    work = root / "project"
    work.mkdir()
    for name in ("AGENTS.md", "CLAUDE.md", "GEMINI.md"):
        (work / name).write_text(AGENTS_MD)
    subprocess.run(["git", "init", "-q", str(work)], check=True)
    return work


def codex_home(root: Path, base_url: str) -> Path:
    """A CODEX_HOME whose config.toml points Codex at `base_url` (the README's provider entry)."""
    home = root / "codex-home"
    home.mkdir(exist_ok=True)
    (home / "config.toml").write_text(codex_config(base_url))
    return home


def codex_config(base_url: str) -> str:
    """Codex config: a custom Responses provider, no update check, no analytics."""
    return f"""model = "fake-model"
model_provider = "memproxy"
check_for_update_on_startup = false

[model_providers.memproxy]
name = "Memory Proxy"
base_url = "{base_url}/v1"
env_key = "MEMPROXY_API_KEY"
wire_api = "responses"

[analytics]
enabled = false
"""


def claude_argv(*args: str) -> list[str]:
    """`claude -p` with a model name the fake provider answers."""
    return [*CLAUDE_CODE.argv(), "-p", "--model", "claude-fake", *args]


def codex_argv(*args: str) -> list[str]:
    """`codex exec` that never asks for approval."""
    return [*CODEX.argv(), "exec", "--skip-git-repo-check", *args]


def record_claude_code(p: Provider, root: Path) -> tuple[str, list[dict]]:
    """`claude -p` in a project with a CLAUDE.md, then `claude -p --continue`."""
    work = workspace(root)
    env = quiet_env(root / "home", ANTHROPIC_BASE_URL=p.url, ANTHROPIC_API_KEY="sk-ant-recording")
    (root / "home").mkdir()
    run(claude_argv(PROMPT), env, work)
    run(claude_argv("--continue", FOLLOW_UP), env, work)
    return CLAUDE_CODE.version, p.take()


def record_codex(p: Provider, root: Path) -> tuple[str, list[dict]]:
    """`codex exec` in a project with an AGENTS.md, then `codex exec resume --last`."""
    work = workspace(root)
    env = quiet_env(root / "home", CODEX_HOME=str(codex_home(root, p.url)), MEMPROXY_API_KEY="sk-recording")
    run(codex_argv(PROMPT), env, work)
    run(codex_argv("resume", "--last", FOLLOW_UP), env, work)
    return CODEX.version, p.take()


def gemini_home(root: Path) -> Path:
    """A HOME whose ~/.gemini/settings.json picks the API-key login and turns usage statistics,
    telemetry and update checks off."""
    home = root / "home"
    (home / ".gemini").mkdir(parents=True, exist_ok=True)
    settings = {
        "security": {"auth": {"selectedType": "gemini-api-key"}},
        "privacy": {"usageStatisticsEnabled": False},
        "telemetry": {"enabled": False},
        "general": {"disableAutoUpdate": True, "disableUpdateNag": True},
    }
    (home / ".gemini" / "settings.json").write_text(json.dumps(settings))
    return home


def gemini_env(root: Path, base_url: str, key: str) -> dict[str, str]:
    """Gemini CLI pointed at `base_url` with an API key, trusting the workspace (headless runs need it)."""
    return quiet_env(
        gemini_home(root), GOOGLE_GEMINI_BASE_URL=base_url, GEMINI_API_KEY=key, GEMINI_CLI_TRUST_WORKSPACE="true"
    )


def gemini_argv(*args: str) -> list[str]:
    """`gemini -p` with a model name the fake provider answers; `-r latest` resumes."""
    *flags, prompt = args
    return [*GEMINI_CLI.argv(), "-m", "fake-model", *flags, "-p", prompt]


def record_gemini_cli(p: Provider, root: Path) -> tuple[str, list[dict]]:
    """`gemini -p` in a project with a GEMINI.md, then `gemini -r latest -p`."""
    work = workspace(root)
    env = gemini_env(root, p.url, "gemini-recording-key")
    run(gemini_argv(PROMPT), env, work)
    run(gemini_argv("-r", "latest", FOLLOW_UP), env, work)
    return GEMINI_CLI.version, p.take()


def python_env() -> Path:
    """`.clients/py`: a venv with the pinned Python clients that the tests do not need."""
    python = CLIENTS_DIR / "py" / "bin" / "python"
    if not python.exists():
        subprocess.run(["uv", "venv", "--quiet", str(CLIENTS_DIR / "py")], check=True)
        subprocess.run(["uv", "pip", "install", "--quiet", "--python", str(python), *PY_PACKAGES], check=True)
    return python


SDK_SCRIPTS = {
    "openai-sdk-chat": """
import openai
c = openai.OpenAI(base_url=URL + "/v1", api_key="sk-recording")
c.chat.completions.create(model="fake-model", messages=[{"role": "system", "content": "Be brief."},
                                                        {"role": "user", "content": PROMPT}])
c.chat.completions.create(model="fake-model", stream=True, messages=[{"role": "user", "content": PROMPT}])
print(openai.__version__)
""",
    "openai-sdk-responses": """
import openai
c = openai.OpenAI(base_url=URL + "/v1", api_key="sk-recording")
first = c.responses.create(model="fake-model", instructions="Be brief.", input=PROMPT)
with c.responses.stream(model="fake-model", previous_response_id=first.id, input=[
        {"role": "user", "content": [{"type": "input_text", "text": FOLLOW_UP}]}]) as s:
    s.until_done()
print(openai.__version__)
""",
    "anthropic-sdk": """
import anthropic
c = anthropic.Anthropic(base_url=URL, api_key="sk-ant-recording")
c.messages.create(model="claude-fake", max_tokens=50, system="Be brief.",
                  messages=[{"role": "user", "content": PROMPT}])
with c.messages.stream(model="claude-fake", max_tokens=50, messages=[{"role": "user", "content": PROMPT}]) as s:
    s.until_done()
print(anthropic.__version__)
""",
    "openai-agents": """
import asyncio, agents, openai
from agents import Agent, OpenAIResponsesModel, Runner, set_tracing_disabled
set_tracing_disabled(True)
client = openai.AsyncOpenAI(base_url=URL + "/v1", api_key="sk-recording")
agent = Agent(name="Assistant", instructions="Be brief.",
              model=OpenAIResponsesModel(model="fake-model", openai_client=client))
Runner.run_sync(agent, PROMPT)
print(agents.__version__)
""",
}


def record_sdk(name: str, python: str) -> Callable[[Provider, Path], tuple[str, list[dict]]]:
    """A recorder that runs SDK_SCRIPTS[name] with `python`."""

    def record(p: Provider, root: Path) -> tuple[str, list[dict]]:
        """Run the script; its last output line is the SDK's version."""
        script = f"URL = {p.url!r}\nPROMPT = {PROMPT!r}\nFOLLOW_UP = {FOLLOW_UP!r}\n{SDK_SCRIPTS[name]}"
        done = subprocess.run(
            [python, "-c", script], env=quiet_env(root), cwd=root, capture_output=True, text=True, timeout=120
        )
        if done.returncode != 0:
            raise RuntimeError(f"{name}: {done.stderr[-2000:]}")
        return done.stdout.strip().splitlines()[-1], p.take()

    return record


def llm_models_yaml(base_url: str) -> str:
    """llm's extra-openai-models.yaml (the README's): llm keeps the OpenAI SDK's User-Agent, so it
    names its scope with the x-memory-user-id header."""
    return f"""- model_id: fake
  model_name: fake-model
  api_base: {base_url}/v1
  api_key_name: memproxy
  headers:
    x-memory-user-id: llm
"""


def record_llm(p: Provider, root: Path) -> tuple[str, list[dict]]:
    """`llm -m fake`, then `llm -c` (continue the conversation)."""
    python = python_env()
    user_path = root / "llm"
    user_path.mkdir()
    (user_path / "extra-openai-models.yaml").write_text(llm_models_yaml(p.url))
    (user_path / "keys.json").write_text(json.dumps({"memproxy": "sk-recording"}))
    env = quiet_env(root, LLM_USER_PATH=str(user_path))
    llm = str(python.parent / "llm")
    run([llm, "-m", "fake", PROMPT], env, root)
    run([llm, "-m", "fake", "-c", FOLLOW_UP], env, root)
    version = subprocess.run([llm, "--version"], capture_output=True, text=True, check=True).stdout.split()[-1]
    return version, p.take()


def record_litellm_responses(p: Provider, root: Path) -> tuple[str, list[dict]]:
    """What LiteLLM (the stack's pinned binary) sends upstream for streamed and plain Responses calls."""
    (root / "stack").mkdir()
    stack = start_stack(root / "stack")
    try:
        import openai

        c = openai.OpenAI(base_url=f"{stack.litellm_url}/v1", api_key=MASTER_KEY, max_retries=0)
        c.responses.create(model="fake-model", instructions="Be brief.", input=PROMPT)
        with c.responses.stream(model="fake-model", input=[{"role": "user", "content": FOLLOW_UP}]) as s:
            s.until_done()
        calls = httpx.get(f"{stack.provider_url}/_requests", timeout=10).json()
    finally:
        stack.stop()
    for call in calls:
        call["headers"] = {k: v for k, v in call["headers"].items() if k.lower() not in DROPPED_HEADERS}
        call.pop("at", None)
    version = (ROOT / "bin" / "litellm-proxy").read_text().split("LITELLM_VERSION=")[1].split()[0]
    return version, calls


def recorders() -> dict[str, Callable[[Provider, Path], tuple[str, list[dict]]]]:
    """Every recording, by file name."""
    found: dict[str, Callable[[Provider, Path], tuple[str, list[dict]]]] = {
        "claude-code": record_claude_code,
        "codex": record_codex,
        "gemini-cli": record_gemini_cli,
        "llm": record_llm,
        "litellm-responses": record_litellm_responses,
    }
    for name in ("openai-sdk-chat", "openai-sdk-responses", "anthropic-sdk"):
        found[name] = record_sdk(name, sys.executable)
    found["openai-agents"] = lambda p, root: record_sdk("openai-agents", str(python_env()))(p, root)
    return found


def main() -> None:
    """Record the named clients (default: all) into tests/clients/."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", help="recordings to redo (default: all)")
    args = parser.parse_args()
    chosen = recorders()
    names = args.names or list(chosen)
    with tempfile.TemporaryDirectory(prefix="record-clients-") as tmp:
        provider = Provider(Path(tmp))
        try:
            for name in names:
                root = Path(tmp) / name
                root.mkdir()
                started = time.monotonic()
                version, requests = chosen[name](provider, root)
                out = {
                    "client": name,
                    "version": version,
                    "prompt": PROMPT,
                    "follow_up": FOLLOW_UP,
                    "requests": requests,
                }
                (HERE / f"{name}.json").write_text(json.dumps(out, indent=1, ensure_ascii=False) + "\n")
                print(f"{name} {version}: {len(requests)} requests ({time.monotonic() - started:.1f} s)")
        finally:
            provider.proc.stop()


if __name__ == "__main__":
    main()
