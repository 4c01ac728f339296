"""What an MCP tool call costs beside the memory API call it wraps.

Starts one memory proxy (no LiteLLM: nothing here reaches it) on a fresh SQLite store, fills one
scope with notes, then times, one request at a time: `GET /v1/memories/search` against MCP
`tools/call search` with the same question and limit, `POST /v1/memories` against `remember`, and
MCP `tools/list`. Each MCP call is one stateless POST with a JSON answer, as a client sends it
after initializing. Run by hand: `python bench/mcp_cost.py [--requests 300] [--notes 2000]`.
"""

from __future__ import annotations

import argparse
import asyncio
import os
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
sys.path.insert(0, str(ROOT / "bench"))
from hop_overhead import free_port, wait_up  # noqa: E402

MCP_HEADERS = {
    "accept": "application/json, text/event-stream",
    "content-type": "application/json",
    "mcp-protocol-version": "2025-11-25",
}
WORDS = "deploy staging database migration cache latency budget review release rollback".split()


def rpc(method: str, params: dict[str, Any]) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": 1, "method": method, "params": params}


async def timed(call: Callable[[], Any], n: int) -> tuple[float, float]:
    """(p50, p95) in ms of `n` sequential calls."""
    lat = []
    for _ in range(n):
        started = time.perf_counter()
        await call()
        lat.append((time.perf_counter() - started) * 1000)
    lat.sort()
    return statistics.median(lat), lat[int(len(lat) * 0.95) - 1]


def main(args: argparse.Namespace) -> None:
    """Start the proxy on a fresh store, measure, stop it."""
    port = free_port()
    with tempfile.TemporaryDirectory() as tmp:
        config = Path(tmp) / "config.yaml"
        config.write_text("memory:\n  enabled: true\n")
        env = {
            **os.environ,
            "MEMORY_ENV_FILE": "",
            "MEMORY_CONFIG": str(config),
            "MEMORY_DB": str(Path(tmp) / "memory.db"),
            "LITELLM_BASE_URL": f"http://127.0.0.1:{free_port()}",
            "MEMORY_LOG_LEVEL": "warning",
        }
        argv = [sys.executable, "-m", "uvicorn", "app.main:app", "--port", str(port), "--log-level", "warning"]
        proc = subprocess.Popen(argv, cwd=ROOT, env=env)
        try:
            asyncio.run(measure(f"http://127.0.0.1:{port}", args))
        finally:
            proc.terminate()
            proc.wait(timeout=15)


async def measure(url: str, args: argparse.Namespace) -> None:
    """Fill a scope, then time each case one request at a time."""
    async with aiohttp.ClientSession() as session:
        await wait_up(session, f"{url}/health")
        notes = "".join(
            f'{{"user_id": "bench", "content": "note {i}: {WORDS[i % 10]} {WORDS[(i * 7) % 10]} {i}"}}\n'
            for i in range(args.notes)
        )
        async with session.post(f"{url}/v1/memories/import", data=notes) as r:
            assert r.status == 200, await r.text()
        steer = {"x-memory-user-id": "bench"}
        counter = iter(range(10**9))

        async def get(path: str, params: dict[str, str]) -> None:
            async with session.get(f"{url}{path}", params=params, headers=steer) as r:
                assert r.status == 200, await r.text()
                await r.read()

        async def post(path: str, body: dict[str, Any], headers: dict[str, str]) -> None:
            async with session.post(f"{url}{path}", json=body, headers={**steer, **headers}) as r:
                assert r.status in (200, 201), await r.text()
                data = await r.read()
                assert b'"isError":true' not in data, data

        question = "staging database migration"
        search_args = {"question": question, "limit": 10}
        cases: list[tuple[str, Callable[[], Any]]] = [
            ("REST search", lambda: get("/v1/memories/search", {"q": question, "limit": "10"})),
            (
                "MCP search",
                lambda: post("/mcp", rpc("tools/call", {"name": "search", "arguments": search_args}), MCP_HEADERS),
            ),
            ("REST add", lambda: post("/v1/memories", {"content": f"rest note {next(counter)}"}, {})),
            (
                "MCP remember",
                lambda: post(
                    "/mcp",
                    rpc("tools/call", {"name": "remember", "arguments": {"text": f"mcp note {next(counter)}"}}),
                    MCP_HEADERS,
                ),
            ),
            ("MCP tools/list", lambda: post("/mcp", rpc("tools/list", {}), MCP_HEADERS)),
        ]
        for name, call in cases:
            await timed(call, 20)  # warm-up
            p50, p95 = await timed(call, args.requests)
            print(f"{name:16} p50 {p50:6.2f} ms   p95 {p95:6.2f} ms")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--notes", type=int, default=2000)
    main(parser.parse_args())
