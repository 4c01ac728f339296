"""app/dialects/gemini.py over Gemini CLI's recorded traffic, and the Gemini paths through the real app."""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
from pathlib import Path
from typing import Any

import pytest

from app import memory
from app.config import ApiKey, ModelEntry
from app.dialects import gemini
from app.memory import Recalled, render_block
from app.sse import ReplyAssembler
from tests.inprocess import make_settings, marker, raw_request, running, upstream_requests
from tests.test_clients import SCAFFOLDING, dialect_of, human_words, load, shipped_scopes

pytestmark = pytest.mark.timeout(30)
RECORDING = load("gemini-cli")
REQUESTS = RECORDING["requests"]
BLOCK = render_block([Recalled("the cat is called Zorblax", "user", 0.0)])
STREAM = "/v1beta/models/fake-model:streamGenerateContent?alt=sse"


def body_of(*contents: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"contents": list(contents), **extra}


def user(*texts: str) -> dict[str, Any]:
    return {"role": "user", "parts": [{"text": t} for t in texts]}


def test_the_routing_table_sends_every_gemini_path_here() -> None:
    for path in (
        "/v1beta/models/gemini-2.5-pro:generateContent",
        "/v1beta/models/gemini-2.5-pro:streamGenerateContent",
        "/v1/models/gemini-2.5-pro:generateContent",
        "/v1/models/gemini-2.5-pro:streamGenerateContent",
    ):
        assert dialect_of(path) is gemini


@pytest.mark.parametrize("i", range(len(REQUESTS)))
def test_recorded_human_turn_and_no_session_context(i: int) -> None:
    request = REQUESTS[i]
    words = human_words(RECORDING, request)
    found = list(gemini.turns(request["body"]))
    assert found[0].role == "user" and found[0].text == words
    assert all(not any(s in t.text for s in (*SCAFFOLDING, "session_context", "Workspace Directories")) for t in found)
    if i == 1:  # the resumed run: the first prompt, the model's reply, then the follow-up
        assert [(t.role, t.text) for t in found] == [
            ("user", RECORDING["follow_up"]),
            ("assistant", f"Fake reply to: {RECORDING['prompt']}"),
            ("user", RECORDING["prompt"]),
        ]


def serialized_parts(body: dict[str, Any]) -> list[str]:
    """Every part of every content, in order, serialized: what a provider's prompt cache sees."""
    return [json.dumps(p) for c in body["contents"] for p in c["parts"]]


@pytest.mark.parametrize("i", range(len(REQUESTS)))
def test_injection_keeps_every_byte_before_the_human_words(i: int) -> None:
    request = REQUESTS[i]
    body = copy.deepcopy(request["body"])
    assert gemini.inject(body, BLOCK, "before_last_user")
    before, after = serialized_parts(request["body"]), serialized_parts(body)
    at = next(k for k, p in enumerate(after) if "recalled-memories" in p)
    # The notes are one part of their own, right before the human's words; every part before them
    # (system instruction, tools, the session context, history) and after them is unchanged.
    assert after[:at] == before[:at] and after[at + 1 :] == before[at:]
    assert json.loads(after[at]) == {"text": BLOCK}
    assert human_words(RECORDING, request) in after[at + 1]
    assert {k: v for k, v in body.items() if k != "contents"} == {
        k: v for k, v in request["body"].items() if k != "contents"
    }
    assert len(body["contents"]) == len(request["body"]["contents"])  # no new turn: roles still alternate
    again = memory.new_user_turn(gemini.turns(body))
    assert again is not None and again.text == human_words(RECORDING, request)


def test_suffix_and_system_modes() -> None:
    suffix = body_of(user("hello there"))
    assert gemini.inject(suffix, BLOCK, "last_user_suffix")
    assert suffix["contents"][0]["parts"] == [{"text": "hello there"}, {"text": BLOCK}]
    system = body_of(user("hello there"), systemInstruction={"parts": [{"text": "Be brief."}]})
    assert gemini.inject(system, BLOCK, "system")
    assert system["systemInstruction"] == {"parts": [{"text": "Be brief."}, {"text": BLOCK}]}
    assert system["contents"] == [user("hello there")]
    snake = body_of(user("hello there"), system_instruction={"parts": [{"text": "Be brief."}]})
    assert gemini.inject(snake, BLOCK, "system") and "systemInstruction" not in snake
    bare = body_of(user("hello there"))
    assert gemini.inject(bare, BLOCK, "system") and bare["systemInstruction"] == {"parts": [{"text": BLOCK}]}


