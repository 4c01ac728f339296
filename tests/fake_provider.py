"""A fake LLM provider for the end-to-end tests: OpenAI, Anthropic and Gemini endpoints on loopback.

It serves chat completions, Anthropic messages, the OpenAI Responses API and Gemini's
generateContent / streamGenerateContent (`?alt=sse`), and records every
request (path, headers, body) at GET /_requests. The last user message steers faults: `FAULT:break`
cuts a stream midway, `FAULT:slow` sends a chunk every 200 ms, `FAULT:status=503` answers that
status with Retry-After, `FAULT:hang` never answers; on /responses `FAULT:failed` and
`FAULT:incomplete` end the reply with `response.failed` / `response.incomplete`. Responses are
stored by id (unless `store: false`) and served by GET, DELETE, `/input_items` and `/cancel`. On
/v1/messages `TOOL:name {json}` answers with a call of the request's tool whose name ends in `name`,
and a tool result is answered with `Tool said: …` and the result's text.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import time
import uuid

from aiohttp import web

REQUESTS: list[dict] = []
STORED: dict[str, dict] = {}  # Responses created with `store` (the default), by id: their object and input


def _last_user_text(body: dict) -> str:
    entries = body.get("messages") or body.get("input") or []
    if isinstance(entries, str):
        return entries
    for content in reversed(body.get("contents") or []):  # Gemini: contents[].parts[].text
        if isinstance(content, dict) and content.get("role", "user") == "user":
            texts = [p["text"] for p in content.get("parts") or () if isinstance(p, dict) and "text" in p]
            if texts:
                return texts[-1]
    for m in reversed(entries):
        if isinstance(m, dict) and m.get("role") == "user":
            c = m.get("content")
            if isinstance(c, str):
                return c
            texts = [b.get("text", "") for b in c if isinstance(b, dict) and b.get("type") in ("text", "input_text")]
            return texts[-1] if texts else ""
    return ""


def _reply_for(body: dict) -> str:
    text = _last_user_text(body)
    return f"Fake reply to: {text[-60:]}"


def _words(reply: str) -> list[str]:
    return re.findall(r"\S+\s*", reply) or [reply]


async def _fault(request: web.Request, body: dict) -> web.StreamResponse | None:
    text = _last_user_text(body)
    if "FAULT:hang" in text:
        await asyncio.sleep(3600)
    m = re.search(r"FAULT:status=(\d{3})", text)
    if m:
        return web.json_response(
            {"error": {"message": "fake provider failure", "type": "server_error"}},
            status=int(m.group(1)),
            headers={"Retry-After": "7"},
        )
    return None


async def _record(request: web.Request) -> dict:
    raw = await request.read()
    try:
        body = json.loads(raw) if raw else {}
    except ValueError:
        body = {"_raw": raw.decode("utf-8", "replace")}
    entry = {"path": request.path, "headers": dict(request.headers), "body": body, "at": time.time()}
    if request.query_string:  # Gemini's `?alt=sse` (and a `?key=` that must never get this far)
        entry["query"] = request.query_string
    REQUESTS.append(entry)
    return body


async def _sse(request: web.Request, events: list[bytes], text: str) -> web.StreamResponse:
    resp = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"})
    await resp.prepare(request)
    delay = 0.2 if "FAULT:slow" in text else 0.0
    for i, event in enumerate(events):
        if "FAULT:break" in text and i == len(events) // 2:
            request.transport.close()  # a provider dying mid-stream
            return resp
        await resp.write(event)
        if delay:
            await asyncio.sleep(delay)
    await resp.write_eof()
    return resp


async def chat_completions(request: web.Request) -> web.StreamResponse:
    body = await _record(request)
    fault = await _fault(request, body)
    if fault is not None:
        return fault
    reply = _reply_for(body)
    model = body.get("model", "fake-model")
    created = int(time.time())
    if not body.get("stream"):
        return web.json_response(
            {
                "id": "chatcmpl-fake",
                "object": "chat.completion",
                "created": created,
                "model": model,
                "choices": [{"index": 0, "message": {"role": "assistant", "content": reply}, "finish_reason": "stop"}],
                "usage": {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15},
            }
        )

    def chunk(delta: dict, finish: str | None = None) -> bytes:
        obj = {
            "id": "chatcmpl-fake",
            "object": "chat.completion.chunk",
            "created": created,
            "model": model,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
        }
        return b"data: " + json.dumps(obj).encode() + b"\n\n"

    events = [chunk({"role": "assistant", "content": ""})]
    events += [chunk({"content": w}) for w in _words(reply)]
    events += [chunk({}, "stop")]
    if (body.get("stream_options") or {}).get("include_usage"):  # OpenAI's final usage-only chunk
        usage = {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15}
        events.append(b"data: " + json.dumps({"choices": [], "usage": usage}).encode() + b"\n\n")
    events.append(b"data: [DONE]\n\n")
    return await _sse(request, events, _last_user_text(body))


def _tool_result_text(body: dict) -> str | None:
    """The text of a tool result in the last message, if it is one."""
    last = (body.get("messages") or [{}])[-1]
    content = last.get("content") if isinstance(last, dict) else None
    for block in content if isinstance(content, list) else []:
        if isinstance(block, dict) and block.get("type") == "tool_result":
            inner = block.get("content")
            if isinstance(inner, list):
                inner = " ".join(b.get("text", "") for b in inner if isinstance(b, dict))
            return str(inner)
    return None


def _tool_call_for(body: dict) -> dict | None:
    """A tool_use block for `TOOL:name {json}` in the last user text, if the request offers that tool."""
    m = re.search(r"TOOL:(\w+) (\{.*\})", _last_user_text(body))
    if m is None or _tool_result_text(body) is not None:
        return None
    names = [t.get("name", "") for t in body.get("tools") or [] if isinstance(t, dict)]
    name = next((n for n in names if n.endswith(m.group(1))), None)
    if name is None:
        return None
    return {"type": "tool_use", "id": "toolu_fake", "name": name, "input": json.loads(m.group(2))}


async def messages(request: web.Request) -> web.StreamResponse:
    body = await _record(request)
    fault = await _fault(request, body)
    if fault is not None:
        return fault
    said = _tool_result_text(body)
    reply = f"Tool said: {said}" if said is not None else _reply_for(body)
    call = _tool_call_for(body)
    model = body.get("model", "claude-fake")
    message = {
        "id": "msg_fake",
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": [call or {"type": "text", "text": reply}],
        "stop_reason": "tool_use" if call else "end_turn",
        "stop_sequence": None,
        "usage": {"input_tokens": 10, "output_tokens": 5},
    }
    if not body.get("stream"):
        return web.json_response(message)

    def event(kind: str, data: dict) -> bytes:
        return f"event: {kind}\ndata: {json.dumps({'type': kind, **data})}\n\n".encode()

    start = {**message, "content": [], "stop_reason": None, "usage": {"input_tokens": 10, "output_tokens": 0}}
    events = [event("message_start", {"message": start})]
    if call:
        partial = {"type": "input_json_delta", "partial_json": json.dumps(call["input"])}
        events += [
            event("content_block_start", {"index": 0, "content_block": {**call, "input": {}}}),
            event("content_block_delta", {"index": 0, "delta": partial}),
        ]
    else:
        events.append(event("content_block_start", {"index": 0, "content_block": {"type": "text", "text": ""}}))
        events += [
            event("content_block_delta", {"index": 0, "delta": {"type": "text_delta", "text": w}})
            for w in _words(reply)
        ]
    events += [
        event("content_block_stop", {"index": 0}),
        event(
            "message_delta",
            {"delta": {"stop_reason": message["stop_reason"], "stop_sequence": None}, "usage": {"output_tokens": 5}},
        ),
        event("message_stop", {}),
    ]
    return await _sse(request, events, _last_user_text(body))


def _response_object(body: dict, status: str, output: list[dict], created: int, response_id: str) -> dict:
    """A Responses API `response` object."""
    return {
        "id": response_id,
        "object": "response",
        "created_at": created,
        "status": status,
        "error": None,
        "incomplete_details": {"reason": "max_output_tokens"} if status == "incomplete" else None,
        "instructions": body.get("instructions"),
        "model": body.get("model", "fake-model"),
        "output": output,
        "parallel_tool_calls": True,
        "previous_response_id": body.get("previous_response_id"),
        "store": body.get("store", True),
        "text": {"format": {"type": "text"}},
        "tool_choice": "auto",
        "tools": body.get("tools") or [],
        "usage": {
            "input_tokens": 10,
            "input_tokens_details": {"cached_tokens": 0},
            "output_tokens": 5,
            "output_tokens_details": {"reasoning_tokens": 0},
            "total_tokens": 15,
        },
    }


async def responses(request: web.Request) -> web.StreamResponse:
    body = await _record(request)
    fault = await _fault(request, body)
    if fault is not None:
        return fault
    text = _last_user_text(body)
    reply = _reply_for(body)
    created = int(time.time())
    part = {"type": "output_text", "text": reply, "annotations": []}
    item = {"id": "msg_fake", "type": "message", "status": "completed", "role": "assistant", "content": [part]}
    end = "failed" if "FAULT:failed" in text else "incomplete" if "FAULT:incomplete" in text else "completed"
    response_id = f"resp_{uuid.uuid4().hex}"
    final = _response_object(body, end, [item], created, response_id)
    if body.get("store", True):
        previous = STORED.get(body.get("previous_response_id") or "", {}).get("input", [])
        STORED[response_id] = {"response": final, "input": [*previous, *_input_items(body)]}
    if not body.get("stream"):
        return web.json_response(final)
    sequence = iter(range(1_000_000))

    def event(kind: str, data: dict) -> bytes:
        payload = {"type": kind, "sequence_number": next(sequence), **data}
        return f"event: {kind}\ndata: {json.dumps(payload)}\n\n".encode()

    started = _response_object(body, "in_progress", [], created, response_id)
    where = {"item_id": "msg_fake", "output_index": 0, "content_index": 0}
    events = [
        event("response.created", {"response": started}),
        event("response.in_progress", {"response": started}),
        event(
            "response.output_item.added", {"output_index": 0, "item": {**item, "status": "in_progress", "content": []}}
        ),
        event("response.content_part.added", {**where, "part": {**part, "text": ""}}),
    ]
    events += [event("response.output_text.delta", {**where, "delta": w}) for w in _words(reply)]
    events += [
        event("response.output_text.done", {**where, "text": reply}),
        event("response.content_part.done", {**where, "part": part}),
        event("response.output_item.done", {"output_index": 0, "item": item}),
        event(f"response.{end}", {"response": final}),
    ]
    return await _sse(request, events, text)


async def gemini(request: web.Request) -> web.StreamResponse:
    """`models/{model}:generateContent` and `:streamGenerateContent` (SSE with `?alt=sse`)."""
    model, _, method = request.match_info["target"].partition(":")
    if method not in ("generateContent", "streamGenerateContent"):
        raise web.HTTPNotFound()
    body = await _record(request)
    fault = await _fault(request, body)
    if fault is not None:
        return fault
    reply = _reply_for(body)
    usage = {"promptTokenCount": 10, "candidatesTokenCount": 5, "totalTokenCount": 15}

    def response(text: str, finish: str | None) -> dict:
        candidate = {"content": {"role": "model", "parts": [{"text": text}]}, "index": 0}
        if finish:
            candidate["finishReason"] = finish
        return {"candidates": [candidate], "usageMetadata": usage, "modelVersion": model, "responseId": "fake"}

    if method == "generateContent":
        return web.json_response(response(reply, "STOP"))
    words = _words(reply)
    chunks = [response(w, "STOP" if i == len(words) - 1 else None) for i, w in enumerate(words)]
    if request.query.get("alt") != "sse":  # without alt=sse the API streams one JSON array
        return web.json_response(chunks)
    events = [b"data: " + json.dumps(c).encode() + b"\r\n\r\n" for c in chunks]
    return await _sse(request, events, _last_user_text(body))


def _input_items(body: dict) -> list[dict]:
    entries = body.get("input") or []
    if isinstance(entries, str):
        entries = [{"role": "user", "content": entries}]
    return [{"id": f"msg_{uuid.uuid4().hex[:12]}", "type": "message", **e} for e in entries if isinstance(e, dict)]


def _stored(request: web.Request) -> dict | None:
    REQUESTS.append({"path": request.path, "method": request.method, "headers": dict(request.headers), "body": {}})
    return STORED.get(request.match_info["response_id"])


def _no_such(request: web.Request) -> web.Response:
    message = f"No response found with id '{request.match_info['response_id']}'."
    return web.json_response({"error": {"message": message, "type": "invalid_request_error"}}, status=404)


async def get_response(request: web.Request) -> web.Response:
    stored = _stored(request)
    return web.json_response(stored["response"]) if stored else _no_such(request)


async def delete_response(request: web.Request) -> web.Response:
    if _stored(request) is None:
        return _no_such(request)
    del STORED[request.match_info["response_id"]]
    return web.json_response({"id": request.match_info["response_id"], "object": "response", "deleted": True})


async def input_items(request: web.Request) -> web.Response:
    stored = _stored(request)
    if stored is None:
        return _no_such(request)
    data = stored["input"]
    return web.json_response({"object": "list", "data": data, "has_more": False, "first_id": None, "last_id": None})


async def cancel_response(request: web.Request) -> web.Response:
    stored = _stored(request)
    return web.json_response({**stored["response"], "status": "cancelled"}) if stored else _no_such(request)


async def models(request: web.Request) -> web.Response:
    return web.json_response({"object": "list", "data": [{"id": "fake-model", "object": "model"}]})


async def embeddings(request: web.Request) -> web.Response:
    body = await _record(request)
    inputs = body.get("input")
    count = len(inputs) if isinstance(inputs, list) else 1
    return web.json_response(
        {
            "object": "list",
            "data": [{"object": "embedding", "index": i, "embedding": [0.1, 0.2, 0.3]} for i in range(count)],
            "model": body.get("model", "fake-embed"),
            "usage": {"prompt_tokens": 1, "total_tokens": 1},
        }
    )


async def list_requests(request: web.Request) -> web.Response:
    return web.json_response(REQUESTS)


async def clear_requests(request: web.Request) -> web.Response:
    REQUESTS.clear()
    return web.json_response({"cleared": True})


def build_app() -> web.Application:
    app = web.Application(client_max_size=64 * 1024 * 1024)
    app.router.add_get("/_requests", list_requests)
    app.router.add_delete("/_requests", clear_requests)
    # Any prefix: models can point at http://127.0.0.1:PORT/<anything>/v1.
    app.router.add_post(r"/{prefix:.*}chat/completions", chat_completions)
    app.router.add_post(r"/{prefix:.*}messages", messages)
    app.router.add_post(r"/{prefix:.*}responses", responses)
    app.router.add_get(r"/{prefix:.*}responses/{response_id}", get_response)
    app.router.add_delete(r"/{prefix:.*}responses/{response_id}", delete_response)
    app.router.add_get(r"/{prefix:.*}responses/{response_id}/input_items", input_items)
    app.router.add_post(r"/{prefix:.*}responses/{response_id}/cancel", cancel_response)
    app.router.add_post(r"/{prefix:.*}embeddings", embeddings)
    app.router.add_get(r"/{prefix:.*}models", models)
    app.router.add_post(r"/{prefix:.*}models/{target:[^/]+}", gemini)
    return app


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    web.run_app(build_app(), host="127.0.0.1", port=args.port, print=None, access_log=None)
