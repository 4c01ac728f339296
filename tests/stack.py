"""Starting the real stack for end-to-end tests: fake provider, LiteLLM and the memory proxy.

Processes come from the repository's own Procfile through `honcho start`, exactly as a user runs
them; only the provider at the far end is fake.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
MASTER_KEY = "test-master-key-canary-5f1d"
LITELLM_START_TIMEOUT = float(os.environ.get("E2E_LITELLM_START_TIMEOUT", "600"))


def free_port() -> int:
    """A currently free TCP port on loopback."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http_ok(url: str, timeout: float = 1.0) -> bool:
    """True when GET url answers 200."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            return resp.status == 200
    except OSError:
        return False


@dataclass
class Proc:
    """A started process group and its log file."""

    name: str
    popen: subprocess.Popen
    log: Path

    def tail(self, lines: int = 60) -> str:
        """The end of its log, for failure messages."""
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def stop(self, timeout: float = 15) -> None:
        """SIGTERM the process group and wait; then SIGKILL whatever is left, orphans included."""
        if self.popen.poll() is not None:
            return
        below = descendants(self.popen.pid)
        try:
            os.killpg(self.popen.pid, signal.SIGTERM)
            self.popen.wait(timeout)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            pass
        self._kill([self.popen.pid, *below])

    def kill(self) -> None:
        """kill -9 the process and every process below it at once, as a crash of the machine would."""
        self._kill([self.popen.pid, *descendants(self.popen.pid)])

    def _kill(self, pids: list[int]) -> None:
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.popen.wait(5)


def descendants(pid: int) -> list[int]:
    """Every process below pid: honcho starts each Procfile line in a session of its own, which a
    signal to honcho's process group does not reach."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            ppid = int(stat.read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(ppid, []).append(int(stat.parent.name))
    found, todo = [], [pid]
    while todo:
        below = children.get(todo.pop(), [])
        found += below
        todo += below
    return found


def spawn(name: str, args: list[str], env: dict[str, str], workdir: Path, cwd: Path = ROOT) -> Proc:
    """Start a process in its own group (in `cwd`, the repository by default), logging under workdir."""
    log = workdir / f"{name}.log"
    popen = subprocess.Popen(
        args,
        cwd=cwd,
        env=env,
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        start_new_session=True,
    )
    return Proc(name, popen, log)


def wait_until(check, proc: Proc, timeout: float, what: str) -> None:  # type: ignore[no-untyped-def]
    """Poll `check` until it passes; fail with the process log if it dies or times out."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        if proc.popen.poll() is not None:
            raise RuntimeError(f"{proc.name} exited ({proc.popen.returncode}) before {what}:\n{proc.tail()}")
        time.sleep(0.2)
    raise RuntimeError(f"timed out after {timeout:.0f}s waiting for {what}:\n{proc.tail()}")


def stack_config(provider_port: int, extra: dict | None = None) -> dict:
    """The shipped config.yaml with its models replaced by ones that reach the fake provider."""
    config = yaml.safe_load((ROOT / "config.yaml").read_text())
    base = f"http://127.0.0.1:{provider_port}"
    config["model_list"] = [m for m in config.get("model_list") or [] if m.get("model_name") == "demo"] + [
        {
            "model_name": "fake-model",
            "litellm_params": {"model": "openai/fake-model", "api_base": f"{base}/v1", "api_key": "fake"},
        },
        {
            "model_name": "claude-fake",
            "litellm_params": {"model": "anthropic/claude-fake", "api_base": base, "api_key": "fake"},
        },
        {
            "model_name": "claude-dated",
            "litellm_params": {"model": "anthropic/claude-dated", "api_base": base, "api_key": "fake"},
        },
        {
            "model_name": "sm-model",
            "litellm_params": {"model": "openai/sm-model", "api_base": f"{base}/supermemory.ai/v1", "api_key": "fake"},
        },
        {
            "model_name": "fake-embed",
            "litellm_params": {"model": "openai/fake-embed", "api_base": f"{base}/v1", "api_key": "fake"},
        },
    ]
    for key, value in (extra or {}).items():
        config[key] = value
    return config


@dataclass
class Stack:
    """A running stack: URLs and processes."""

    workdir: Path
    provider_url: str
    litellm_url: str
    memory_url: str
    env: dict[str, str]
    procs: list[Proc] = field(default_factory=list)

    def stop(self) -> None:
        """Stop every process, newest first."""
        for proc in reversed(self.procs):
            proc.stop()


def base_env(workdir: Path, **overrides: str) -> dict[str, str]:
    """The environment for stack processes: the caller's, minus provider keys and databases, plus overrides."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.endswith(("_API_KEY", "DATABASE_URL")) and not k.startswith("PYTEST") and k != "PORT"
    }
    env.update(
        MEMORY_ENV_FILE="",
        LITELLM_LOCAL_MODEL_COST_MAP="True",
        LITELLM_MASTER_KEY=MASTER_KEY,
        PYTHONUNBUFFERED="1",
        PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
    )
    env.update(overrides)
    return env


