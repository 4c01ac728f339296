"""End-to-end: the memory store's PostgreSQL server restarts under chat traffic.

The test runs a private PostgreSQL server of its own on a free port (never the shared one), stops
it while chats go through the real stack, and starts it again."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from tests.e2e import marker, wait_for, writer_idle
from tests.stack import Stack, free_port, stack_config, start_memory

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(600)]

PG_BIN = Path("/usr/lib/postgresql/15/bin")
SCOPE = "pg-restart"


@dataclass
class PrivateServer:
    """A PostgreSQL server in a temporary directory, run by the `postgres` user when we are root."""

    root: Path
    port: int

    def run(self, *args: str) -> None:
        """pg_ctl/initdb as the server's owner."""
        cmd = [str(PG_BIN / args[0]), *args[1:]]
        if os.geteuid() == 0:  # PostgreSQL refuses to run as root
            cmd = ["runuser", "-u", "postgres", "--", *cmd]
        subprocess.run(cmd, check=True, capture_output=True, timeout=60)

    def start(self) -> None:
        options = f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1"
        self.run("pg_ctl", "-D", str(self.root / "data"), "-o", options, "-l", str(self.root / "log"), "-w", "start")

    def stop(self) -> None:
        self.run("pg_ctl", "-D", str(self.root / "data"), "-m", "fast", "-w", "stop")

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"


@pytest.fixture
def private_pg() -> Iterator[PrivateServer]:
    if not (PG_BIN / "pg_ctl").is_file():
        if os.environ.get("CI") == "true":
            pytest.fail(f"PostgreSQL 15's server binaries are required under CI=true ({PG_BIN})")
        pytest.skip(f"no PostgreSQL server binaries in {PG_BIN}")
    # Not under pytest's tmp_path: its parents are root's own (0700), which the postgres user cannot enter.
    root = Path(tempfile.mkdtemp(prefix="memory-proxy-pg-"))
    if os.geteuid() == 0:
        shutil.chown(root, "postgres")
    server = PrivateServer(root, free_port())
    server.run("initdb", "-D", str(root / "data"), "-A", "trust", "-U", "postgres")
    server.start()
    try:
        yield server
    finally:
        try:
            server.stop()
        except subprocess.CalledProcessError:
            pass  # already stopped
        shutil.rmtree(root, ignore_errors=True)


@dataclass
class Traffic:
    """Chats sent one after another from a thread until stopped: what each got back."""

    url: str
    replies: list[tuple[str, int, str | None]] = field(default_factory=list)  # (marker, status, x-memory-error)
    running: threading.Event = field(default_factory=threading.Event)

    def run(self) -> None:
        with httpx.Client(timeout=60) as client:
            while self.running.is_set():
                m = marker()
                body = {"model": "fake-model", "messages": [{"role": "user", "content": f"remember the code {m}"}]}
                r = client.post(f"{self.url}/v1/chat/completions", json=body, headers={"x-memory-user-id": SCOPE})
                self.replies.append((m, r.status_code, r.headers.get("x-memory-error")))
                time.sleep(0.05)


def health(url: str) -> dict:
    return httpx.get(f"{url}/health", timeout=30).json()


def test_a_postgres_restart_under_traffic_costs_no_chat_and_no_memory(
    stack: Stack, private_pg: PrivateServer, tmp_path: Path
) -> None:
    config = stack_config(int(stack.provider_url.rsplit(":", 1)[1]))
    litellm_port = int(stack.litellm_url.rsplit(":", 1)[1])
    proc, url = start_memory(tmp_path, "pg-restart", config, litellm_port, MEMORY_DB=private_pg.url)
    traffic = Traffic(url)
    traffic.running.set()
    thread = threading.Thread(target=traffic.run, daemon=True)
    try:
        assert health(url)["status"] == "healthy"
        thread.start()
        assert wait_for(lambda: len(traffic.replies) >= 10, 60)

        private_pg.stop()
        down_at, down_since = len(traffic.replies), time.monotonic()
        # down for 5 s at least, as a managed database's restart or failover is
        assert wait_for(lambda: len(traffic.replies) >= down_at + 10 and time.monotonic() - down_since > 5, 60)
        while_down = health(url)
        private_pg.start()
        up_at = len(traffic.replies)

        assert wait_for(lambda: health(url)["status"] == "healthy", 60), health(url)
        assert wait_for(lambda: len(traffic.replies) >= up_at + 20, 60)
        traffic.running.clear()
        thread.join(60)
        assert wait_for(lambda: writer_idle(url), 60)
        after = health(url)
        listed = httpx.get(
            f"{url}/v1/memories", params={"limit": 1000}, headers={"x-memory-user-id": SCOPE}, timeout=30
        ).json()["data"]
    finally:
        traffic.running.clear()
        proc.stop()

    assert while_down["status"] == "degraded" and while_down["memory_store"]["status"] == "error", while_down
    assert [r for r in traffic.replies if r[1] != 200] == []  # no chat lost
    failed_soft = [r for r in traffic.replies[down_at:up_at] if r[2]]
    assert failed_soft, "memory steps while the server was down should say x-memory-error"
    assert all(r[2] is None for r in traffic.replies[-10:]), traffic.replies[-10:]  # the pool reconnected
    assert after["status"] == "healthy" and after["memory_store"]["dropped"] == 0, after
    stored = "\n".join(m["content"] for m in listed)
    lost = [m for m, _, _ in traffic.replies if m not in stored]
    assert lost == [], f"{len(lost)} of {len(traffic.replies)} captured chats are missing"
