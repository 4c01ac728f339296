"""asyncpg vs psycopg 3 (async pool) on the PostgreSQL store's capture and search paths.

Run by hand from the repository root (needs `pip install -r bench/requirements.txt`):

    python bench/pg_drivers.py [--server postgresql://postgres@127.0.0.1:5432] [--rows 20000]

It creates a throw-away database on the server, builds the store's schema and loads `--rows`
memories into one scope, then runs the store's own SQL (app/store/postgres.py) through each
driver with a pool of the store's size: capture = one transaction of SCOPE_LOCK_SQL + LATEST_SQL +
INSERT_SQL for a two-turn batch (the memory rows a chat's capture writes; its term-index postings
are left out), search = TOP_SQL (the question words' top postings and document counts) + PACKED_SQL
(the shortlist's packed postings) + ROWS_SQL (the best 50 candidates' rows) for a three-word
question. Each is timed one at a time (p50/p95 latency) and eight at a time (operations per
second). The database is dropped at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import re
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import asyncpg
import psycopg_pool

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from app import textindex
from app.store import RERANK_CANDIDATES, NewMemory, as_stored, postings
from app.store.postgres import (
    INSERT_SQL,
    LATEST_SQL,
    PACKED_SQL,
    POOL_SIZE,
    ROWS_SQL,
    SCOPE_LOCK_SQL,
    TOP_SQL,
    PostgresStore,
    insert_args,
)

WORDS = (
    "deploy kiwi postgres replica backup schedule friday tabs spaces linter review branch merge release "
    "invoice travel berlin piano lesson garden tomato recipe pasta marathon training knee doctor sister "
    "birthday gift camera lens hiking trail weather rain budget rent landlord python rust compiler cache"
).split()


def sentence(rng: random.Random, n: int = 12) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(n))


def to_psycopg(sql: str) -> str:
    """`$n` placeholders as psycopg's named ones (`%(pn)s`)."""
    return re.sub(r"\$(\d+)", r"%(p\1)s", sql)


def named(args: tuple[Any, ...]) -> dict[str, Any]:
    return {f"p{i}": v for i, v in enumerate(args, start=1)}


def top_args(scope: str, words: list[str]) -> tuple[Any, ...]:
    """TOP_SQL's parameters for a question of these words."""
    return (
        scope,
        postings.scope_key(scope),
        [postings.term_key(textindex.stem(w)) for w in words],
        postings.CANDIDATES_PER_WORD,
    )


def best(rows: list[Any]) -> list[int]:
    """The shortlist's seqs, not the document counts' rows (the ranking's arithmetic is the same Python for
    both drivers)."""
    return list(dict.fromkeys(r[1] for r in rows if r[1] is not None))[:RERANK_CANDIDATES]


def lock_keys(items: list[NewMemory]) -> list[int]:
    """SCOPE_LOCK_SQL's parameter: the batch's scope keys, sorted."""
    return sorted({postings.scope_key(i.user_id) for i in items})


def batch_args(items: list[NewMemory], previous: dict[str, str]) -> list[list[Any]]:
    return insert_args(items, [as_stored(i) for i in items], previous, [])


class Asyncpg:
    name = "asyncpg"

    async def open(self, url: str) -> None:
        self.pool = await asyncpg.create_pool(url, min_size=POOL_SIZE, max_size=POOL_SIZE)

    async def capture(self, items: list[NewMemory]) -> None:
        async with self.pool.acquire() as conn, conn.transaction():
            await conn.execute(SCOPE_LOCK_SQL, lock_keys(items))
            previous = dict(await conn.fetch(LATEST_SQL, list({i.user_id for i in items})))
            await conn.fetch(INSERT_SQL, *batch_args(items, previous))

    async def search(self, scope: str, words: list[str]) -> int:
        async with self.pool.acquire() as conn:
            rows = await conn.fetch(TOP_SQL, *top_args(scope, words))
            await conn.fetch(PACKED_SQL, scope, best(rows))
            await conn.fetch(ROWS_SQL, scope, best(rows))
        return len(rows)

    async def close(self) -> None:
        await self.pool.close()