def test_no_human_words_no_injection() -> None:
    tool_turn = body_of(
        user("list the files"),
        {"role": "model", "parts": [{"functionCall": {"name": "list_directory", "args": {}}}]},
        {"role": "user", "parts": [{"functionResponse": {"name": "list_directory", "response": {"output": "a b"}}}]},
    )
    found = list(gemini.turns(tool_turn))
    assert [(t.position, t.role) for t in found] == [(0, "user")]  # only the human's words count
    context_only = body_of(user("<session_context>\nMy operating system is: linux\n</session_context>"))
    assert list(gemini.turns(context_only)) == []
    assert gemini.inject(copy.deepcopy(context_only), BLOCK, "before_last_user") is False
    assert gemini.inject(body_of(), BLOCK, "before_last_user") is False


def test_thoughts_are_not_words() -> None:
    body = body_of(
        user("what is 2+2?"),
        {"role": "model", "parts": [{"text": "thinking hard", "thought": True}, {"text": "4"}]},
        user("and 3+3?"),
    )
    assert [(t.role, t.text) for t in gemini.turns(body)] == [
        ("user", "and 3+3?"),
        ("assistant", "4"),
        ("user", "what is 2+2?"),
    ]
    assert "thinking hard" not in gemini.present_text(body)


def test_present_text_has_system_instruction_and_contents() -> None:
    body = body_of(user("hello"), systemInstruction={"parts": [{"text": "Be brief."}]})
    assert gemini.present_text(body) == "Be brief.\nhello"


def chunk(text: str, finish: str | None = None, **extra: Any) -> dict[str, Any]:
    candidate: dict[str, Any] = {"content": {"role": "model", "parts": [{"text": text}]}, "index": 0}
    candidate["finishReason"] = finish
    return {"candidates": [candidate], **extra}


def sse(*events: dict[str, Any], sep: bytes = b"\n\n") -> bytes:
    return b"".join(b"data: " + json.dumps(e).encode() + sep for e in events)


@pytest.mark.parametrize("sep", [b"\n\n", b"\r\n\r\n"])
def test_streamed_reply_ends_with_a_finish_reason(sep: bytes) -> None:
    usage = {"usageMetadata": {"promptTokenCount": 12, "candidatesTokenCount": 3, "totalTokenCount": 15}}
    asm = ReplyAssembler(gemini, streaming=True)
    asm.feed(sse(chunk("Fake "), chunk("reply"), sep=sep))
    assert asm.text() is None  # no finishReason yet: not a complete reply
    asm.feed(sse(chunk("", "STOP", **usage), sep=sep))
    assert asm.text() == "Fake reply"
    assert asm.tokens() == (12, 3)


@pytest.mark.parametrize(
    "last",
    [
        chunk("", "SAFETY"),
        chunk("", "RECITATION"),
        {"promptFeedback": {"blockReason": "SAFETY"}},
        {"error": {"code": 503, "message": "overloaded", "status": "UNAVAILABLE"}},
    ],
)
def test_blocked_or_failed_stream_is_not_a_reply(last: dict[str, Any]) -> None:
    asm = ReplyAssembler(gemini, streaming=True)
    asm.feed(sse(chunk("half a "), last))
    assert asm.text() is None


def test_whole_replies() -> None:
    assert gemini.reply_text(chunk("four", "STOP")) == "four"
    assert gemini.reply_text(chunk("cut off", "MAX_TOKENS")) == "cut off"
    assert gemini.reply_text([chunk("a "), chunk("b", "STOP")]) == "a b"  # a stream without alt=sse
    calls = {"candidates": [{"content": {"parts": [{"functionCall": {"name": "f"}}]}, "finishReason": "STOP"}]}
    assert gemini.reply_text(calls) == ""  # tools only: the user's turn still counts
    for broken in (chunk("x", "SAFETY"), chunk("x"), {"promptFeedback": {"blockReason": "OTHER"}}, "nope", None):
        assert gemini.reply_text(broken) is None


