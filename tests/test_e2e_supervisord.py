"""End-to-end: the stack under supervisord.conf, started from a fresh copy of the repository with its
settings in `.env` (DATABASE_URL among them), and what a kill -9 of each process does."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import yaml

from tests.e2e import marker, provider_calls, wait_for
from tests.stack import (
    LITELLM_START_TIMEOUT,
    MASTER_KEY,
    Proc,
    Stack,
    base_env,
    descendants,
    free_port,
    http_ok,
    repo_copy,
    spawn,
    stack_config,
    stack_with_provider,
    start_stack,
    wait_until,
)

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(1200)]


@dataclass
class Supervised:
    """A stack run by supervisord from a copy of the repository."""

    stack: Stack
    checkout: Path
    supervisord: Proc

    def ctl(self, *args: str) -> str:
        """`supervisorctl -c supervisord.conf ARGS` in the copy; its output."""
        conf = str(self.checkout / "supervisord.conf")
        done = subprocess.run(
            [str(Path(sys.executable).parent / "supervisorctl"), "-c", conf, *args],
            capture_output=True,
            text=True,
            timeout=60,
            env=self.stack.env,
        )
        return done.stdout + done.stderr

    def log(self, name: str) -> str:
        """The text of logs/NAME.log in the copy (empty before it exists)."""
        try:
            return (self.checkout / "logs" / f"{name}.log").read_text(errors="replace")
        except OSError:
            return ""

    def pid(self, program: str) -> int:
        """The pid supervisord has for `program` (0 while it is not running)."""
        return int(self.ctl("pid", program).strip() or 0)


def listening(port: int) -> bool:
    """True when something accepts connections on 127.0.0.1:port."""
    with socket.socket() as s:
        s.settimeout(1)
        return s.connect_ex(("127.0.0.1", port)) == 0


@pytest.fixture(scope="module")
def supervised(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Supervised]:
    workdir = tmp_path_factory.mktemp("supervised")
    checkout = repo_copy(workdir / "checkout")
    stack, provider_port, litellm_port, memory_port = stack_with_provider(workdir, checkout)
    config_path = workdir / "config.yaml"
    config_path.write_text(yaml.safe_dump(stack_config(provider_port), sort_keys=False))
    # Every setting comes from the copy's .env, as a user writes it. DATABASE_URL is the memory
    # store's (MEMORY_DB wins for the store); LiteLLM must not take it and stop for want of prisma.
    dead_pg = f"postgresql://memory:unused@127.0.0.1:{free_port()}/memory"
    (checkout / ".env").write_text(
        f"MEMORY_PORT={memory_port}\nLITELLM_PORT={litellm_port}\nMEMORY_CONFIG={config_path}\n"
        f"MEMORY_DB={workdir / 'memory.db'}\nDATABASE_URL={dead_pg}\nLITELLM_MASTER_KEY={MASTER_KEY}\n"
    )
    # The copy builds its own .litellm/ on first start (from uv's cache), as a fresh clone does.
    env = {k: v for k, v in base_env(workdir).items() if not k.startswith(("MEMORY_", "LITELLM_"))}
    env["LITELLM_LOCAL_MODEL_COST_MAP"] = "True"
    stack.env = env
    conf = str(checkout / "supervisord.conf")
    supervisord = spawn("supervisord", ["supervisord", "-n", "-c", conf], env, workdir, cwd=checkout)
    running = Supervised(stack, checkout, supervisord)

    def up(url: str) -> bool:
        exited = [line for line in running.log("supervisord").splitlines() if "exited: " in line]
        if exited:  # a program that exits at start (supervisord would start it again and again)
            raise RuntimeError(f"{exited[0]}\n{running.log('litellm')[-3000:]}\n{running.log('memory')[-3000:]}")
        return http_ok(url)

    try:
        wait_until(lambda: up(f"{stack.memory_url}/health"), supervisord, 120, "the memory proxy")
        wait_until(lambda: up(f"{stack.litellm_url}/health/liveliness"), supervisord, LITELLM_START_TIMEOUT, "LiteLLM")
        yield running
    finally:
        below = descendants(supervisord.popen.pid)
        supervisord.stop(60)
        for pid in below:  # anything supervisord left behind
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        stack.stop()  # the fake provider


def chat_openai(url: str, text: str) -> httpx.Response:
    body = {"model": "fake-model", "messages": [{"role": "user", "content": text}]}
    return httpx.post(f"{url}/v1/chat/completions", json=body, timeout=60)


def chat_anthropic(url: str, text: str) -> httpx.Response:
    body = {"model": "claude-fake", "max_tokens": 50, "messages": [{"role": "user", "content": text}]}
    return httpx.post(f"{url}/v1/messages", json=body, headers={"anthropic-version": "2023-06-01"}, timeout=60)


def status(url: str) -> str:
    return httpx.get(f"{url}/health", timeout=10).json()["status"]


def test_supervisorctl_status_lists_both_programs(supervised: Supervised) -> None:
    out = supervised.ctl("status")
    assert "litellm" in out and "memory" in out and out.count("RUNNING") == 2, out
    assert (supervised.checkout / "logs" / "memory.log").stat().st_size > 0
    assert "point clients at" in (supervised.checkout / "logs" / "memory.log").read_text()


def test_litellm_never_sees_database_url_or_memory_settings(supervised: Supervised) -> None:
    environ = Path(f"/proc/{supervised.pid('litellm')}/environ").read_bytes().split(b"\0")
    names = {entry.split(b"=", 1)[0].decode() for entry in environ if entry}
    assert "LITELLM_PORT" in names  # .env reached it
    assert "DATABASE_URL" not in names
    assert not [n for n in names if n.startswith("MEMORY_")], names
    # and it answers, with DATABASE_URL in .env (its own .env loading would have found it)
    m = marker()
    headers = {"authorization": f"Bearer {MASTER_KEY}"}
    body = {"model": "fake-model", "messages": [{"role": "user", "content": m}]}
    assert (
        httpx.post(
            f"{supervised.stack.litellm_url}/v1/chat/completions", json=body, headers=headers, timeout=60
        ).status_code
        == 200
    )


def test_litellm_killed_memory_proxy_serves_and_litellm_comes_back(supervised: Supervised) -> None:
    url = supervised.stack.memory_url
    memory_pid, litellm_pid = supervised.pid("memory"), supervised.pid("litellm")
    os.kill(litellm_pid, signal.SIGKILL)
    wait_for(lambda: not http_ok(f"{supervised.stack.litellm_url}/health/liveliness"), 10)
    assert status(url) == "degraded"
    openai_reply, anthropic_reply = chat_openai(url, "while down"), chat_anthropic(url, "while down")
    assert openai_reply.status_code in (502, 503) and "message" in openai_reply.json()["error"]
    assert anthropic_reply.status_code in (502, 503) and anthropic_reply.json()["type"] == "error"
    ok = wait_for(lambda: http_ok(f"{supervised.stack.litellm_url}/health/liveliness"), LITELLM_START_TIMEOUT)
    assert ok, supervised.ctl("status")
    assert supervised.pid("litellm") not in (0, litellm_pid)
    assert supervised.pid("memory") == memory_pid  # never stopped
    assert wait_for(lambda: status(url) == "healthy", 30)
    m = marker()
    assert chat_openai(url, f"back {m}").status_code == 200
    assert chat_anthropic(url, f"back {m}").status_code == 200
    assert len(provider_calls(supervised.stack, m)) == 2


def test_memory_proxy_killed_is_restarted_with_every_acknowledged_memory(supervised: Supervised) -> None:
    url = supervised.stack.memory_url
    scope = {"x-memory-user-id": "restart-check"}
    acknowledged = []
    for i in range(50):
        reply = httpx.post(
            f"{url}/v1/memories", json={"content": f"kept fact {i} {marker()}"}, headers=scope, timeout=30
        )
        assert reply.status_code == 201
        acknowledged.append(reply.json()["id"])
    before = supervised.pid("memory")
    os.kill(before, signal.SIGKILL)
    assert wait_for(lambda: supervised.pid("memory") not in (0, before), 30), supervised.ctl("status")
    assert wait_for(lambda: http_ok(f"{url}/health"), 60)
    listed = httpx.get(f"{url}/v1/memories", params={"limit": 100}, headers=scope, timeout=30).json()["data"]
    assert sorted(m["id"] for m in listed) == sorted(acknowledged)


def test_stopping_supervisord_stops_both_and_nothing_listens(supervised: Supervised) -> None:
    ports = [int(supervised.stack.litellm_url.rsplit(":", 1)[1]), int(supervised.stack.memory_url.rsplit(":", 1)[1])]
    programs = descendants(supervised.supervisord.popen.pid)
    assert programs
    supervised.ctl("shutdown")
    supervised.supervisord.popen.wait(90)
    time.sleep(1)
    assert not [p for p in ports if listening(p)]
    assert not [pid for pid in programs if Path(f"/proc/{pid}").exists()]


def test_under_honcho_the_same_kill_stops_the_whole_stack(tmp_path: Path) -> None:
    # The contrast README's "Run it all day" describes: honcho stops every line when one exits.
    stack = start_stack(tmp_path)
    try:
        honcho = stack.procs[-1]
        litellm = [pid for pid in descendants(honcho.popen.pid) if "/bin/litellm" in cmdline(pid)]
        assert litellm, "LiteLLM's process under honcho"
        os.kill(litellm[0], signal.SIGKILL)
        honcho.popen.wait(60)
        time.sleep(1)
        assert not listening(int(stack.memory_url.rsplit(":", 1)[1]))
        assert "stopped" in honcho.tail()
    finally:
        stack.stop()


def cmdline(pid: int) -> str:
    """A process's command line ('' once it is gone)."""
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""
