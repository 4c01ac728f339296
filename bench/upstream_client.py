"""Upstream HTTP client benchmark: aiohttp vs httpx (vs httpx over aiohttp) on loopback.

Run by hand from the repository root:

    python bench/upstream_client.py [--duration 3] [--rounds 3] [--concurrency 1,8,32,64] [--no-docs]

The proxy keeps one pooled HTTP client to LiteLLM; this measures what the candidate client libraries
cost per request when the upstream itself is nearly free. A minimal aiohttp server runs in a separate
process on 127.0.0.1 and answers every POST /v1/chat/completions with the same ~600-byte chat
completion JSON. Each client then sends POSTs with a small JSON body from `concurrency` workers over
one pooled client (connection limit = concurrency) for `duration` seconds after a short warm-up,
reading every response body in full. Clients:

* aiohttp.ClientSession with a TCPConnector(limit=concurrency);
* httpx.AsyncClient with Limits(max_connections=concurrency, max_keepalive_connections=concurrency);
* httpx.AsyncClient over httpx_aiohttp.AiohttpTransport (only if httpx-aiohttp is installed).

Cells are interleaved: every round visits every concurrency level and, within it, every client (the
client order rotates between rounds), so slow drift of a shared machine spreads over all clients.
Reported per cell are medians over the rounds of requests/s, p50 and p99 latency and the client
process's CPU time per request (the least noise-sensitive figure on a shared machine), with ratios
to aiohttp. The client runs on uvloop by default, as uvicorn[standard] does for the proxy.

Unless --no-docs is given, the results are appended under "## Upstream HTTP client" in
docs/performance.md (created if absent). Total run time is about
rounds x levels x clients x (warmup + duration) seconds: ~2.5 minutes with the defaults.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import json
import multiprocessing as mp
import os
import platform
import statistics
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path

import aiohttp
import httpx

try:
    import uvloop
except ImportError:  # pragma: no cover - uvloop is part of uvicorn[standard]
    uvloop = None

try:
    from httpx_aiohttp import AiohttpTransport
except ImportError:
    AiohttpTransport = None

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "performance.md"
HEADING = "## Upstream HTTP client"
PATH = "/v1/chat/completions"
REQUEST_TIMEOUT = 10.0
REQUEST_BODY = json.dumps(
    {"model": "bench", "messages": [{"role": "user", "content": "Say hi."}], "max_tokens": 16}
).encode()
REQUEST_HEADERS = {"content-type": "application/json", "authorization": "Bearer sk-bench"}
RESPONSE_BODY = json.dumps(
    {
        "id": "chatcmpl-0123456789abcdefghijklmnopqrstuv",
        "object": "chat.completion",
        "created": 1700000000,
        "model": "gpt-4o-mini-2024-07-18",
        "system_fingerprint": "fp_0123456789",
        "choices": [
            {
                "index": 0,
                "message": {
                    "role": "assistant",
                    "content": "Hi! How can I help you today? I'm happy to answer questions, explain things, "
                    "or help you draft something.",
                    "refusal": None,
                    "annotations": [],
                },
                "logprobs": None,
                "finish_reason": "stop",
            }
        ],
        "usage": {
            "prompt_tokens": 11,
            "completion_tokens": 27,
            "total_tokens": 38,
            "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
            "completion_tokens_details": {"reasoning_tokens": 0, "audio_tokens": 0},
        },
    },
    separators=(",", ":"),
).encode()


# --------------------------------------------------------------------------- upstream server


def _serve(conn, use_uvloop: bool) -> None:
    """Child process: a minimal aiohttp server; sends its port through `conn`, runs until killed."""
    from aiohttp import web

    async def completion(request: web.Request) -> web.Response:
        await request.read()
        return web.Response(body=RESPONSE_BODY, content_type="application/json")

    async def main() -> None:
        app = web.Application()
        app.router.add_post(PATH, completion)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0, backlog=1024)
        await site.start()
        conn.send(runner.addresses[0][1])
        conn.close()
        await asyncio.Event().wait()

    if use_uvloop and uvloop is not None:
        uvloop.run(main())
    else:
        asyncio.run(main())


def _proc_cpu_seconds(pid: int) -> float:
    """utime + stime of a process from /proc (Linux); NaN elsewhere."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return float("nan")
    fields = stat[stat.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


# --------------------------------------------------------------------------- clients

Request = Callable[[], Awaitable[None]]


@contextlib.asynccontextmanager
async def _aiohttp_client(url: str, concurrency: int) -> AsyncIterator[Request]:
    connector = aiohttp.TCPConnector(limit=concurrency)
    timeout = aiohttp.ClientTimeout(total=REQUEST_TIMEOUT)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:

        async def one() -> None:
            async with session.post(url, data=REQUEST_BODY, headers=REQUEST_HEADERS) as resp:
                await resp.read()
                if resp.status != 200:
                    raise RuntimeError(f"HTTP {resp.status}")

        yield one


def _httpx_request(client: httpx.AsyncClient, url: str) -> Request:
    async def one() -> None:
        resp = await client.post(url, content=REQUEST_BODY, headers=REQUEST_HEADERS)
        if resp.status_code != 200:
            raise RuntimeError(f"HTTP {resp.status_code}")

    return one


def _limits(concurrency: int) -> httpx.Limits:
    return httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)


