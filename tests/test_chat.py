"""In-process tests of the chat path's memory step: failures, model lists and response headers."""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from app.config import MemorySettings
from tests.inprocess import chat_body, make_settings, marker, running, upstream_requests

pytestmark = pytest.mark.timeout(30)


def path_for(anthropic: bool) -> str:
    return "/v1/messages" if anthropic else "/v1/chat/completions"


def reply_text(r, anthropic: bool, stream: bool) -> str:  # type: ignore[no-untyped-def]
    if not stream:
        data = r.json()
        return data["content"][0]["text"] if anthropic else data["choices"][0]["message"]["content"]
    out = []
    for line in r.text.splitlines():
        if not line.startswith("data: ") or line == "data: [DONE]":
            continue
        event = json.loads(line.removeprefix("data: "))
        if anthropic and event.get("type") == "content_block_delta":
            out.append(event["delta"]["text"])
        elif not anthropic and event.get("choices"):
            out.append(event["choices"][0]["delta"].get("content") or "")
    return "".join(out)


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize("anthropic", [False, True])
async def test_chat_succeeds_with_memory_error_when_search_raises(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, anthropic: bool, stream: bool
) -> None:
    m = marker()
    async with running(tmp_path) as p:
        seeded = await p.client.post("/v1/memories", json={"content": f"walrus facts {m}-memo"})
        assert seeded.status_code == 201

        def broken_recall(*args: object, **kwargs: object) -> list:
            raise RuntimeError("index is corrupt: secret-detail")

        monkeypatch.setattr(p.ctx.store, "recall", broken_recall)
        r = await p.client.post(path_for(anthropic), json=chat_body(f"walrus {m}", anthropic=anthropic, stream=stream))
        assert r.status_code == 200, r.text
        assert r.headers["x-memory-error"]
        assert "secret-detail" not in r.headers["x-memory-error"]
        assert r.headers["x-memory-injected"] == "0"
        assert r.headers["x-memory-user-id"] == "default-dev"
        assert reply_text(r, anthropic, stream) == f"Fake reply to: walrus {m}"
        health = (await p.client.get("/health")).json()
        assert health["memory_store"]["memory_errors"] >= 1
    (call,) = upstream_requests(f"walrus {m}")
    assert len(call["body"]["messages"]) == 1  # nothing injected
    assert f"{m}-memo" not in json.dumps(call["body"])


async def test_recall_works_when_search_does_not_raise(tmp_path: Path) -> None:
    """The control for the test above: the same seeded memory is injected when search works."""
    m = marker()
    async with running(tmp_path) as p:
        await p.client.post("/v1/memories", json={"content": f"walrus facts {m}-memo"})
        r = await p.client.post("/v1/chat/completions", json=chat_body(f"walrus {m}"))
    assert r.status_code == 200
    assert "x-memory-error" not in r.headers
    assert r.headers["x-memory-injected"] == "1"
    (call,) = upstream_requests(f"walrus {m}")
    assert f"{m}-memo" in json.dumps(call["body"])


def with_models(tmp_path: Path, **lists: tuple[str, ...]):  # type: ignore[no-untyped-def]
    base = make_settings(tmp_path)
    return replace(base, memory=replace(MemorySettings(), **lists))