def test_streams_only_with_alt_sse() -> None:
    assert gemini.streams({}, STREAM)
    assert gemini.streams({}, "/v1beta/models/m:streamGenerateContent?key=k&alt=sse")
    assert not gemini.streams({}, "/v1beta/models/m:streamGenerateContent")
    assert not gemini.streams({"stream": True}, "/v1beta/models/m:generateContent?alt=sse")


def test_upstream_target_is_litellms_gemini_route() -> None:
    assert gemini.upstream_target(STREAM, "fake-model") == STREAM
    assert (
        gemini.upstream_target("/v1/models/gemini-x:generateContent", "demo") == "/v1beta/models/demo:generateContent"
    )
    assert gemini.upstream_target("/v1/models/a:streamGenerateContent?alt=sse", None) == (
        "/v1beta/models/a:streamGenerateContent?alt=sse"
    )
    encoded = "/v1bet%61/models/fake%2Dmodel%3AstreamGenerateContent?alt=sse"  # as a client may send it
    assert gemini.streams({}, encoded)
    assert gemini.upstream_target(encoded, "fake-model") == STREAM
    assert gemini.upstream_target(encoded, "a b") == "/v1beta/models/a%20b:streamGenerateContent?alt=sse"


def test_working_directory_from_the_session_context() -> None:
    for request in REQUESTS:
        found = gemini.working_directory(request["body"])
        assert found is not None and found.endswith("/gemini-cli/project")
        assert f"Context from: {found}/GEMINI.md" in json.dumps(request["body"])
    assert gemini.working_directory(body_of(user("Workspace Directories: /etc"))) is None


# --- through the real app (the fake provider stands in for LiteLLM's Gemini route) ---------------


def shipped_settings(tmp_path: Path, **changes: Any):  # type: ignore[no-untyped-def]
    return dataclasses.replace(make_settings(tmp_path), scopes=shipped_scopes(), **changes)


def streamed_text(raw: str) -> str:
    events = [json.loads(line[6:]) for line in raw.splitlines() if line.startswith("data: ")]
    return "".join(p.get("text", "") for e in events for p in e["candidates"][0]["content"]["parts"])


@pytest.mark.parametrize("i", range(len(REQUESTS)))
async def test_recorded_request_through_the_proxy(tmp_path: Path, i: int) -> None:
    """Scope, recall before the human's words, capture of the words only, and LiteLLM's own route."""
    request = REQUESTS[i]
    words = human_words(RECORDING, request)
    seeded_with = f"seeded-gemini-{i}"
    # Gemini CLI names its workspace in its session context: the request lands in that project's scope.
    workdir = gemini.working_directory(request["body"])
    assert workdir is not None
    scope = f"local:project-{hashlib.sha256(workdir.encode()).hexdigest()[:6]}"
    async with running(tmp_path, settings=shipped_settings(tmp_path)) as p:
        seeded = await p.client.post(
            "/v1/memories",
            json={"content": f"cat called Zorblax loves to eat tuna {seeded_with}", "user_id": scope},
        )
        assert seeded.status_code == 201, seeded.text
        r = await p.client.post(
            f"{request['path']}?{request['query']}", content=json.dumps(request["body"]), headers=request["headers"]
        )
        await p.drain()
        rows = await p.memories(scope)
    assert r.status_code == 200, r.text[:300]
    assert r.headers["x-memory-user-id"] == scope and r.headers["x-memory-injected"] == "1"
    assert streamed_text(r.text) == f"Fake reply to: {words}"
    (call,) = upstream_requests(seeded_with)
    assert call["path"] == request["path"] and call["query"] == "alt=sse"
    assert "x-goog-api-key" not in {k.lower() for k in call["headers"]}
    sent, recorded = serialized_parts(call["body"]), serialized_parts(request["body"])
    at = next(k for k, part in enumerate(sent) if seeded_with in part)
    assert sent[:at] == recorded[:at] and sent[at + 1 :] == recorded[at:]
    assert {k: v for k, v in call["body"].items() if k != "contents"} == {
        k: v for k, v in request["body"].items() if k != "contents"
    }
    stored = [row["content"] for row in rows]
    assert stored.count(words) == 1 and f"Fake reply to: {words}" in stored
    assert not any(s in c for c in stored for s in (*SCAFFOLDING, "session_context"))