@contextlib.asynccontextmanager
async def _httpx_client(url: str, concurrency: int) -> AsyncIterator[Request]:
    async with httpx.AsyncClient(limits=_limits(concurrency), timeout=REQUEST_TIMEOUT) as client:
        yield _httpx_request(client, url)


@contextlib.asynccontextmanager
async def _httpx_aiohttp_client(url: str, concurrency: int) -> AsyncIterator[Request]:
    transport = AiohttpTransport(limits=_limits(concurrency))
    async with httpx.AsyncClient(transport=transport, timeout=REQUEST_TIMEOUT) as client:
        yield _httpx_request(client, url)


CLIENTS: dict[str, Callable[[str, int], contextlib.AbstractAsyncContextManager[Request]]] = {
    "aiohttp": _aiohttp_client,
    "httpx": _httpx_client,
}
if AiohttpTransport is not None:
    CLIENTS["httpx+aiohttp-transport"] = _httpx_aiohttp_client
BASELINE = "aiohttp"


# --------------------------------------------------------------------------- measurement


@dataclass
class Sample:
    rps: float
    p50_ms: float
    p99_ms: float
    cpu_us_per_req: float
    server_cpu_pct: float
    requests: int
    errors: int


@dataclass
class Cell:
    client: str
    concurrency: int
    samples: list[Sample] = field(default_factory=list)

    def median(self, attr: str) -> float:
        return statistics.median(getattr(s, attr) for s in self.samples)

    @property
    def errors(self) -> int:
        return sum(s.errors for s in self.samples)


def _quantile(sorted_values: list[float], q: float) -> float:
    if not sorted_values:
        return float("nan")
    return sorted_values[min(len(sorted_values) - 1, int(q * len(sorted_values)))]


async def _drive(one: Request, concurrency: int, seconds: float, latencies: list[float] | None) -> int:
    deadline = time.perf_counter() + seconds
    errors = 0

    async def worker() -> None:
        nonlocal errors
        while (start := time.perf_counter()) < deadline:
            try:
                await one()
            except Exception:
                errors += 1
                await asyncio.sleep(0.01)  # don't spin on a refused connection
                continue
            if latencies is not None:
                latencies.append(time.perf_counter() - start)

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return errors


async def _cell(name: str, url: str, concurrency: int, duration: float, warmup: float, server_pid: int) -> Sample:
    latencies: list[float] = []
    async with asyncio.timeout(warmup + duration + 2 * REQUEST_TIMEOUT), CLIENTS[name](url, concurrency) as one:
        await _drive(one, concurrency, warmup, None)
        server_cpu0 = _proc_cpu_seconds(server_pid)
        cpu0, t0 = time.process_time(), time.perf_counter()
        errors = await _drive(one, concurrency, duration, latencies)
        elapsed, cpu = time.perf_counter() - t0, time.process_time() - cpu0
        server_cpu = _proc_cpu_seconds(server_pid) - server_cpu0
    latencies.sort()
    n = len(latencies)
    return Sample(
        rps=n / elapsed,
        p50_ms=_quantile(latencies, 0.50) * 1000,
        p99_ms=_quantile(latencies, 0.99) * 1000,
        cpu_us_per_req=cpu / n * 1e6 if n else float("nan"),
        server_cpu_pct=server_cpu / elapsed * 100,
        requests=n,
        errors=errors,
    )