def write_env_file(path: Path, values: dict[str, str]) -> Path:
    """A honcho env file (it would otherwise read the developer's .env)."""
    path.write_text("".join(f"{k}={v}\n" for k, v in values.items()))
    return path


def start_memory(workdir: Path, name: str, config: dict, litellm_port: int, **env: str) -> tuple[Proc, str]:
    """Start only the Procfile's memory: line with its own config and database."""
    port = free_port()
    config_path = workdir / f"{name}.yaml"
    config_path.write_text(yaml.safe_dump(config, sort_keys=False))
    values = {
        "MEMORY_HOST": "127.0.0.1",
        "MEMORY_PORT": str(port),
        "LITELLM_PORT": str(litellm_port),
        "LITELLM_BASE_URL": f"http://127.0.0.1:{litellm_port}",
        "MEMORY_CONFIG": str(config_path),
        "MEMORY_DB": str(workdir / f"{name}.db"),
        **env,
    }
    env_file = write_env_file(workdir / f"{name}.env", values)
    proc = spawn(name, ["honcho", "start", "-e", str(env_file), "memory"], base_env(workdir, **values), workdir)
    url = f"http://127.0.0.1:{port}"
    wait_until(lambda: http_ok(f"{url}/health"), proc, 60, f"{name} /health")
    return proc, url


def stack_with_provider(workdir: Path, root: Path = ROOT) -> tuple[Stack, int, int, int]:
    """A Stack whose fake provider (from `root`'s tests) runs, with its port, LiteLLM's and the memory proxy's."""
    provider_port, litellm_port, memory_port = free_port(), free_port(), free_port()
    provider = spawn(
        "provider",
        [sys.executable, str(root / "tests" / "fake_provider.py"), "--port", str(provider_port)],
        base_env(workdir),
        workdir,
    )
    stack = Stack(
        workdir,
        f"http://127.0.0.1:{provider_port}",
        f"http://127.0.0.1:{litellm_port}",
        f"http://127.0.0.1:{memory_port}",
        {},
        [provider],
    )
    try:
        wait_until(lambda: http_ok(f"{stack.provider_url}/_requests"), provider, 30, "the fake provider")
    except BaseException:
        stack.stop()
        raise
    return stack, provider_port, litellm_port, memory_port


def start_stack(workdir: Path) -> Stack:
    """Fake provider + both Procfile lines through `honcho start`."""
    stack, provider_port, litellm_port, memory_port = stack_with_provider(workdir)
    try:
        config_path = workdir / "config.yaml"
        config_path.write_text(yaml.safe_dump(stack_config(provider_port), sort_keys=False))
        values = {
            "MEMORY_HOST": "127.0.0.1",
            "MEMORY_PORT": str(memory_port),
            "LITELLM_PORT": str(litellm_port),
            "LITELLM_BASE_URL": stack.litellm_url,
            "MEMORY_CONFIG": str(config_path),
            "MEMORY_DB": str(workdir / "memory.db"),
            "SUPERMEMORY_API_KEY": "sm-test-canary-key",
        }
        stack.env = values
        env_file = write_env_file(workdir / "stack.env", values)
        honcho = spawn("honcho", ["honcho", "start", "-e", str(env_file)], base_env(workdir, **values), workdir)
        stack.procs.append(honcho)
        wait_until(lambda: http_ok(f"{stack.memory_url}/health"), honcho, 60, "the memory proxy")
        wait_until(lambda: http_ok(f"{stack.litellm_url}/health/liveliness"), honcho, LITELLM_START_TIMEOUT, "LiteLLM")
    except BaseException:
        stack.stop()
        raise
    return stack


def start_keyed_memory(stack: Stack, workdir: Path, name: str, pinned_key: str, admin_key: str) -> tuple[Proc, str]:
    """A memory proxy on the stack's LiteLLM with a pinned (pycharm-ai) key and an admin key."""
    config = stack_config(int(stack.provider_url.rsplit(":", 1)[1]))
    config["auth"] = {
        "keys": [
            {"key": "os.environ/PYCHARM_PROXY_KEY", "user_id": "pycharm-ai"},
            {"key": "os.environ/ADMIN_PROXY_KEY", "admin": True},
        ]
    }
    litellm_port = int(stack.litellm_url.rsplit(":", 1)[1])
    return start_memory(workdir, name, config, litellm_port, PYCHARM_PROXY_KEY=pinned_key, ADMIN_PROXY_KEY=admin_key)


def repo_copy(dest: Path) -> Path:
    """A fresh copy of the repository's tracked files (as a platform checks it out) at dest."""
    listed = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True).stdout
    for name in filter(None, listed.decode().split("\0")):
        src = ROOT / name
        if src.is_file():  # a tracked file deleted in the working tree is not part of the copy
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / name)
    return dest
