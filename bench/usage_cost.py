"""What usage recording costs a chat: two memory proxies, usage records on and off, in one run.

Run by hand from the repository root (never in CI; loopback only, bounded):

    . .venv/bin/activate && python bench/usage_cost.py [--rounds 40] [--per-round 25]

Starts the lean fake provider (bench/fake_llm.py) and two memory proxies (the Procfile's uvicorn
line, each with its own SQLite store; `observability.usage.enabled` true in one, false in the other)
pointed straight at it, so that nothing but the proxy differs. Then it sends sequential chats,
alternating the two proxies round by round (ABAB…), for four kinds of chat (streamed or not,
memory on or `x-memory-mode: off`), and prints each proxy's median latency and the ratio of the
medians (on / off), then the CPU time each proxy process used per chat (its own threads included:
the usage writer's work is off the response path but not free). Both proxies count requests for
/metrics in either case; only usage differs.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import aiohttp
import orjson
import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.proxy_bench import cpu_secs  # noqa: E402
from tests.stack import free_port, http_ok  # noqa: E402

KINDS = [("plain", False, "on"), ("stream", True, "on"), ("plain, memory off", False, "off")]
KINDS.append(("stream, memory off", True, "off"))


def start(args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen:
    return subprocess.Popen(args, cwd=ROOT, env=env, stdout=log.open("wb"), stderr=subprocess.STDOUT)


def wait_ok(url: str, proc: subprocess.Popen, what: str) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if http_ok(url):
            return
        if proc.poll() is not None:
            raise SystemExit(f"{what} exited before it was ready")
        time.sleep(0.1)
    raise SystemExit(f"{what} did not come up")


def start_proxy(work: Path, name: str, provider: int, usage: bool) -> tuple[subprocess.Popen, str]:
    port = free_port()
    config = work / f"{name}.yaml"
    config.write_text(yaml.safe_dump({"observability": {"usage": {"enabled": usage}}}))
    env = {
        **os.environ,
        "MEMORY_ENV_FILE": "",
        "MEMORY_CONFIG": str(config),
        "MEMORY_DB": str(work / f"{name}.db"),
        "LITELLM_BASE_URL": f"http://127.0.0.1:{provider}",
        "MEMORY_LOG_LEVEL": "warning",
    }
    proc = start(
        [
            sys.executable,
            "-m",
            "uvicorn",
            "app.main:app",
            "--http",
            "app.slowclients:TimedHttpToolsProtocol",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--no-access-log",
            "--log-level",
            "warning",
        ],
        env,
        work / f"{name}.log",
    )
    url = f"http://127.0.0.1:{port}"
    wait_ok(f"{url}/health/liveness", proc, name)
    return proc, url


async def one(session: aiohttp.ClientSession, url: str, stream: bool, mode: str, i: int) -> float:
    body = {
        "model": "fake-model",
        "stream": stream,
        "messages": [{"role": "user", "content": f"bench turn {i} about deploys"}],
    }
    started = time.perf_counter()
    async with session.post(
        f"{url}/v1/chat/completions",
        data=orjson.dumps(body),
        headers={"content-type": "application/json", "x-memory-mode": mode},
    ) as r:
        await r.read()
        assert r.status == 200, r.status
    return (time.perf_counter() - started) * 1000


async def measure(
    urls: dict[str, str], pids: dict[str, int], rounds: int, per_round: int
) -> tuple[dict[tuple[str, str], list[float]], dict[str, float]]:
    times: dict[tuple[str, str], list[float]] = {(k, n): [] for k, _, _ in KINDS for n in urls}
    async with aiohttp.ClientSession() as session:
        for url in urls.values():  # warm-up: connections, first store writes
            for i in range(50):
                await one(session, url, i % 2 == 0, "on", i)
        cpu = {name: cpu_secs(pid) for name, pid in pids.items()}
        for r in range(rounds):
            order = list(urls.items()) if r % 2 == 0 else list(reversed(urls.items()))
            for name, url in order:
                for kind, stream, mode in KINDS:
                    for i in range(per_round):
                        times[(kind, name)].append(await one(session, url, stream, mode, r * per_round + i))
        await asyncio.sleep(0.5)  # the last usage batch is written
    chats = rounds * per_round * len(KINDS)
    return times, {name: (cpu_secs(pid) - cpu[name]) / chats * 1e6 for name, pid in pids.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=40)
    parser.add_argument("--per-round", type=int, default=25)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="usage-bench-"))
    provider_port = free_port()
    procs = [
        start([sys.executable, "bench/fake_llm.py", "--port", str(provider_port)], dict(os.environ), work / "fake.log")
    ]
    try:
        wait_ok(f"http://127.0.0.1:{provider_port}/v1/models", procs[0], "fake provider")
        urls, pids = {}, {}
        for name, usage in (("usage on", True), ("usage off", False)):
            proc, urls[name] = start_proxy(work, name, provider_port, usage)
            procs.append(proc)
            pids[name] = proc.pid
        times, cpu = asyncio.run(measure(urls, pids, args.rounds, args.per_round))
    finally:
        for proc in procs:
            proc.terminate()
            proc.wait(10)
    n = args.rounds * args.per_round
    print(f"{n} sequential chats per kind and proxy, rounds alternating, loopback, {os.cpu_count()} CPUs")
    print(f"{'kind':<20} {'usage on ms':>12} {'usage off ms':>13} {'ratio':>7}")
    for kind, _, _ in KINDS:
        on, off = statistics.median(times[(kind, "usage on")]), statistics.median(times[(kind, "usage off")])
        print(f"{kind:<20} {on:>12.3f} {off:>13.3f} {on / off:>7.3f}")
    on, off = cpu["usage on"], cpu["usage off"]
    print(f"{'CPU us per chat':<20} {on:>12.0f} {off:>13.0f} {on / off:>7.3f}")
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
