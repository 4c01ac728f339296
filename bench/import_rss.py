"""Memory held by the memory proxy across large and hostile imports, and another scope's write during one.

    python bench/import_rss.py [--root DIR] [--large-mb 24] [--rounds 3] [--hostile-mb 32]

Starts the memory proxy (uvicorn app.main:app, from --root: this checkout by default, or another
checkout of the repository to compare) on a free loopback port with a throw-away SQLite file, then
reads its resident memory (heap and mapped file pages apart), each time after a second of idle:
after start-up and a warm-up import, after a large import of ordinary lines, after hostile imports
whose every line is one unique 98,000-character word (8 MB requests), and after each further
ordinary import of the same size (--rounds: whether what the first left grows or is reused). While
the first large import and the hostile ones run, it times single POST /v1/memories writes of
another scope. Loopback only; bounded in size and time.
"""

from __future__ import annotations

import argparse
import functools
import os
import secrets
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
MB = 1024 * 1024
HOSTILE_WORD_CHARS = 98_000
sys.path.insert(0, str(Path(__file__).resolve().parent))
from recall import spawn_proxy  # noqa: E402 - the bench's own helpers


def rss_mb(pid: int) -> tuple[float, float]:
    """The process's resident memory in MB (Linux /proc): anonymous (its heap), and file pages (the mapped database)."""
    fields = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines() if ":" in line)
    return int(fields["RssAnon"].split()[0]) / 1024, int(fields["RssFile"].split()[0]) / 1024


def start(root: Path, tmp: str) -> tuple[subprocess.Popen[bytes], str]:
    settings = {
        "MEMORY_DB": os.path.join(tmp, "memory.db"),
        "MEMORY_LOG_LEVEL": "warning",
        "LITELLM_BASE_URL": "http://127.0.0.1:9",
    }
    return spawn_proxy(root, tmp, settings, wait=60)


def post_import(client: httpx.Client, body: bytes) -> None:
    r = client.post("/v1/memories/import", content=body, timeout=600)
    if r.status_code != 200:
        raise SystemExit(f"import answered {r.status_code}: {r.text[:200]}")


def ordinary(n: int, words: int, scope: str) -> bytes:
    """`n` lines of everyday text (a small vocabulary plus a number each)."""
    vocab = "deploy kiwi tabs coffee release staging review budget meeting travel".split()
    return b"".join(
        b'{"user_id":"%s","content":"note %d %s"}\n'
        % (scope.encode(), i, " ".join(vocab[(i + k) % len(vocab)] for k in range(words)).encode())
        for i in range(n)
    )


def hostile(n: int) -> bytes:
    """`n` lines, each one unique word of HOSTILE_WORD_CHARS characters."""
    return b"".join(
        b'{"user_id":"hostile","content":"%s"}\n' % (secrets.token_hex(8) + "q" * (HOSTILE_WORD_CHARS - 16)).encode()
        for _ in range(n)
    )


def while_writing(base: str, work: Callable[[], None]) -> list[float]:
    """Run `work` while another scope posts single memories, one every 50 ms; each write's seconds."""
    writes: list[float] = []
    done = threading.Event()

    def other_scope() -> None:
        with httpx.Client(base_url=base, timeout=120) as other:
            n = 0
            while not done.is_set():
                t0 = time.perf_counter()
                other.post("/v1/memories", json={"user_id": "other", "content": f"single write {n} {time.time()}"})
                writes.append(time.perf_counter() - t0)
                n += 1
                time.sleep(0.05)

    writer = threading.Thread(target=other_scope)
    writer.start()
    try:
        work()
    finally:
        done.set()
        writer.join()
    return writes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, default=ROOT, help="the checkout to run (default: this one)")
    parser.add_argument("--large-mb", type=int, default=24, help="size of the ordinary import (default 24)")
    parser.add_argument("--rounds", type=int, default=3, help="ordinary imports in all (default 3)")
    parser.add_argument("--hostile-mb", type=int, default=32, help="hostile words sent, in 8 MB requests (default 32)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        proc, base = start(args.root, tmp)
        try:
            with httpx.Client(base_url=base, timeout=60) as client:
                post_import(client, ordinary(2000, 12, "warmup"))
                time.sleep(1)
                rows = [("after start-up and a 2,000-line warm-up", rss_mb(proc.pid))]
                large = ordinary(args.large_mb * MB // 200, 24, "bulk")
                t0 = time.perf_counter()
                ordinary_writes = while_writing(base, functools.partial(post_import, client, large))
                seconds = time.perf_counter() - t0
                time.sleep(1)
                rows.append((f"after a {len(large) / MB:.0f} MB ordinary import ({seconds:.1f} s)", rss_mb(proc.pid)))
                per_request = 8 * MB // (HOSTILE_WORD_CHARS + 40)
                hostile_writes: list[float] = []
                for sent in range(8, args.hostile_mb + 1, 8):
                    body = hostile(per_request)
                    hostile_writes += while_writing(base, functools.partial(post_import, client, body))
                    time.sleep(1)
                    rows.append((f"after {sent} MB of hostile 98,000-character words", rss_mb(proc.pid)))
                for again in range(2, args.rounds + 1):
                    post_import(client, ordinary(args.large_mb * MB // 200, 24, f"bulk-{again}"))
                    time.sleep(1)
                    rows.append((f"after ordinary import number {again} of that size", rss_mb(proc.pid)))
        finally:
            proc.terminate()
            proc.wait(10)
    print(f"memory proxy at {args.root}")
    for label, (anon, mapped) in rows:
        print(f"  {label:<55} heap (RssAnon) {anon:7.1f} MB, file pages (RssFile) {mapped:6.1f} MB")
    for label, writes in (("the ordinary import", ordinary_writes), ("the hostile imports", hostile_writes)):
        writes.sort()
        if writes:
            p50, worst = writes[len(writes) // 2], writes[-1]
            print(f"  another scope's single writes during {label}: n={len(writes)}", end="")
            print(f" p50 {p50 * 1000:.0f} ms, max {worst * 1000:.0f} ms")


if __name__ == "__main__":
    main()
