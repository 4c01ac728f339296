"""In-process tests of the chat path's memory step: failures, model lists and response headers."""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import replace
from pathlib import Path

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

        def broken_search(*args: object, **kwargs: object) -> list:
            raise RuntimeError("index is corrupt: secret-detail")

        monkeypatch.setattr(p.ctx.store, "search", broken_search)
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
        await p.client.post("/v1/memories", json={"content": f"{m} seeded note"})
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
    kept = text.strip()[: p.settings.memory.max_memory_chars]  # capture keeps at most max_memory_chars
    assert any(row["content"] == kept for row in rows)