class Psycopg:
    name = "psycopg 3"

    async def open(self, url: str) -> None:
        self.pool = psycopg_pool.AsyncConnectionPool(url, min_size=POOL_SIZE, max_size=POOL_SIZE, open=False)
        await self.pool.open(wait=True)

    async def capture(self, items: list[NewMemory]) -> None:
        async with self.pool.connection() as conn, conn.transaction():
            await conn.execute(to_psycopg(SCOPE_LOCK_SQL), named((lock_keys(items),)), prepare=True)
            cur = await conn.execute(to_psycopg(LATEST_SQL), named((list({i.user_id for i in items}),)), prepare=True)
            previous = dict(await cur.fetchall())
            cur = await conn.execute(to_psycopg(INSERT_SQL), named(batch_args(items, previous)), prepare=True)
            await cur.fetchall()

    async def search(self, scope: str, words: list[str]) -> int:
        async with self.pool.connection() as conn:
            cur = await conn.execute(to_psycopg(TOP_SQL), named(top_args(scope, words)), prepare=True)
            rows = await cur.fetchall()
            for sql in (PACKED_SQL, ROWS_SQL):
                cur = await conn.execute(to_psycopg(sql), named((scope, best(rows))), prepare=True)
                await cur.fetchall()
        return len(rows)

    async def close(self) -> None:
        await self.pool.close()


async def timed(op: Callable[[int], Awaitable[Any]], n: int, concurrency: int) -> tuple[list[float], float]:
    """Per-operation latencies (ms) and total seconds for n operations, `concurrency` at a time."""
    latencies: list[float] = []
    queue = iter(range(n))

    async def worker() -> None:
        for i in queue:
            t0 = time.perf_counter()
            await op(i)
            latencies.append((time.perf_counter() - t0) * 1000)

    t0 = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return latencies, time.perf_counter() - t0


def pct(values: list[float], p: float) -> float:
    return statistics.quantiles(values, n=100)[int(p) - 1]


async def run(server: str, rows: int, n: int) -> None:
    name = f"memory_bench_{os.getpid()}"
    admin = await asyncpg.connect(f"{server}/postgres")
    await admin.execute(f'CREATE DATABASE "{name}"')
    url = f"{server}/{name}"
    rng = random.Random(7)
    try:
        store = await PostgresStore.open(url)
        for start in range(0, rows, 5000):
            await store.add_many(
                [NewMemory("bench", "user", sentence(rng), 1.7e9 + start + i) for i in range(min(5000, rows - start))]
            )
        await store.close()
        print(f"{rows} memories in one scope; {n} operations per row of the table\n")
        print(f"{'driver':<11}{'path':<9}{'p50 ms':>8}{'p95 ms':>8}{'ops/s x1':>10}{'ops/s x8':>10}")
        for driver in (Asyncpg(), Psycopg()):
            await driver.open(url)
            try:

                async def capture(i: int, driver: Any = driver) -> None:
                    scope = f"cap-{driver.name[:4]}-{i % 50}"
                    at = 1.8e9 + i
                    text = sentence(rng)
                    await driver.capture(
                        [NewMemory(scope, "user", text, at), NewMemory(scope, "assistant", "reply " + text, at + 0.001)]
                    )

                async def search(i: int, driver: Any = driver) -> None:
                    await driver.search("bench", rng.sample(WORDS, 3))

                for path, op in (("capture", capture), ("search", search)):
                    await timed(op, 50, 1)  # warm the pool and the statement caches
                    lat, total = await timed(op, n, 1)
                    _, total8 = await timed(op, n, 8)
                    print(
                        f"{driver.name:<11}{path:<9}{pct(lat, 50):>8.2f}{pct(lat, 95):>8.2f}"
                        f"{n / total:>10.0f}{n / total8:>10.0f}"
                    )
            finally:
                await driver.close()
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--server", default="postgresql://postgres@127.0.0.1:5432")
    parser.add_argument("--rows", type=int, default=20_000)
    parser.add_argument("-n", type=int, default=1000, help="operations per measurement")
    args = parser.parse_args()
    asyncio.run(run(args.server, args.rows, args.n))


if __name__ == "__main__":
    main()