def _new_loop_factory(loop: str) -> Callable[[], asyncio.AbstractEventLoop] | None:
    if loop == "uvloop":
        if uvloop is None:
            sys.exit("uvloop is not installed; use --loop asyncio")
        return uvloop.new_event_loop
    return None


# --------------------------------------------------------------------------- reporting


def _versions() -> dict[str, str]:
    out = {}
    for dist in ("aiohttp", "httpx", "httpcore", "h11", "anyio", "httpx-aiohttp", "uvloop"):
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            out[dist] = "not installed"
    return out


def _cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def _ratio(value: float, base: float) -> str:
    return f"{value / base:.2f}x" if base and base == base and value == value else "-"


def _rows(cells: dict[tuple[str, int], Cell], levels: list[int]) -> list[list[str]]:
    rows = []
    for c in levels:
        base = cells.get((BASELINE, c))
        for name in CLIENTS:
            cell = cells[(name, c)]
            rps = [s.rps for s in cell.samples]
            rows.append(
                [
                    name,
                    str(c),
                    f"{cell.median('rps'):,.0f}",
                    f"{min(rps):,.0f}-{max(rps):,.0f}",
                    _ratio(cell.median("rps"), base.median("rps")) if base else "-",
                    f"{cell.median('p50_ms'):.2f}",
                    _ratio(cell.median("p50_ms"), base.median("p50_ms")) if base else "-",
                    f"{cell.median('p99_ms'):.2f}",
                    _ratio(cell.median("p99_ms"), base.median("p99_ms")) if base else "-",
                    f"{cell.median('cpu_us_per_req'):.0f}",
                    f"{cell.median('server_cpu_pct'):.0f}%",
                    str(cell.errors),
                ]
            )
    return rows


HEADERS = [
    "client",
    "conc.",
    "req/s (median)",
    "req/s range",
    "req/s vs aiohttp",
    "p50 ms",
    "p50 vs aiohttp",
    "p99 ms",
    "p99 vs aiohttp",
    "client CPU µs/req",
    "server CPU",
    "errors",
]


def _text_table(rows: list[list[str]]) -> str:
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(HEADERS)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(HEADERS, widths, strict=True))]
    lines.append("  ".join("-" * w for w in widths))
    for row in rows:
        cells = zip(row, widths, strict=True)
        lines.append("  ".join(v.rjust(w) if i else v.ljust(w) for i, (v, w) in enumerate(cells)))
    return "\n".join(lines)