@pytest.mark.parametrize(
    "lists",
    [{"enabled_for_models": ("fake-model", "claude-fake")}, {"disabled_for_models": ("other-model", "claude-other")}],
)
@pytest.mark.parametrize("anthropic", [False, True])
async def test_model_lists_respected(tmp_path: Path, lists: dict, anthropic: bool) -> None:
    m = marker()
    on_model = "claude-fake" if anthropic else "fake-model"
    off_model = "claude-other" if anthropic else "other-model"
    async with running(tmp_path, settings=with_models(tmp_path, **lists)) as p:
        for scope in ("on-" + m, "off-" + m):
            seeded = await p.client.post(
                "/v1/memories", json={"content": f"narwhal {m}-memo"}, headers={"x-memory-user-id": scope}
            )
            assert seeded.status_code == 201
        on = await p.client.post(
            path_for(anthropic),
            json=chat_body(f"narwhal on {m}", anthropic=anthropic, model=on_model),
            headers={"x-memory-user-id": "on-" + m},
        )
        off = await p.client.post(
            path_for(anthropic),
            json=chat_body(f"narwhal off {m}", anthropic=anthropic, model=off_model),
            headers={"x-memory-user-id": "off-" + m},
        )
        off_stream = await p.client.post(
            path_for(anthropic),
            json=chat_body(f"narwhal off stream {m}", anthropic=anthropic, model=off_model, stream=True),
            headers={"x-memory-user-id": "off-" + m},
        )
        await p.drain()
        on_rows = await p.memories("on-" + m)
        off_rows = await p.memories("off-" + m)
    assert on.status_code == off.status_code == off_stream.status_code == 200
    assert on.headers["x-memory-injected"] == "1"
    assert off.headers["x-memory-injected"] == "0"
    assert off_stream.headers["x-memory-injected"] == "0"
    assert off.headers["x-memory-user-id"] == "off-" + m
    # the enabled model captured its turn and reply; the disabled one stored nothing
    on_contents = {r["content"] for r in on_rows}
    assert {f"narwhal on {m}", f"Fake reply to: narwhal on {m}"} <= on_contents
    assert [r["content"] for r in off_rows] == [f"narwhal {m}-memo"]
    (off_call,) = upstream_requests(f"narwhal off {m}")
    assert f"{m}-memo" not in json.dumps(off_call["body"])


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize(
    ("path", "anthropic"), [("/v1/chat/completions", False), ("/chat/completions", False), ("/v1/messages", True)]
)
async def test_memory_user_id_header_on_chat_responses(
    tmp_path: Path, path: str, anthropic: bool, stream: bool
) -> None:
    async with running(tmp_path) as p:
        default = await p.client.post(path, json=chat_body(f"hi {marker()}", anthropic=anthropic, stream=stream))
        custom = await p.client.post(
            path,
            json=chat_body(f"hi {marker()}", anthropic=anthropic, stream=stream),
            headers={"x-memory-user-id": "team.alpha@proj:1"},
        )
        failed = await p.client.post(
            path,
            json=chat_body(f"FAULT:status=503 {marker()}", anthropic=anthropic, stream=stream),
            headers={"x-memory-user-id": "team.alpha@proj:1"},
        )
    assert default.status_code == 200, default.text
    assert default.headers["x-memory-user-id"] == "default-dev"
    assert default.headers["x-memory-injected"] == "0"
    assert custom.headers["x-memory-user-id"] == "team.alpha@proj:1"
    assert failed.status_code == 503
    assert failed.headers["x-memory-user-id"] == "team.alpha@proj:1"


async def _health_latencies(p, done: asyncio.Event) -> list[float]:  # type: ignore[no-untyped-def]
    """Time /health again and again until `done` is set."""
    latencies = []
    while not done.is_set():
        started = time.perf_counter()
        assert (await p.client.get("/health")).status_code == 200
        latencies.append(time.perf_counter() - started)
        await asyncio.sleep(0.02)
    return latencies


