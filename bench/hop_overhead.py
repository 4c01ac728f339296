"""What the proxy hop alone costs: a fast fake provider directly vs through the memory proxy.

No LiteLLM: the memory proxy's LITELLM_BASE_URL points straight at bench/fake_llm.py, so the
difference between the two paths is the proxy (its HTTP parsing, routing, upstream client and
memory step). Run by hand: `python bench/hop_overhead.py [--rounds 5] [--requests 300]`.

`--db STORE --scope NAME` measures the memory step over a large scope instead: a copy of a store
built by bench/proxy_bench.py (e.g. bench/out/store-200000-v2.db, scope bench-100k), each question
six of its Zipf words (proxy_bench's TextGen), memory off, read (recall only), write (capture only)
and on (recall and capture, into the scope it recalls from).
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
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp

ROOT = Path(__file__).resolve().parent.parent
BODY = {"model": "fake-model", "messages": [{"role": "user", "content": "hello there, how are the deploys going"}]}


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


Questions = Callable[[], dict[str, Any]]


async def p50(session: aiohttp.ClientSession, url: str, n: int, headers: dict[str, str], body: Questions) -> float:
    lat = []
    for _ in range(n):
        started = time.perf_counter()
        async with session.post(url, json=body(), headers=headers) as r:
            await r.read()
        lat.append((time.perf_counter() - started) * 1000)
    return statistics.median(lat)


async def wait_up(session: aiohttp.ClientSession, url: str) -> None:
    for _ in range(200):
        try:
            async with session.get(url) as r:
                if r.status < 500:
                    return
        except aiohttp.ClientError:
            pass
        await asyncio.sleep(0.05)
    raise RuntimeError(f"{url} did not come up")


async def measure(
    direct: str, proxied: str, health: str, rounds: int, requests: int, scope: str, body: Questions
) -> None:
    async with aiohttp.ClientSession() as session:
        await wait_up(session, health)
        await p50(session, direct, 50, {}, body)
        print("| memory | direct p50 ms | proxied p50 ms | added ms |\n|---|---:|---:|---:|")
        for mode in ("off", "read", "write", "on"):
            headers = {"x-memory-mode": mode, "x-memory-user-id": scope}
            await p50(session, proxied, 50, headers, body)
            pairs = [
                (
                    await p50(session, direct, requests, {}, body),
                    await p50(session, proxied, requests, headers, body),
                )
                for _ in range(rounds)
            ]
            d, p = statistics.median(x for x, _ in pairs), statistics.median(y for _, y in pairs)
            print(f"| {mode} | {d:.3f} | {p:.3f} | {p - d:+.3f} |")


def questions(db: Path | None) -> Questions:
    """The request bodies: one fixed question, or (with a bench store) six Zipf words of its text each time."""
    if db is None:
        return lambda: BODY
    sys.path.insert(0, str(ROOT / "bench"))
    from proxy_bench import TextGen

    gen = TextGen()
    return lambda: {**BODY, "messages": [{"role": "user", "content": gen.query(6)}]}


def main(rounds: int, requests: int, db: Path | None, scope: str) -> None:
    fake_port, proxy_port = free_port(), free_port()
    tmp = tempfile.mkdtemp()
    if db is not None:
        shutil.copyfile(db, f"{tmp}/memory.db")
    env = dict(
        os.environ,
        MEMORY_ENV_FILE="",
        MEMORY_DB=f"{tmp}/memory.db",
        MEMORY_CONFIG=str(ROOT / "config.yaml"),
        LITELLM_BASE_URL=f"http://127.0.0.1:{fake_port}",
        MEMORY_LOG_LEVEL="warning",
    )
    uvicorn = [sys.executable, "-m", "uvicorn", "app.main:app", "--port", str(proxy_port), "--no-access-log"]
    procs = [
        subprocess.Popen([sys.executable, "bench/fake_llm.py", "--port", str(fake_port)], cwd=ROOT),
        subprocess.Popen([*uvicorn, "--log-level", "warning"], cwd=ROOT, env=env),
    ]
    try:
        asyncio.run(
            measure(
                f"http://127.0.0.1:{fake_port}/v1/chat/completions",
                f"http://127.0.0.1:{proxy_port}/v1/chat/completions",
                f"http://127.0.0.1:{proxy_port}/health",
                rounds,
                requests,
                scope,
                questions(db),
            )
        )
    finally:
        for proc in procs:
            proc.terminate()
            proc.wait(10)
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--db", type=Path, help="a store built by bench/proxy_bench.py (copied first)")
    parser.add_argument("--scope", default="hop", help="the scope to ask in (default: %(default)s)")
    args = parser.parse_args()
    main(args.rounds, args.requests, args.db, args.scope)