def _md_table(rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(HEADERS) + " |", "|" + "|".join(["---"] + ["---:"] * (len(HEADERS) - 1)) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def _md_section(rows: list[list[str]], args: argparse.Namespace, meta: dict[str, str]) -> str:
    versions = ", ".join(f"{k} {v}" for k, v in _versions().items())
    return f"""### Run of {meta["date"]}

- Machine: {meta["nproc"]} CPUs ({meta["cpu"]}), {platform.system()} {platform.release()}, shared with other work; \
load average {meta["load_before"]} before, {meta["load_after"]} after.
- Python {platform.python_version()}; {versions}.
- Client event loop: {args.loop}; server: aiohttp on uvloop in a separate process, same machine.
- {args.rounds} interleaved rounds x concurrency {",".join(map(str, args.concurrency))} x {len(CLIENTS)} clients, \
{args.warmup:g} s warm-up + {args.duration:g} s measured per cell; figures are medians over rounds \
(req/s range = min-max over rounds). Wall time {meta["wall"]}.
- Response body {len(RESPONSE_BODY)} bytes, request body {len(REQUEST_BODY)} bytes, HTTP/1.1 keep-alive, \
pool limit = concurrency.

{_md_table(rows)}
"""


METHOD = """Method (`python bench/upstream_client.py`): a minimal aiohttp server in a separate process on
127.0.0.1 answers every `POST /v1/chat/completions` with a fixed ~600-byte chat-completion JSON, so the
numbers are the client library's own per-request cost (plus the loopback server's). Each client is one
pooled instance whose connection limit equals the concurrency; `concurrency` workers send requests
back to back and read each body in full. "client CPU µs/req" is the client process's CPU time divided
by completed requests, the figure least disturbed by other load on a shared machine; "server CPU" is
the server process's CPU use during the cell (near 100% means the server, not the client, was the
limit). Ratios are to aiohttp.ClientSession at the same concurrency (higher req/s and lower latency
are better).
"""


def _write_doc(section: str) -> None:
    DOC.parent.mkdir(parents=True, exist_ok=True)
    text = DOC.read_text() if DOC.exists() else "# Performance\n"
    lines = text.splitlines(keepends=True)
    start = next((i for i, line in enumerate(lines) if line.rstrip() == HEADING), None)
    if start is None:
        text = text.rstrip("\n") + f"\n\n{HEADING}\n\n{METHOD}\n{section}"
    else:  # a previous run: add this run at the end of the existing section
        end = next((i for i in range(start + 1, len(lines)) if lines[i].startswith("## ")), len(lines))
        head, tail = "".join(lines[:end]).rstrip("\n"), "".join(lines[end:])
        text = f"{head}\n\n{section}" + (f"\n{tail}" if tail else "")
    DOC.write_text(text)


# --------------------------------------------------------------------------- main


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--duration", type=float, default=3.0, help="measured seconds per cell")
    parser.add_argument("--warmup", type=float, default=0.5, help="warm-up seconds per cell (not measured)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--concurrency", type=lambda s: [int(x) for x in s.split(",")], default=[1, 8, 32, 64])
    parser.add_argument("--loop", choices=["uvloop", "asyncio"], default="uvloop" if uvloop else "asyncio")
    parser.add_argument("--no-docs", action="store_true", help=f"don't append to {DOC.relative_to(ROOT)}")
    args = parser.parse_args()

    cells_total = args.rounds * len(args.concurrency) * len(CLIENTS)
    print(
        f"{len(CLIENTS)} clients ({', '.join(CLIENTS)}), concurrency {args.concurrency}, {args.rounds} rounds: "
        f"{cells_total} cells, about {cells_total * (args.duration + args.warmup):.0f} s",
        flush=True,
    )
    if AiohttpTransport is None:
        print("httpx-aiohttp not installed: skipping httpx over AiohttpTransport", flush=True)

    meta = {
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "nproc": str(os.cpu_count()),
        "cpu": _cpu_model(),
        "load_before": " / ".join(f"{x:.2f}" for x in os.getloadavg()),
    }
    ctx = mp.get_context("spawn")
    parent_conn, child_conn = ctx.Pipe(duplex=False)
    server = ctx.Process(target=_serve, args=(child_conn, True), daemon=True)
    server.start()
    wall0 = time.perf_counter()
    try:
        if not parent_conn.poll(30):
            sys.exit("upstream server did not start within 30 s")
        url = f"http://127.0.0.1:{parent_conn.recv()}{PATH}"
        cells = {(n, c): Cell(n, c) for c in args.concurrency for n in CLIENTS}
        names = list(CLIENTS)
        done = 0
        with asyncio.Runner(loop_factory=_new_loop_factory(args.loop)) as runner:
            for r in range(args.rounds):
                order = names[r % len(names) :] + names[: r % len(names)]
                for c in args.concurrency:
                    for name in order:
                        gc.collect()
                        sample = runner.run(_cell(name, url, c, args.duration, args.warmup, server.pid))
                        cells[(name, c)].samples.append(sample)
                        done += 1
                        print(
                            f"[{done}/{cells_total}] round {r + 1} {name:<24} c={c:<3} {sample.rps:8,.0f} req/s  "
                            f"p50 {sample.p50_ms:6.2f} ms  p99 {sample.p99_ms:6.2f} ms  "
                            f"{sample.cpu_us_per_req:5.0f} µs/req  server {sample.server_cpu_pct:3.0f}%"
                            + (f"  errors {sample.errors}" if sample.errors else ""),
                            flush=True,
                        )
    finally:
        server.kill()
        server.join(5)
    meta["wall"] = f"{time.perf_counter() - wall0:.0f} s"
    meta["load_after"] = " / ".join(f"{x:.2f}" for x in os.getloadavg())

    rows = _rows(cells, args.concurrency)
    print()
    print(_text_table(rows))
    print(
        f"\nmedians of {args.rounds} rounds; Python {platform.python_version()}, {meta['nproc']} CPUs, "
        f"loop {args.loop}; " + ", ".join(f"{k} {v}" for k, v in _versions().items())
    )
    if not args.no_docs:
        _write_doc(_md_section(rows, args, meta))
        print(f"appended to {DOC.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