@pytest.mark.parametrize("anthropic", [False, True])
async def test_megabyte_of_unclosed_tags_never_stalls_other_requests(tmp_path: Path, anthropic: bool) -> None:
    m = marker()
    text = f"{m} " + "<recalled-memories><system-reminder>" * (1024 * 1024 // 36)
    async with running(tmp_path) as p:
        # The unclosed tags' words are the question's too: the note covers them, so it is relevant.
        await p.client.post("/v1/memories", json={"content": f"{m} seeded note: recalled memories, system reminder"})
        done = asyncio.Event()
        watcher = asyncio.create_task(_health_latencies(p, done))
        await asyncio.sleep(0.05)
        started = time.perf_counter()
        r = await p.client.post(path_for(anthropic), json=chat_body(text, anthropic=anthropic))
        elapsed = time.perf_counter() - started
        done.set()
        latencies = await watcher
        await p.drain()
        rows = await p.memories("default-dev")
    assert r.status_code == 200, r.text[:200]
    assert elapsed < 5
    assert latencies and max(latencies) < 0.5, max(latencies)
    (call,) = upstream_requests(m)
    assert call["body"]["messages"][-1]["content"] == text  # forwarded unchanged
    assert r.headers["x-memory-injected"] == "1"
    cap = p.settings.memory.max_memory_chars  # capture keeps the first max_memory_chars of a giant turn
    assert any(row["content"] == text.strip()[:cap] for row in rows)


# --- the Responses API ---------------------------------------------------------------------------

OPAQUE_ITEMS = [
    {"type": "reasoning", "id": "rs_1", "summary": [], "encrypted_content": "gAAAA-opaque-reasoning"},
    {"type": "function_call", "call_id": "call_1", "name": "shell", "arguments": '{"cmd": "ls"}'},
    {"type": "function_call_output", "call_id": "call_1", "output": "tool-output-words"},
    {"type": "some_future_item", "data": {"text": "future-item-words"}},
]


def responses_body(text: str, *, stream: bool = False, cwd: str | None = None, **extra: Any) -> dict[str, Any]:
    """A Codex-like Responses request: a developer item, scaffolding (naming `cwd` when given), the
    human's message, tool items."""
    where = f"<cwd>{cwd}</cwd>" if cwd else "<shell>bash</shell>"
    return {
        "model": "fake-model",
        "instructions": "Be brief.",
        "input": [
            {"type": "message", "role": "developer", "content": [{"type": "input_text", "text": "dev-rules"}]},
            {
                "type": "message",
                "role": "user",
                "content": [{"type": "input_text", "text": f"<environment_context>{where}</environment_context>"}],
            },
            {"type": "message", "role": "user", "content": [{"type": "input_text", "text": text}]},
            *OPAQUE_ITEMS,
        ],
        "stream": stream,
        **extra,
    }


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize("path", ["/v1/responses", "/responses"])
async def test_responses_recall_inject_and_capture(tmp_path: Path, path: str, stream: bool) -> None:
    m = marker()
    extra = {"previous_response_id": "resp_prev", "store": False, "include": ["reasoning.encrypted_content"]}
    body = responses_body(f"where do otters sleep {m}", stream=stream, cwd="/x", background=False, **extra)
    project = f"local:x-{hashlib.sha256(b'/x').hexdigest()[:6]}"  # the body's <cwd>/x</cwd>
    async with running(tmp_path) as p:
        await p.client.post("/v1/memories", json={"content": f"otters sleep in rafts {m}-memo", "user_id": project})
        r = await p.client.post(path, json=body)
        await p.drain()
        rows = await p.memories(project)
    assert r.status_code == 200, r.text
    assert r.headers["x-memory-injected"] == "1"
    assert r.headers["x-memory-user-id"] == project
    (call,) = upstream_requests(f"where do otters sleep {m}")
    sent = call["body"]
    assert sent["instructions"] == "Be brief." and sent["input"][:2] == body["input"][:2]
    assert f"{m}-memo" in json.dumps(sent["input"][2]) and sent["input"][3:] == body["input"][2:]
    assert {k: sent[k] for k in (*extra, "background")} == {**extra, "background": False}
    stored = {row["content"] for row in rows}
    question = f"where do otters sleep {m}"
    assert stored == {f"otters sleep in rafts {m}-memo", question, f"Fake reply to: {question}"}
    assert not any(w in json.dumps(rows) for w in ("tool-output", "future-item", "opaque", "environment", "dev-rules"))


FAULTS = [
    (fault, stream)
    for fault in ("FAULT:failed", "FAULT:incomplete", "FAULT:break", "FAULT:status=503")
    for stream in (False, True)
    if stream or fault != "FAULT:break"  # only a stream can break midway
]


@pytest.mark.parametrize(("fault", "stream"), FAULTS)
async def test_failed_or_cut_responses_are_not_stored(tmp_path: Path, fault: str, stream: bool) -> None:
    m = marker()
    async with running(tmp_path) as p:
        r = await p.client.post("/v1/responses", json=responses_body(f"{fault} {m}", stream=stream))
        await p.drain()
        rows = await p.memories("default-dev")
    assert r.status_code in (200, 503)
    assert not any(m in row["content"] for row in rows)


async def test_responses_errors_are_openai_shaped(tmp_path: Path) -> None:
    async with running(tmp_path) as p:
        bad_json = await p.client.post("/v1/responses", content=b"{not json")
        bad_mode = await p.client.post(
            "/v1/responses", json=responses_body("hi"), headers={"x-memory-mode": "sideways"}
        )
        bad_scope = await p.client.post(
            "/responses", json=responses_body("hi"), headers={"x-memory-user-id": "no spaces allowed"}
        )
    for r in (bad_json, bad_mode, bad_scope):
        assert r.status_code == 400
        error = r.json()["error"]
        assert error["type"] == "invalid_request_error" and error["message"]


@pytest.mark.parametrize(("mode", "injects", "captures"), [("off", False, False), ("read", True, False)])
async def test_responses_memory_modes(tmp_path: Path, mode: str, injects: bool, captures: bool) -> None:
    m = marker()
    async with running(tmp_path) as p:
        await p.client.post("/v1/memories", json={"content": f"badgers dig setts {m}-memo"})
        r = await p.client.post(
            "/v1/responses", json=responses_body(f"what do badgers dig {m}"), headers={"x-memory-mode": mode}
        )
        await p.drain()
        rows = await p.memories("default-dev")
    assert r.status_code == 200
    assert r.headers["x-memory-injected"] == ("1" if injects else "0")
    assert any(row["content"] == f"what do badgers dig {m}" for row in rows) is captures


async def _seed(p, scope: str, notes: list[str]) -> None:  # type: ignore[no-untyped-def]
    for content in notes:
        r = await p.client.post("/v1/memories", json={"content": content, "user_id": scope})
        assert r.status_code == 201, r.text


@pytest.mark.parametrize("anthropic", [False, True])
async def test_only_relevant_notes_go_in_and_none_in_an_unrelated_scope(tmp_path: Path, anthropic: bool) -> None:
    m = marker()
    fish = f"{m}fish"  # a word no other test uses, so the upstream's log finds this test's requests
    own, other = f"{m}-own", f"{m}-other"
    async with running(tmp_path) as p:
        # The relevant note comes last: the turn right after it would come along (its context covers the question).
        await _seed(p, own, ["we moved the office plants", "lunch", f"the {fish} tank needs cleaning every week"])
        # Another project's scope shares only common words with the question.
        await _seed(p, other, ["cleaning the build cache every week", "the week's release notes", "tank top sale"])
        asked = {}
        for scope in (own, other):
            r = await p.client.post(
                path_for(anthropic),
                json=chat_body(f"how often does the {fish} tank need cleaning?", anthropic=anthropic),
                headers={"x-memory-user-id": scope, "x-memory-mode": "read"},
            )
            assert r.status_code == 200, r.text
            asked[scope] = r.headers["x-memory-injected"]
        own_call, other_call = upstream_requests(fish)
    assert asked == {own: "1", other: "0"}
    assert f"{fish} tank needs cleaning" in json.dumps(own_call["body"])
    assert "office plants" not in json.dumps(own_call["body"])
    assert "recalled-memories" not in json.dumps(other_call["body"])


async def test_near_duplicate_notes_go_in_once(tmp_path: Path) -> None:
    m = marker()
    fish = f"{m}fish"
    async with running(tmp_path) as p:
        await _seed(
            p,
            m,
            [
                f"The {fish} tank needs cleaning every week.",
                f"the {fish} tank needs cleaning every week!",
                f"{fish} tank cleaning: use vinegar, not soap",
            ],
        )
        r = await p.client.post(
            "/v1/chat/completions",
            json=chat_body(f"{fish} tank cleaning"),
            headers={"x-memory-user-id": m, "x-memory-mode": "read"},
        )
        (call,) = upstream_requests(fish)
    assert r.headers["x-memory-injected"] == "2"
    sent = json.dumps(call["body"]).lower()
    assert sent.count("needs cleaning every week") == 1
    assert "vinegar" in sent


async def test_a_speakers_name_is_known_to_a_scope_even_when_nobody_says_it(tmp_path: Path) -> None:
    m = marker()
    fish = f"{m}fish"
    own, other = f"{m}-own", f"{m}-other"
    async with running(tmp_path) as p:
        for scope, who in ((own, "Zorina"), (other, "Bob")):
            note = {"content": f"I bought a new {fish} tank for the office", "user_id": scope}
            r = await p.client.post("/v1/memories", json={**note, "metadata": {"speaker": who}})
            assert r.status_code == 201, r.text
        asked = {}
        for scope in (own, other):
            r = await p.client.post(
                "/v1/chat/completions",
                json=chat_body(f"What did Zorina buy for the {fish} office?"),
                headers={"x-memory-user-id": scope, "x-memory-mode": "read"},
            )
            asked[scope] = r.headers["x-memory-injected"]
    # Zorina said it in her scope: her turn covers her name there. Where only Bob spoke, her name is a stranger.
    assert asked == {own: "1", other: "0"}


@pytest.mark.parametrize("label", [None, "application/x-www-form-urlencoded", "text/plain; charset=utf-8"])
@pytest.mark.parametrize("anthropic", [False, True])
async def test_a_json_chat_with_another_label_goes_upstream_as_json(
    tmp_path: Path, anthropic: bool, label: str | None
) -> None:
    """`curl -d` labels a body as a form; LiteLLM would then read form fields and find no messages."""
    m = marker()
    async with running(tmp_path) as p:
        r = await p.client.post(
            path_for(anthropic),
            content=json.dumps(chat_body(f"labelled {m}", anthropic=anthropic)),
            headers={"content-type": label} if label else {},
        )
        assert r.status_code == 200, r.text
        assert reply_text(r, anthropic, stream=False) == f"Fake reply to: labelled {m}"
        await p.drain()
        assert {x["content"] for x in await p.memories("default-dev")} >= {f"labelled {m}"}
    (call,) = upstream_requests(m)
    assert {k.lower(): v for k, v in call["headers"].items()}["content-type"] == "application/json"


@pytest.mark.parametrize(
    ("label", "said"),
    [
        ("application/x-www-form-urlencoded", "says 'application/x-www-form-urlencoded'"),
        ("multipart/form-data; boundary=x", "says 'multipart/form-data; boundary=x'"),
        (None, "is missing"),
    ],
)
@pytest.mark.parametrize("anthropic", [False, True])
async def test_a_chat_body_that_is_not_json_is_refused_naming_its_content_type(
    tmp_path: Path, anthropic: bool, label: str | None, said: str
) -> None:
    m = marker()
    async with running(tmp_path) as p:
        r = await p.client.post(
            path_for(anthropic),
            content=f"model=fake-model&messages=hello+{m}",
            headers={"content-type": label} if label else {},
        )
    assert r.status_code == 400
    body = r.json()
    error = body["error"]
    assert (body["type"] == "error" and error["type"] == "invalid_request_error") if anthropic else error["code"]
    assert error["message"].startswith("request body is not valid JSON: ")
    assert f"its content-type header {said}" in error["message"]
    assert "content-type: application/json" in error["message"]
    assert not upstream_requests(m)


async def test_a_chat_body_labelled_json_that_is_not_json_needs_no_hint(tmp_path: Path) -> None:
    async with running(tmp_path) as p:
        r = await p.client.post(path_for(False), content=b"{oops", headers={"content-type": "application/json"})
    assert r.status_code == 400
    assert "content-type" not in r.json()["error"]["message"]