async def test_percent_encoded_path_reaches_the_same_route(tmp_path: Path) -> None:
    m = marker()
    async with running(tmp_path, settings=shipped_settings(tmp_path)) as p:
        status, _, payload = await raw_request(
            p.port,
            "POST",
            b"/v1beta/models/fake-model%3AstreamGenerateContent?alt=sse",
            {"content-type": "application/json"},
            json.dumps(body_of(user(f"encoded {m}"))).encode(),
        )
    assert status == 200, payload[:300]
    (call,) = upstream_requests(m)
    assert call["path"] == "/v1beta/models/fake-model:streamGenerateContent" and call["query"] == "alt=sse"


@pytest.mark.parametrize("version", ["v1beta", "v1"])
async def test_generate_content_not_streamed(tmp_path: Path, version: str) -> None:
    m = marker()
    body = body_of(user(f"my parrot {m} is called Kiwi"))
    async with running(tmp_path, settings=shipped_settings(tmp_path)) as p:
        r = await p.client.post(
            f"/{version}/models/fake-model:generateContent", json=body, headers={"x-memory-user-id": "g"}
        )
        await p.drain()
        rows = await p.memories("g")
    assert r.status_code == 200, r.text
    assert r.json()["candidates"][0]["content"]["parts"][0]["text"] == f"Fake reply to: my parrot {m} is called Kiwi"
    (call,) = upstream_requests(m)
    assert call["path"] == "/v1beta/models/fake-model:generateContent"  # LiteLLM has no /v1/models/…:generateContent
    assert sorted(row["content"] for row in rows) == sorted(
        [f"my parrot {m} is called Kiwi", f"Fake reply to: my parrot {m} is called Kiwi"]
    )


async def test_renamed_model_goes_in_the_path(tmp_path: Path) -> None:
    m = marker()
    settings = shipped_settings(tmp_path, models=(ModelEntry("fake-model"),))
    async with running(tmp_path, settings=settings) as p:
        r = await p.client.post("/v1beta/models/fake-model-20250101:generateContent", json=body_of(user(m)))
    assert r.status_code == 200, r.text
    (call,) = upstream_requests(m)
    assert call["path"] == "/v1beta/models/fake-model:generateContent"  # the config's name, as for the others
    assert call["body"] == body_of(user(m))  # and never a `model` field in a Gemini body


KEYS = (ApiKey("gk-pinned-0123456789", user_id="gemini-home"), ApiKey("gk-admin-0123456789", admin=True))


async def test_keys_in_x_goog_api_key_and_query(tmp_path: Path) -> None:
    m = marker()
    async with running(tmp_path, settings=shipped_settings(tmp_path, keys=KEYS)) as p:
        header = await p.client.post(
            STREAM, json=body_of(user(f"header {m}")), headers={"x-goog-api-key": "gk-pinned-0123456789"}
        )
        query = await p.client.post(
            "/v1beta/models/fake-model:streamGenerateContent?key=gk-pinned-0123456789&alt=sse",
            json=body_of(user(f"query {m}")),
        )
        tokens = await p.client.post(
            "/v1beta/models/fake-model:countTokens",
            json=body_of(user(m)),
            headers={"x-goog-api-key": "gk-pinned-0123456789"},
        )
        elsewhere = await p.client.post(
            "/v1/chat/completions?key=gk-pinned-0123456789",
            json={"model": "fake-model", "messages": [{"role": "user", "content": f"elsewhere {m}"}]},
        )
    for r in (header, query):
        assert r.status_code == 200, r.text
        assert r.headers["x-memory-user-id"] == "gemini-home"  # the pinned key's scope, not gemini-cli's
    calls = upstream_requests(m)
    assert sorted(c.get("query") for c in calls) == ["alt=sse", "alt=sse"]  # the ?key= never went upstream
    assert not [c for c in calls if "gk-pinned" in json.dumps(c["headers"])]
    assert tokens.status_code != 403  # LiteLLM's countTokens is an inference path for pinned keys
    assert elsewhere.status_code == 401  # ?key= is a credential on Gemini paths only


