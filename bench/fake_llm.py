"""A lean fake OpenAI-compatible provider for the stack benchmark (bench/proxy_bench.py).

Unlike tests/fake_provider.py it records nothing and does as little work per request as it can, so
that on a 2-core machine the provider takes as small a share of the CPU as possible. It answers
`POST …/chat/completions`, streaming (one SSE event per word) or not. A request whose body contains
`FAULT:slow` streams one event every 200 ms (the "must arrive unbuffered" check).

    python bench/fake_llm.py --port 9000
"""

from __future__ import annotations

import argparse
import asyncio
import time

import orjson
from aiohttp import web

REPLY_WORDS = "Sure, here is a short fake answer about the topic you asked for today .".split()
SLOW_EVENTS = 6
SLOW_GAP = 0.2


def _chunk(created: int, model: str, delta: dict, finish: str | None = None) -> bytes:
    obj = {
        "id": "chatcmpl-bench",
        "object": "chat.completion.chunk",
        "created": created,
        "model": model,
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
    }
    return b"data: " + orjson.dumps(obj) + b"\n\n"


async def chat_completions(request: web.Request) -> web.StreamResponse:
    raw = await request.read()
    body = orjson.loads(raw) if raw else {}
    model = body.get("model", "fake-model")
    created = int(time.time())
    if not body.get("stream"):
        reply = " ".join(REPLY_WORDS)
        return web.Response(
            body=orjson.dumps(
                {
                    "id": "chatcmpl-bench",
                    "object": "chat.completion",
                    "created": created,
                    "model": model,
                    "choices": [
                        {"index": 0, "message": {"role": "assistant", "content": reply}, "finish_reason": "stop"}
                    ],
                    "usage": {"prompt_tokens": 10, "completion_tokens": len(REPLY_WORDS), "total_tokens": 25},
                }
            ),
            content_type="application/json",
        )
    slow = b"FAULT:slow" in raw
    resp = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"})
    await resp.prepare(request)
    if slow:
        await resp.write(_chunk(created, model, {"role": "assistant", "content": ""}))
        for i in range(SLOW_EVENTS):
            await asyncio.sleep(SLOW_GAP)
            await resp.write(_chunk(created, model, {"content": f"tick{i} "}))
    else:
        # One write: the events still arrive as separate SSE events, at a fraction of the syscalls.
        events = [_chunk(created, model, {"role": "assistant", "content": ""})]
        events += [_chunk(created, model, {"content": w + " "}) for w in REPLY_WORDS]
        await resp.write(b"".join(events))
    await resp.write(_chunk(created, model, {}, "stop") + b"data: [DONE]\n\n")
    await resp.write_eof()
    return resp


async def models(request: web.Request) -> web.Response:
    return web.json_response({"object": "list", "data": [{"id": "fake-model", "object": "model"}]})


def build_app() -> web.Application:
    app = web.Application(client_max_size=64 * 1024 * 1024)
    app.router.add_post(r"/{prefix:.*}chat/completions", chat_completions)
    app.router.add_get(r"/{prefix:.*}models", models)
    return app


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    try:
        import uvloop

        uvloop.install()
    except ImportError:  # pragma: no cover
        pass
    web.run_app(build_app(), host="127.0.0.1", port=args.port, print=None, access_log=None)
