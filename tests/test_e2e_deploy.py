"""End-to-end deployment: LiteLLM and DATABASE_URL, the build step, a Procfile platform's two shapes,
several memory proxies on one PostgreSQL database, and a restart from a fresh copy of the repository."""

from __future__ import annotations

import asyncio
import shutil
import signal
import socket
import subprocess
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import orjson
import pytest
import yaml

from tests.backends import reset_schema
from tests.e2e import marker, oai, provider_calls, wait_for
from tests.stack import (
    LITELLM_START_TIMEOUT,
    MASTER_KEY,
    ROOT,
    Proc,
    base_env,
    free_port,
    http_ok,
    repo_copy,
    spawn,
    stack_config,
    start_memory,
    wait_until,
)

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(900)]

ADMIN_KEY = "admin-key-canary-9c2e"
PG_PASSWORD = "pg-password-canary-41d7"


@pytest.fixture
def pg_url(pg_database: str) -> str:
    """The test session's PostgreSQL database, emptied for this test."""
    asyncio.run(reset_schema(pg_database))
    return pg_database


def run(args: list[str], env: dict[str, str], timeout: float = 600, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    """Run a command to completion in `cwd` (the repository by default), capturing its output."""
    return subprocess.run(
        args, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL
    )


def port_of(url: str) -> int:
    """The port of a http://host:port URL."""
    return int(url.rsplit(":", 1)[1])


def start_litellm(workdir: Path, name: str, config: dict, **env: str) -> tuple[Proc, str]:
    """Start only the Procfile's litellm: line (LITELLM_HOST, LITELLM_PORT from env) and wait until it lives."""
    port = env.setdefault("LITELLM_PORT", str(free_port()))
    config_path = workdir / f"{name}.yaml"
    config_path.write_text(yaml.safe_dump(config, sort_keys=False))
    args = ["honcho", "start", "-f", "Procfile.platform", "litellm"]
    proc = spawn(name, args, base_env(workdir, MEMORY_CONFIG=str(config_path), **env), workdir)
    url = f"http://127.0.0.1:{port}"
    wait_until(lambda: http_ok(f"{url}/health/liveliness"), proc, LITELLM_START_TIMEOUT, f"{name} to live")
    return proc, url


# --- LiteLLM, DATABASE_URL and the build step -----------------------------------------------------


def test_platform_procfile_runs_the_same_processes_as_procfile() -> None:
    local = (ROOT / "Procfile").read_text().splitlines()
    platform = (ROOT / "Procfile.platform").read_text().splitlines()
    assert platform[0] == "web: bin/web"
    assert sorted(platform[1:]) == sorted(local)
    # honcho sets PORT for every line (5000, 5100, …): only the platform's web process may read it.
    assert not any("PORT}" in line.replace("_PORT", "") or "$PORT" in line for line in local)


def test_litellm_ignores_the_memory_stores_database_url(stack, tmp_path: Path) -> None:
    # LiteLLM would otherwise take it for its own database and stop at start for want of prisma.
    config = stack_config(port_of(stack.provider_url))
    proc, url = start_litellm(
        tmp_path, "litellm-dburl", config, DATABASE_URL=f"postgresql://memory:{PG_PASSWORD}@127.0.0.1:5432/memory"
    )
    try:
        m = marker()
        headers = {"authorization": f"Bearer {MASTER_KEY}"}
        body = {"model": "fake-model", "messages": [{"role": "user", "content": m}]}
        assert httpx.post(f"{url}/v1/chat/completions", json=body, headers=headers, timeout=30).status_code == 200
        assert provider_calls(stack, m)
    finally:
        proc.stop()
    assert "prisma" not in proc.tail(400).lower()


@pytest.fixture(scope="module")
def built_venv(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[subprocess.CompletedProcess]]:
    """A LiteLLM environment built twice by the buildpack hook, then moved (platforms build elsewhere)."""
    build = tmp_path_factory.mktemp("build") / "litellm-env"
    env = base_env(build.parent, LITELLM_VENV=str(build))
    runs = [run([str(ROOT / "bin" / "post_compile")], env) for _ in range(2)]
    moved = tmp_path_factory.mktemp("app") / "litellm-env"
    if build.exists():
        shutil.move(build, moved)
    return moved, runs


def test_install_only_builds_once_then_boot_downloads_nothing(built_venv, tmp_path: Path) -> None:
    venv, (first, second) = built_venv
    assert first.returncode == 0, first.stderr
    assert "installing litellm[proxy]==" in first.stderr
    assert second.returncode == 0, second.stderr
    assert "installing" not in second.stderr and "is ready" in second.stderr
    # Boot from the moved environment with uv offline and every proxy dead: nothing is fetched.
    offline = {"UV_OFFLINE": "1", **{k: "http://127.0.0.1:9" for k in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY")}}
    config = {"model_list": [m for m in stack_config(9)["model_list"] if m["model_name"] == "demo"]}
    proc, url = start_litellm(tmp_path, "litellm-offline", config, LITELLM_VENV=str(venv), NO_PROXY="", **offline)
    try:
        headers = {"authorization": f"Bearer {MASTER_KEY}"}
        body = {"model": "demo", "messages": [{"role": "user", "content": "hi"}]}
        reply = httpx.post(f"{url}/v1/chat/completions", json=body, headers=headers, timeout=30)
        assert reply.status_code == 200 and "demo model" in reply.text
    finally:
        proc.stop()
    assert "installing" not in proc.tail(400)


def test_litellm_database_url_without_prisma_says_what_to_install(built_venv, tmp_path: Path) -> None:
    venv, _ = built_venv
    env = base_env(
        tmp_path,
        LITELLM_VENV=str(venv),
        LITELLM_DATABASE_URL=f"postgresql://litellm:{PG_PASSWORD}@127.0.0.1:5432/litellm",
        UV_OFFLINE="1",
        UV_CACHE_DIR=str(tmp_path / "empty-uv-cache"),
    )
    done = run([str(ROOT / "bin" / "litellm-proxy"), "--host", "127.0.0.1", "--port", str(free_port())], env)
    assert done.returncode == 1
    assert "LITELLM_DATABASE_URL is set, so LiteLLM needs the prisma package" in done.stderr
    assert "--install-only" in done.stderr and "extra_proxy" in done.stderr
    assert PG_PASSWORD not in done.stdout + done.stderr


def test_litellm_database_url_at_build_installs_prisma_once(tmp_path: Path) -> None:
    venv = tmp_path / "litellm-env"
    url = f"postgresql://litellm:{PG_PASSWORD}@127.0.0.1:5432/litellm"
    env = base_env(tmp_path, LITELLM_VENV=str(venv), LITELLM_DATABASE_URL=url)
    first, second = (run([str(ROOT / "bin" / "litellm-proxy"), "--install-only"], env) for _ in range(2))
    assert first.returncode == 0, first.stderr
    assert "installing LiteLLM's database support (prisma==" in first.stderr
    assert (venv / "bin" / "prisma").is_file()
    assert second.returncode == 0 and "installing" not in second.stderr, second.stderr
    assert PG_PASSWORD not in first.stdout + first.stderr + second.stdout + second.stderr


@pytest.mark.parametrize("host", ["0.0.0.0", "192.0.2.10"])
def test_litellm_off_loopback_without_master_key_refuses_to_start(tmp_path: Path, host: str) -> None:
    env = base_env(tmp_path, LITELLM_HOST=host, LITELLM_PORT=str(free_port()), LITELLM_MASTER_KEY="")
    done = run(["honcho", "start", "-f", "Procfile.platform", "litellm"], env, timeout=120)
    assert done.returncode != 0
    assert f"refusing to start: LiteLLM would listen on {host}" in done.stdout
    assert "Set LITELLM_MASTER_KEY" in done.stdout


def test_web_needs_port(tmp_path: Path) -> None:
    done = run([str(ROOT / "bin" / "web")], base_env(tmp_path), timeout=30)
    assert done.returncode != 0 and "PORT" in done.stderr


# --- a Procfile platform --------------------------------------------------------------------------


def platform_config(provider_port: int) -> dict:
    """The stack's test config with the keys a public address needs."""
    return stack_config(provider_port, {"auth": {"keys": [{"key": "os.environ/ADMIN_PROXY_KEY", "admin": True}]}})


def start_web(workdir: Path, name: str, cwd: Path, **env: str) -> tuple[Proc, str]:
    """Play the platform: run Procfile.platform's web: line with a PORT, as the platform does."""
    port = free_port()
    values = base_env(workdir, PORT=str(port), ADMIN_PROXY_KEY=ADMIN_KEY, **env)
    if "MEMORY_DB" not in env:  # the test run's own SQLite file: a platform has only DATABASE_URL
        del values["MEMORY_DB"]
    proc = spawn(name, ["honcho", "start", "-f", "Procfile.platform", "web"], values, workdir, cwd=cwd)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_ready(url, proc)
    except BaseException:
        proc.stop()
        raise
    return proc, url


def admin(**headers: str) -> dict[str, str]:
    """Headers for the admin key."""
    return {"authorization": f"Bearer {ADMIN_KEY}", **headers}


def wait_ready(url: str, proc: Proc) -> None:
    """Wait until /health/readiness says LiteLLM and the store both work; fail at once if the store cannot open."""

    def ready() -> bool:
        if http_ok(f"{url}/health/readiness"):
            return True
        try:
            store = httpx.get(f"{url}/health", headers=admin(), timeout=5).json()["memory_store"]
        except httpx.TransportError:  # not listening yet
            return False
        assert store["status"] != "unavailable", f"{proc.name}: the memory store did not open:\n{proc.tail()}"
        return False

    wait_until(ready, proc, LITELLM_START_TIMEOUT, f"{proc.name} ready")


def own_address() -> str:
    """This machine's address on its outgoing interface (not loopback), else 127.0.0.1."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.connect(("192.0.2.1", 9))  # UDP: no packet is sent; this only picks the interface
            return s.getsockname()[0]
        except OSError:
            return "127.0.0.1"


def test_separate_process_types_litellm_off_loopback(stack, tmp_path: Path) -> None:
    # LiteLLM is its own process type bound to LITELLM_HOST; web runs only the memory proxy and
    # reaches LiteLLM at LITELLM_BASE_URL.
    config = platform_config(port_of(stack.provider_url))
    litellm, local_url = start_litellm(tmp_path, "litellm-public", config, LITELLM_HOST="0.0.0.0")
    config_path = tmp_path / "web.yaml"
    config_path.write_text(yaml.safe_dump(config, sort_keys=False))
    litellm_url = f"http://{own_address()}:{port_of(local_url)}"
    try:
        web, url = start_web(
            tmp_path,
            "web-separate",
            ROOT,
            LITELLM_BASE_URL=litellm_url,
            LITELLM_MASTER_KEY=MASTER_KEY,
            MEMORY_CONFIG=str(config_path),
            MEMORY_DB=str(tmp_path / "memory.db"),
        )
        try:
            m = marker()
            oai(url, ADMIN_KEY).chat.completions.create(model="fake-model", messages=[{"role": "user", "content": m}])
            assert provider_calls(stack, m)
        finally:
            web.stop()
    finally:
        litellm.stop()
    assert "memory.1" in web.tail(400) and "litellm.1" not in web.tail(400)


def test_platform_restart_from_fresh_copies_keeps_every_memory(stack, pg_url: str, tmp_path: Path) -> None:
    # Only environment variables: PORT (set by honcho start, like the platform), DATABASE_URL and keys.
    provider_port = port_of(stack.provider_url)
    config = platform_config(provider_port)
    m = marker()
    scope = f"platform-{m}"
    facts = [f"platform fact {i} {m}" for i in range(5)]
    # The server trusts loopback: the password is ignored, and must never be shown.
    database_url = pg_url.replace("postgres@", f"postgres:{PG_PASSWORD}@")
    # LITELLM_PORT only because other stacks may run on this machine; UV_OFFLINE: boot fetches nothing.
    env = {"DATABASE_URL": database_url, "LITELLM_MASTER_KEY": MASTER_KEY, "UV_OFFLINE": "1"}
    env["LITELLM_PORT"] = str(free_port())

    def boot(n: int) -> tuple[Proc, str, Path]:
        copy = repo_copy(tmp_path / f"copy{n}")
        (copy / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))  # the deployer's config
        build = run(["bin/post_compile"], base_env(tmp_path), cwd=copy)
        assert build.returncode == 0, build.stderr
        proc, url = start_web(tmp_path, f"web{n}", copy, **env)
        return proc, url, copy

    proc, url, copy = boot(1)
    try:
        for fact in facts[:3]:
            r = httpx.post(f"{url}/v1/memories", json={"content": fact, "user_id": scope}, headers=admin(), timeout=10)
            assert r.status_code == 201, r.text
        for fact in facts[3:]:
            oai(url, ADMIN_KEY, **{"x-memory-user-id": scope}).chat.completions.create(
                model="fake-model", messages=[{"role": "user", "content": fact}]
            )
        assert wait_for(lambda: set(facts) <= set(stored(url, scope)), timeout=20), stored(url, scope)
    finally:
        proc.stop()
    shutil.rmtree(copy)

    proc, url, copy = boot(2)
    try:
        assert set(facts) <= set(stored(url, scope))
        raw = oai(url, ADMIN_KEY, **{"x-memory-user-id": scope}).chat.completions.with_raw_response.create(
            model="fake-model", messages=[{"role": "user", "content": f"platform fact 4 again {m}"}]
        )
        assert int(raw.headers["x-memory-injected"]) >= 1
        health = httpx.get(f"{url}/health", headers=admin(), timeout=10).json()
        assert health["memory_store"]["status"] == "ok" and PG_PASSWORD not in str(health)
    finally:
        proc.stop()
    logs = (tmp_path / "web1.log").read_text(errors="replace") + (tmp_path / "web2.log").read_text(errors="replace")
    assert MASTER_KEY not in logs and ADMIN_KEY not in logs and PG_PASSWORD not in logs


def stored(url: str, scope: str) -> list[str]:
    """Every memory's content in a scope, through the memory API's export (admin key where keys are set)."""
    r = httpx.get(f"{url}/v1/memories/export", params={"user_id": scope}, headers=admin(), timeout=30)
    assert r.status_code == 200, r.text
    return [orjson.loads(line)["content"] for line in r.content.splitlines()]


# --- several instances on one PostgreSQL database ---------------------------------------------------


@pytest.fixture
def pair(stack, pg_url: str, tmp_path: Path) -> Iterator[tuple[str, str]]:
    """Two memory proxy processes on one LiteLLM and one PostgreSQL database, started together."""
    config = stack_config(port_of(stack.provider_url))
    litellm_port = port_of(stack.litellm_url)
    with ThreadPoolExecutor(2) as pool:
        started = list(
            pool.map(lambda n: start_memory(tmp_path, n, config, litellm_port, MEMORY_DB=pg_url), ["pg-a", "pg-b"])
        )
    try:
        for proc, url in started:
            wait_ready(url, proc)
        yield started[0][1], started[1][1]
    finally:
        for proc, _ in started:
            proc.stop()


def listed(url: str, scope: str) -> list[str]:
    """A scope's memory contents through one instance's list endpoint."""
    r = httpx.get(f"{url}/v1/memories", params={"user_id": scope, "limit": 100}, timeout=10)
    assert r.status_code == 200, r.text
    return sorted(x["content"] for x in r.json()["data"])


def test_fact_captured_through_one_instance_is_recalled_through_the_other(stack, pair) -> None:
    a, b = pair
    m = marker()
    scope = f"pair-{m}"
    fact = f"The staging database lives in Frankfurt {m}"
    oai(a, **{"x-memory-user-id": scope}).chat.completions.create(
        model="fake-model", messages=[{"role": "user", "content": fact}]
    )
    assert wait_for(lambda: fact in listed(b, scope))
    raw = oai(b, **{"x-memory-user-id": scope}).chat.completions.with_raw_response.create(
        model="fake-model", messages=[{"role": "user", "content": f"Where does the staging database live? q{m}"}]
    )
    assert int(raw.headers["x-memory-injected"]) >= 1
    (call,) = provider_calls(stack, f"q{m}")
    assert "Frankfurt" in call["body"]["messages"][-2]["content"]


def test_forget_through_one_instance_is_seen_by_the_other_at_once(pair) -> None:
    a, b = pair
    m = marker()
    scope = f"forget-{m}"
    for i in range(3):
        r = httpx.post(f"{a}/v1/memories", json={"content": f"note {i} {m}", "user_id": scope}, timeout=10)
        assert r.status_code == 201, r.text
    assert len(listed(b, scope)) == 3
    one = httpx.get(f"{b}/v1/memories", params={"user_id": scope, "limit": 1}, timeout=10).json()["data"][0]
    assert httpx.delete(f"{b}/v1/memories/{one['id']}", params={"user_id": scope}, timeout=10).status_code == 204
    assert one["content"] not in listed(a, scope) and len(listed(a, scope)) == 2
    forgot = httpx.delete(f"{a}/v1/memories", params={"user_id": scope}, timeout=10)
    assert forgot.status_code == 200 and forgot.json() == {"deleted": 2}
    assert listed(b, scope) == []
    found = httpx.get(f"{b}/v1/memories/search", params={"user_id": scope, "q": "note"}, timeout=10).json()["data"]
    assert found == []


def test_same_history_sent_through_both_instances_at_once_is_stored_once(pair) -> None:
    a, b = pair
    m = marker()
    scope = f"dup-{m}"
    rounds = 8
    history = [
        {"role": "user", "content": f"first turn {m}"},
        {"role": "assistant", "content": f"Fake reply to: first turn {m}"},
    ]

    def send(url: str, k: int, barrier: threading.Barrier) -> None:
        messages = [*history, {"role": "user", "content": f"turn {k} {m}"}]
        barrier.wait()
        oai(url, **{"x-memory-user-id": scope, "x-memory-mode": "write"}).chat.completions.create(
            model="fake-model", messages=messages
        )

    for k in range(rounds):
        barrier = threading.Barrier(2)
        with ThreadPoolExecutor(2) as pool:
            list(pool.map(lambda u, k=k, bar=barrier: send(u, k, bar), [a, b]))
    expected = sorted(f"{prefix}turn {k} {m}" for k in range(rounds) for prefix in ("", "Fake reply to: "))

    def drained() -> bool:
        return all(httpx.get(f"{u}/health", timeout=10).json()["memory_store"]["pending_writes"] == 0 for u in pair)

    assert wait_for(drained)
    assert wait_for(lambda: listed(a, scope) == expected), listed(a, scope)
    assert listed(b, scope) == expected


def test_kill_9_during_a_write_burst_loses_no_acknowledged_write(stack, pair, pg_url: str, tmp_path: Path) -> None:
    _, b = pair
    config = stack_config(port_of(stack.provider_url))
    victim, url = start_memory(tmp_path, "pg-victim", config, port_of(stack.litellm_url), MEMORY_DB=pg_url)
    m = marker()
    scope = f"burst-{m}"
    acknowledged: list[str] = []
    lock = threading.Lock()

    def writer(w: int) -> None:
        with httpx.Client(timeout=10) as client:
            for i in range(10_000):
                content = f"burst {w} {i} {m}"
                try:
                    r = client.post(f"{url}/v1/memories", json={"content": content, "user_id": scope})
                except httpx.HTTPError:
                    return
                if r.status_code == 201:
                    with lock:
                        acknowledged.append(content)

    threads = [threading.Thread(target=writer, args=(w,)) for w in range(8)]
    for t in threads:
        t.start()
    assert wait_for(lambda: len(acknowledged) >= 200, timeout=60)
    victim.kill()
    for t in threads:
        t.join(30)
    assert victim.popen.returncode == -signal.SIGKILL and not http_ok(f"{url}/health")
    kept = set(stored(b, scope))
    lost = [c for c in acknowledged if c not in kept]
    assert not lost, f"{len(lost)} of {len(acknowledged)} acknowledged writes lost, e.g. {lost[:3]}"