@pytest.mark.parametrize(
    "credentials",
    [
        {"headers": {}},
        {"headers": {"x-goog-api-key": "gk-wrong"}},
        {"headers": {"x-goog-api-key": "gk-pinned-012345678"}},  # a prefix of a real key
        {"params": {"key": "gk-wrong"}},
    ],
)
async def test_wrong_key_is_401_in_the_gemini_shape(tmp_path: Path, credentials: dict[str, Any]) -> None:
    m = marker()
    async with running(tmp_path, settings=shipped_settings(tmp_path, keys=KEYS)) as p:
        r = await p.client.post(STREAM, json=body_of(user(m)), **credentials)
    assert r.status_code == 401
    assert r.json() == {"error": {"code": 401, "message": "missing or invalid API key", "status": "UNAUTHENTICATED"}}
    assert upstream_requests(m) == []


async def test_bad_bodies_answer_in_the_gemini_shape(tmp_path: Path) -> None:
    async with running(tmp_path, settings=shipped_settings(tmp_path)) as p:
        broken = await p.client.post(STREAM, content=b"{not json")
        listed = await p.client.post(STREAM, json=[1, 2])
    for r in (broken, listed):
        assert r.status_code == 400
        assert r.json()["error"]["status"] == "INVALID_ARGUMENT" and r.json()["error"]["code"] == 400


async def test_a_stream_that_breaks_ends_with_a_gemini_error_event(tmp_path: Path) -> None:
    m = marker()
    async with running(tmp_path, settings=shipped_settings(tmp_path)) as p:
        r = await p.client.post(STREAM, json=body_of(user(f"FAULT:break {m} and then some more words here")))
        await p.drain()
        rows = await p.memories("default-dev")
    assert r.status_code == 200  # the stream had started
    last = json.loads(r.text.strip().splitlines()[-1].removeprefix("data: "))
    assert last["error"]["status"] == "UNAVAILABLE" and last["error"]["code"] == 502
    assert not [row for row in rows if m in row["content"]]  # a cut reply is never stored


def routing_classifier(text: str) -> dict[str, Any]:
    """What Gemini CLI 0.61 sends before each turn when its model is `auto`: the human's words to a
    classifier that answers with a JSON verdict."""
    return body_of(
        user(text),
        systemInstruction={"parts": [{"text": "You are a specialized Task Routing AI. Assign a Complexity Score."}]},
        generationConfig={
            "temperature": 1,
            "responseMimeType": "application/json",
            "responseJsonSchema": {"type": "OBJECT", "properties": {"complexity_score": {"type": "INTEGER"}}},
        },
    )


def test_structured_output_requests_are_utility_calls() -> None:
    assert gemini.utility_request(routing_classifier("hi"))
    assert gemini.utility_request(body_of(user("hi"), generation_config={"response_schema": {"type": "OBJECT"}}))
    for request in REQUESTS:
        assert not gemini.utility_request(request["body"])
    assert not gemini.utility_request(body_of(user("hi"), generationConfig={"responseMimeType": "text/plain"}))


async def test_memory_leaves_utility_calls_alone(tmp_path: Path) -> None:
    m = marker()
    async with running(tmp_path, settings=shipped_settings(tmp_path)) as p:
        seeded = await p.client.post("/v1/memories", json={"content": f"my cat {m} loves tuna", "user_id": "g"})
        assert seeded.status_code == 201
        body = routing_classifier(f"what does my cat {m} love?")
        r = await p.client.post(
            "/v1beta/models/flash-lite:generateContent", json=body, headers={"x-memory-user-id": "g"}
        )
        await p.drain()
        rows = await p.memories("g")
    assert r.status_code == 200, r.text
    assert r.headers["x-memory-injected"] == "0"
    (call,) = [c for c in upstream_requests(m) if c["path"].endswith(":generateContent")]
    assert call["body"] == body  # nothing injected
    assert [row["content"] for row in rows] == [f"my cat {m} loves tuna"]  # nothing stored
