"""Store search latency with 100k memories in one scope, on SQLite and on PostgreSQL.

Run by hand from the repository root (needs `pip install -r bench/requirements.txt`):

    python bench/store_search.py [--db postgresql://postgres@127.0.0.1:5432/DB] [--db /tmp/x.db] ...

Each `--db` (default: a temporary SQLite file and a temporary database on the local PostgreSQL
server, both removed afterwards) gets the same data: `--rows` memories in scope bench-100k plus
as many again spread over 99 other scopes, Zipf-distributed pseudo-words (proxy_bench's TextGen),
written with the store's own add_many in 5,000-row batches. Then `--queries` 4-word questions
run one at a time through the store interface: `search` (limit 5, the memory API's search) and
`recall` (limit 20, what a chat reads: the matches, the turns around them, the word counts); the
table gives p50/p95/p99 in milliseconds of each, the build rate and the store's size on disk.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import asyncpg

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))
from proxy_bench import TextGen  # noqa: E402

from app.store import NewMemory, open_store  # noqa: E402

SERVER = "postgresql://postgres@127.0.0.1:5432"
SCOPE = "bench-100k"
BATCH = 5000


async def build(url: str, rows: int) -> float:
    """Fill the store; returns rows per second."""
    gen = TextGen()
    store = await open_store(url)
    t0 = time.perf_counter()
    try:
        plan = [SCOPE] * rows + [f"bench-other-{i % 99}" for i in range(rows)]
        at = 1.7e9
        for start in range(0, len(plan), BATCH):
            chunk = plan[start : start + BATCH]
            texts = gen.texts(len(chunk), 6, 60)
            await store.add_many(
                [NewMemory(s, "user" if i % 2 else "assistant", texts[i], at + start + i) for i, s in enumerate(chunk)]
            )
            print(f"\r  {url.rpartition('/')[2]}: {start + len(chunk):,} rows", end="", flush=True)
        print()
    finally:
        await store.close()
    return 2 * rows / (time.perf_counter() - t0)


async def measure(url: str, queries: int) -> tuple[list[float], list[float], int]:
    """Search and recall latencies (ms) over the same questions, and the store's size on disk in bytes."""
    gen = TextGen()  # the data's vocabulary (it depends on the seed)
    questions = [gen.query(4) for _ in range(queries + 50)]
    store = await open_store(url)
    try:
        for q in questions[:50]:  # warm caches
            await store.search(SCOPE, q, 5)
            await store.recall(SCOPE, q, 20)
        search, recall = [], []
        for q in questions[50:]:
            t0 = time.perf_counter()
            await store.search(SCOPE, q, 5)
            t1 = time.perf_counter()
            await store.recall(SCOPE, q, 20)
            search.append((t1 - t0) * 1000)
            recall.append((time.perf_counter() - t1) * 1000)
        return search, recall, (await store.stats())["bytes"]
    finally:
        await store.close()


async def run(urls: list[str], rows: int, queries: int, built: bool) -> None:
    made: list[str] = []
    tmp = tempfile.TemporaryDirectory()
    if not urls:
        name = f"memory_search_bench_{os.getpid()}"
        admin = await asyncpg.connect(f"{SERVER}/postgres")
        await admin.execute(f'CREATE DATABASE "{name}"')
        await admin.close()
        made.append(name)
        urls = [os.path.join(tmp.name, "bench.db"), f"{SERVER}/{name}"]
    try:
        print(f"{rows:,} memories in {SCOPE} (+{rows:,} in 99 other scopes); {queries} 4-word queries, limit 5")
        results = []
        for url in urls:
            rate = 0.0 if built else await build(url, rows)
            search, recall, size = await measure(url, queries)
            name = "postgresql" if url.startswith("postgres") else "sqlite"
            for call, lat in (("search", search), ("recall", recall)):
                q = statistics.quantiles(lat, n=100)
                results.append((name, call, rate, size / 1e6, q[49], q[94], q[98]))
        print(f"{'backend':<12}{'call':<8}{'build rows/s':>13}{'MB':>8}{'p50 ms':>8}{'p95 ms':>8}{'p99 ms':>8}")
        for name, call, rate, mb, p50, p95, p99 in results:
            print(f"{name:<12}{call:<8}{rate:>13,.0f}{mb:>8,.0f}{p50:>8.2f}{p95:>8.2f}{p99:>8.2f}")
    finally:
        tmp.cleanup()
        for name in made:
            admin = await asyncpg.connect(f"{SERVER}/postgres")
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            await admin.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", action="append", default=[], help="a store URL or path (repeatable)")
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--queries", type=int, default=1000)
    parser.add_argument("--built", action="store_true", help="each --db already holds this bench's data")
    args = parser.parse_args()
    asyncio.run(run(args.db, args.rows, args.queries, args.built))


if __name__ == "__main__":
    main()
