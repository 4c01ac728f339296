"""End-to-end memory: capture, recall, isolation, modes and the memory API through the real stack."""

from __future__ import annotations

import httpx
import pytest

from tests.e2e import anth, marker, oai, provider_calls, wait_for, writer_idle
from tests.stack import stack_config, start_keyed_memory, start_memory

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(900)]


def memories(stack, scope: str) -> list[dict]:
    r = httpx.get(f"{stack.memory_url}/v1/memories", params={"user_id": scope, "limit": 100}, timeout=10)
    assert r.status_code == 200, r.text
    return r.json()["data"]


def contents(stack, scope: str) -> list[str]:
    return sorted(m["content"] for m in memories(stack, scope))


def test_fact_recalled_in_same_scope_only(stack):
    m = marker()
    scope_a, scope_b = f"proj-a-{m}", f"proj-b-{m}"
    fact = f"My cat is called Zorblax and she loves tuna {m}"
    oai(stack.memory_url, **{"x-memory-user-id": scope_a}).chat.completions.create(
        model="fake-model", messages=[{"role": "user", "content": fact}]
    )
    assert wait_for(lambda: fact in contents(stack, scope_a))
    question = f"What does my cat love to eat? q{m}"
    raw = oai(stack.memory_url, **{"x-memory-user-id": scope_a}).chat.completions.with_raw_response.create(
        model="fake-model", messages=[{"role": "system", "content": "Be brief."}, {"role": "user", "content": question}]
    )
    assert int(raw.headers["x-memory-injected"]) >= 1
    (call,) = provider_calls(stack, f"q{m}")
    sent = call["body"]["messages"]
    # Injected as its own message right before the last user turn; the system prompt is untouched.
    assert sent[0] == {"role": "system", "content": "Be brief."}
    assert sent[-1]["content"] == question
    assert "Zorblax" in sent[-2]["content"] and "recalled-memories" in sent[-2]["content"]
    # Another scope asking the same question gets nothing of scope A.
    other = f"What does my cat love to eat? o{m}"
    raw_b = oai(stack.memory_url, **{"x-memory-user-id": scope_b}).chat.completions.with_raw_response.create(
        model="fake-model", messages=[{"role": "user", "content": other}]
    )
    assert raw_b.headers["x-memory-injected"] == "0"
    (call_b,) = provider_calls(stack, f"o{m}")
    assert "Zorblax" not in str(call_b["body"])


def test_streamed_turns_are_captured_openai_and_anthropic(stack):
    m = marker()
    scope = f"stream-{m}"
    chunks = oai(stack.memory_url, **{"x-memory-user-id": scope}).chat.completions.create(
        model="fake-model", messages=[{"role": "user", "content": f"streamed openai {m}"}], stream=True
    )
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    with anth(stack.memory_url, **{"x-memory-user-id": scope}).messages.stream(
        model="claude-fake", max_tokens=50, messages=[{"role": "user", "content": f"streamed anthropic {m}"}]
    ) as s:
        "".join(s.text_stream)
    expected = [
        f"Fake reply to: streamed anthropic {m}",
        f"Fake reply to: streamed openai {m}",
        f"streamed anthropic {m}",
        f"streamed openai {m}",
    ]
    assert wait_for(lambda: contents(stack, scope) == expected), contents(stack, scope)
    roles = {x["content"]: x["role"] for x in memories(stack, scope)}
    assert roles[f"streamed openai {m}"] == "user" and roles[expected[1]] == "assistant"
    assert all(x["model"] in ("fake-model", "claude-fake") for x in memories(stack, scope))


def test_responses_api_recall_and_capture_through_litellm(stack):
    m = marker()
    scope = f"resp-{m}"
    client = oai(stack.memory_url, **{"x-memory-user-id": scope})
    fact = f"Our staging database is called Walrus {m}"
    first = client.responses.create(model="fake-model", instructions="Be brief.", input=fact, store=True)
    assert wait_for(lambda: fact in contents(stack, scope))
    question = f"What is the staging database {m} called?"
    with client.responses.stream(
        model="fake-model",
        instructions="Be brief.",
        previous_response_id=first.id,
        input=[{"role": "user", "content": [{"type": "input_text", "text": question}]}],
    ) as s:
        s.until_done()
    (call,) = provider_calls(stack, question)
    sent = call["body"]
    assert sent["instructions"] == "Be brief." and sent["previous_response_id"]
    assert fact in str(sent["input"][0]) and "recalled-memories" in str(sent["input"][0])
    assert sent["input"][1]["content"][0]["text"] == question
    expected = sorted([fact, f"Fake reply to: {fact}", question, f"Fake reply to: {question}"])
    assert wait_for(lambda: contents(stack, scope) == expected), contents(stack, scope)


def test_resent_history_is_not_duplicated(stack):
    m = marker()
    scope = f"hist-{m}"
    client = oai(stack.memory_url, **{"x-memory-user-id": scope, "x-memory-mode": "write"})
    first = [{"role": "user", "content": f"first turn {m}"}]
    r1 = client.chat.completions.create(model="fake-model", messages=first)
    assert wait_for(lambda: len(memories(stack, scope)) == 2)
    history = [*first, {"role": "assistant", "content": r1.choices[0].message.content}]
    client.chat.completions.create(model="fake-model", messages=[*history, {"role": "user", "content": f"second {m}"}])
    client.chat.completions.create(model="fake-model", messages=[*history, {"role": "user", "content": f"second {m}"}])
    assert wait_for(lambda: len(memories(stack, scope)) == 4)
    # A third identical resend after the writer drained still adds nothing.
    client.chat.completions.create(model="fake-model", messages=[*history, {"role": "user", "content": f"second {m}"}])
    assert wait_for(lambda: writer_idle(stack.memory_url))
    assert len(memories(stack, scope)) == 4


def test_claude_code_scaffolding_is_not_stored(stack):
    m = marker()
    scope = f"cc-{m}"
    system = [{"type": "text", "text": "You are Claude Code.", "cache_control": {"type": "ephemeral"}}]
    messages = [
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "<system-reminder>Tool list and CLAUDE.md here</system-reminder>"},
                {"type": "text", "text": f"please refactor the parser {m}"},
            ],
        },
    ]
    client = anth(stack.memory_url, **{"x-memory-user-id": scope})
    client.messages.create(model="claude-fake", max_tokens=50, system=system, messages=messages)
    assert wait_for(lambda: len(memories(stack, scope)) == 2)
    stored = contents(stack, scope)
    assert f"please refactor the parser {m}" in stored
    assert not any("system-reminder" in s or "Claude Code" in s for s in stored)
    # A tool_result turn is agent material, not the human's words.
    tool_turn = [
        *messages,
        {"role": "assistant", "content": [{"type": "tool_use", "id": "t1", "name": "ls", "input": {}}]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t1", "content": f"secret listing {m}"}]},
    ]
    client.messages.create(model="claude-fake", max_tokens=50, system=system, messages=tool_turn)
    assert wait_for(lambda: writer_idle(stack.memory_url))
    # (The fake provider's reply quotes the tool's output: that reply is the model's words, and stored.)
    assert not any("secret listing" in m["content"] for m in memories(stack, scope) if m["role"] == "user")
    # The recalled block goes before the last user turn; the cached system prompt arrives unchanged.
    client.messages.create(
        model="claude-fake",
        max_tokens=50,
        system=system,
        messages=[{"role": "user", "content": f"how is the parser refactor going z{m}"}],
    )
    (call,) = provider_calls(stack, f"z{m}")
    assert call["body"]["system"][0]["text"] == "You are Claude Code."
    assert "recalled-memories" not in str(call["body"]["system"])
    assert "refactor the parser" in str(call["body"]["messages"][-2])


@pytest.mark.parametrize(
    ("mode", "stores", "injects"), [("off", False, False), ("read", False, True), ("write", True, False)]
)
def test_memory_modes(stack, mode, stores, injects):
    m = marker()
    scope = f"mode-{mode}-{m}"
    seed = httpx.post(
        f"{stack.memory_url}/v1/memories", json={"user_id": scope, "content": f"The deploy password rotates weekly {m}"}
    )
    assert seed.status_code == 201
    client = oai(stack.memory_url, **{"x-memory-user-id": scope, "x-memory-mode": mode})
    raw = client.chat.completions.with_raw_response.create(
        model="fake-model", messages=[{"role": "user", "content": f"when does the deploy password rotate? {m}"}]
    )
    assert (int(raw.headers["x-memory-injected"]) > 0) is injects
    assert wait_for(lambda: writer_idle(stack.memory_url))
    if stores:
        assert wait_for(lambda: len(memories(stack, scope)) == 3)
    else:
        assert len(memories(stack, scope)) == 1


def test_bad_memory_mode_is_400(stack):
    r = httpx.post(
        f"{stack.memory_url}/v1/chat/completions",
        headers={"x-memory-mode": "sometimes"},
        json={"model": "fake-model", "messages": [{"role": "user", "content": "x"}]},
    )
    assert r.status_code == 400 and "x-memory-mode" in r.json()["error"]["message"]


def test_memory_api_round_trip_and_forget(stack):
    m = marker()
    scope, other = f"api-{m}", f"api-other-{m}"
    url = f"{stack.memory_url}/v1/memories"
    ids = []
    for i in range(5):
        r = httpx.post(url, json={"user_id": scope, "content": f"note {i} about kiwis {m}", "metadata": {"i": i}})
        assert r.status_code == 201
        ids.append(r.json()["id"])
    httpx.post(url, json={"user_id": other, "content": f"other scope kiwis {m}"})
    got = httpx.get(f"{url}/{ids[0]}", params={"user_id": scope}).json()
    assert got["content"] == f"note 0 about kiwis {m}" and got["metadata"] == {"i": 0}
    assert httpx.get(f"{url}/{ids[0]}", params={"user_id": other}).status_code == 404
    # Pagination: newest first, every row once.
    seen, cursor = [], None
    while True:
        page = httpx.get(url, params={"user_id": scope, "limit": 2, **({"cursor": cursor} if cursor else {})}).json()
        seen += [x["id"] for x in page["data"]]
        cursor = page["next_cursor"]
        if not cursor:
            break
    assert seen == list(reversed(ids))
    hits = httpx.get(f"{url}/search", params={"user_id": scope, "q": "kiwis"}).json()["data"]
    assert len(hits) == 5 and all("score" in h and h["user_id"] == scope for h in hits)
    exported = httpx.get(f"{url}/export", params={"user_id": scope}).text
    assert len(exported.strip().splitlines()) == 5
    assert httpx.delete(f"{url}/{ids[0]}", params={"user_id": scope}).status_code == 204
    assert httpx.delete(f"{url}/{ids[0]}", params={"user_id": scope}).status_code == 404
    assert httpx.delete(url, params={"user_id": scope}).json() == {"deleted": 4}
    assert httpx.get(f"{url}/search", params={"user_id": scope, "q": "kiwis"}).json()["data"] == []
    assert len(memories(stack, other)) == 1
    # Import restores the exported scope exactly.
    r = httpx.post(f"{url}/import", content=exported)
    assert r.json() == {"imported": 5, "skipped": 0}
    again = httpx.get(f"{url}/export", params={"user_id": scope}).text.strip().splitlines()
    strip = lambda lines: [{k: v for k, v in __import__("json").loads(x).items() if k != "id"} for x in lines]  # noqa: E731
    assert strip(again) == strip(exported.strip().splitlines())


def test_memory_api_scope_rules_with_keys(stack, tmp_path_factory):
    proc, url = start_keyed_memory(
        stack, tmp_path_factory.mktemp("keyed-mem"), "keyedmem", "pycharm-key-2", "admin-key-2"
    )
    try:
        pin = {"Authorization": "Bearer pycharm-key-2"}
        admin = {"Authorization": "Bearer admin-key-2"}
        assert httpx.post(f"{url}/v1/memories", headers=pin, json={"content": "mine"}).json()["user_id"] == "pycharm-ai"
        assert (
            httpx.post(f"{url}/v1/memories", headers=admin, json={"user_id": "other", "content": "theirs"}).status_code
            == 201
        )
        assert httpx.get(f"{url}/v1/memories", headers=pin, params={"user_id": "other"}).status_code == 403
        assert httpx.delete(f"{url}/v1/memories", headers=pin, params={"user_id": "other"}).status_code == 403
        assert [x["content"] for x in httpx.get(f"{url}/v1/memories", headers=pin).json()["data"]] == ["mine"]
        assert (
            httpx.get(f"{url}/v1/memories", headers=admin, params={"user_id": "other"}).json()["data"][0]["content"]
            == "theirs"
        )
        assert httpx.get(f"{url}/v1/memories").status_code == 401
    finally:
        proc.stop()


def test_memory_store_failure_never_breaks_chat(stack, tmp_path_factory):
    config = stack_config(int(stack.provider_url.rsplit(":", 1)[1]))
    workdir = tmp_path_factory.mktemp("broken-store")
    blocker = workdir / "not-a-dir"
    blocker.write_text("a file where the database folder should be")
    proc, url = start_memory(
        workdir, "broken", config, int(stack.litellm_url.rsplit(":", 1)[1]), MEMORY_DB=str(blocker / "memory.db")
    )
    try:
        raw = oai(url).chat.completions.with_raw_response.create(
            model="fake-model", messages=[{"role": "user", "content": "still works?"}]
        )
        assert raw.parse().choices[0].message.content == "Fake reply to: still works?"
        assert raw.headers["x-memory-error"] == "memory store unavailable"
        health = httpx.get(f"{url}/health").json()
        assert health["status"] == "degraded" and health["memory_store"]["status"] == "unavailable"
    finally:
        proc.stop()
