"""The memory REST API on both store backends: CRUD, by-id lookups across scopes, exact restore, error classes."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path

import orjson
import pytest

from app.config import ApiKey
from tests.inprocess import Running, make_settings, marker, running

pytestmark = pytest.mark.timeout(60)
ADMIN = {"Authorization": "Bearer admin-secret"}
ALICE = {"Authorization": "Bearer alice-secret"}
KEYS = (ApiKey("admin-secret", admin=True), ApiKey("alice-secret", user_id="alice"))


@pytest.fixture
async def proxy(tmp_path: Path, store_url: str) -> AsyncIterator[Running]:
    """A proxy on each backend, anonymous (loopback, no keys)."""
    async with running(tmp_path, settings=replace(make_settings(tmp_path), db_path=store_url)) as p:
        yield p


@pytest.fixture
async def keyed(tmp_path: Path, store_url: str) -> AsyncIterator[Running]:
    """A proxy on each backend with an admin key and a key pinned to scope alice."""
    async with running(tmp_path, settings=replace(make_settings(tmp_path), db_path=store_url, keys=KEYS)) as p:
        yield p


async def test_round_trip_list_search_get_delete_forget(proxy: Running) -> None:
    m = marker()
    first = await proxy.client.post("/v1/memories", json={"user_id": "proj", "content": f"deploys use kiwi {m}"})
    assert first.status_code == 201, first.text
    mem = first.json()
    again = await proxy.client.post("/v1/memories", json={"user_id": "proj", "content": f"deploys use kiwi {m}"})
    assert again.status_code == 200 and again.json()["id"] == mem["id"]
    await proxy.client.post("/v1/memories", json={"user_id": "proj", "content": "an unrelated note on tabs"})
    listed = (await proxy.client.get("/v1/memories", params={"user_id": "proj", "limit": 1})).json()
    assert len(listed["data"]) == 1 and listed["next_cursor"]
    page2 = await proxy.client.get("/v1/memories", params={"user_id": "proj", "cursor": listed["next_cursor"]})
    assert [x["id"] for x in listed["data"] + page2.json()["data"]].count(mem["id"]) == 1
    found = (await proxy.client.get("/v1/memories/search", params={"user_id": "proj", "q": "kiwi deploy"})).json()
    assert found["data"][0]["id"] == mem["id"] and found["data"][0]["score"] > 0
    assert (await proxy.client.get(f"/v1/memories/{mem['id']}", params={"user_id": "proj"})).json() == mem
    assert (await proxy.client.delete(f"/v1/memories/{mem['id']}", params={"user_id": "proj"})).status_code == 204
    assert (await proxy.client.get(f"/v1/memories/{mem['id']}", params={"user_id": "proj"})).status_code == 404
    assert (await proxy.client.delete("/v1/memories", params={"user_id": "proj"})).json() == {"deleted": 1}
    assert await proxy.memories("proj") == []


async def test_anonymous_finds_a_memory_by_id_in_any_scope(proxy: Running) -> None:
    mem = (await proxy.client.post("/v1/memories", json={"user_id": "elsewhere", "content": "kept elsewhere"})).json()
    got = await proxy.client.get(f"/v1/memories/{mem['id']}")
    assert got.status_code == 200 and got.json() == mem
    assert (await proxy.client.get(f"/v1/memories/{mem['id']}", params={"user_id": "other"})).status_code == 404
    assert (await proxy.client.delete(f"/v1/memories/{mem['id']}")).status_code == 204
    assert await proxy.memories("elsewhere") == []
    assert (await proxy.client.get(f"/v1/memories/{mem['id']}")).status_code == 404


async def test_by_id_reach_follows_the_key(keyed: Running) -> None:
    c = keyed.client
    bobs = (await c.post("/v1/memories", json={"user_id": "bob", "content": "bob's note"}, headers=ADMIN)).json()
    alices = (await c.post("/v1/memories", json={"content": "alice's note"}, headers=ALICE)).json()
    assert alices["user_id"] == "alice"
    # The admin key sees every scope: an id alone is enough.
    assert (await c.get(f"/v1/memories/{bobs['id']}", headers=ADMIN)).json() == bobs
    assert (await c.get(f"/v1/memories/{alices['id']}", headers=ADMIN)).json() == alices
    # A pinned key sees its own scope only, and learns nothing about another's ids.
    assert (await c.get(f"/v1/memories/{alices['id']}", headers=ALICE)).json() == alices
    assert (await c.get(f"/v1/memories/{bobs['id']}", headers=ALICE)).status_code == 404
    assert (await c.delete(f"/v1/memories/{bobs['id']}", headers=ALICE)).status_code == 404
    assert (await c.get(f"/v1/memories/{bobs['id']}", headers=ADMIN)).status_code == 200
    assert (await c.delete(f"/v1/memories/{bobs['id']}", headers=ADMIN)).status_code == 204


async def test_export_forget_import_is_an_exact_restore(proxy: Running) -> None:
    c = proxy.client
    lines = [
        {"content": f"turn {i} about kiwi", "role": "user" if i % 2 else "assistant", "metadata": {"n": i}}
        for i in range(7)
    ]
    body = b"".join(
        orjson.dumps({**x, "user_id": "r", "created_at": 1_700_000_000 + i * 0.25}) + b"\n" for i, x in enumerate(lines)
    )
    assert (await c.post("/v1/memories/import", content=body)).json() == {"imported": 7, "skipped": 0}
    before = (await c.get("/v1/memories/export", params={"user_id": "r"})).content
    assert before.count(b"\n") == 7
    search_before = (await c.get("/v1/memories/search", params={"user_id": "r", "q": "turn kiwi"})).json()
    assert (await c.delete("/v1/memories", params={"user_id": "r"})).json() == {"deleted": 7}
    restored = await c.post("/v1/memories/import", content=before)
    assert restored.json() == {"imported": 7, "skipped": 0}
    assert (await c.get("/v1/memories/export", params={"user_id": "r"})).content == before
    search_after = (await c.get("/v1/memories/search", params={"user_id": "r", "q": "turn kiwi"})).json()
    assert search_after == search_before
    # Importing the same export again skips every line: the ids are taken.
    assert (await c.post("/v1/memories/import", content=before)).json() == {"imported": 0, "skipped": 7}


async def test_import_skips_an_id_that_exists(proxy: Running) -> None:
    c = proxy.client
    mem = (await c.post("/v1/memories", json={"user_id": "s", "content": "original text"})).json()
    line = orjson.dumps({"id": mem["id"], "user_id": "s", "content": "different text, same id"}) + b"\n"
    assert (await c.post("/v1/memories/import", content=line)).json() == {"imported": 0, "skipped": 1}
    assert (await c.get(f"/v1/memories/{mem['id']}")).json()["content"] == "original text"
    bad = orjson.dumps({"id": "no spaces allowed", "content": "x"}) + b"\n"
    r = await c.post("/v1/memories/import", content=bad)
    assert r.status_code == 400 and "line 1: id" in r.text


async def test_only_invalid_input_is_a_400(proxy: Running, monkeypatch: pytest.MonkeyPatch) -> None:
    r = await proxy.client.get("/v1/memories", params={"cursor": "not-a-cursor"})
    assert r.status_code == 400 and "cursor" in r.text

    async def broken(*args: object) -> list:
        raise ValueError("a bug inside the store")

    monkeypatch.setattr(proxy.ctx.store, "search", broken)
    r = await proxy.client.get("/v1/memories/search", params={"q": "anything"})
    assert r.status_code == 500, r.text
    assert "a bug inside the store" not in r.text


@pytest.mark.parametrize("anthropic", [False, True])
async def test_input_the_stores_cannot_hold_is_a_400_in_the_callers_dialect(proxy: Running, anthropic: bool) -> None:
    headers = {"anthropic-version": "2023-06-01"} if anthropic else {}
    bad_queries = ["limit=²", "limit=١٢", "limit=" + "1" * 5000]
    bad_queries += ["cursor=nan_1", "cursor=1e400_1", "cursor=1.5_" + "9" * 30]
    bad_bodies = [
        {"content": "x", "created_at": "0001-01-01T00:00:00+14:00"},
        {"content": "x", "created_at": "9999-12-31T23:59:59-14:00"},
        {"content": "x", "created_at": -62135596801},
        {"content": "a\x00b"},
        {"content": "x", "model": "m\x00"},
        {"content": "x", "model": 5},
        {"content": "x", "role": ["user"]},
    ]
    for query in bad_queries:
        r = await proxy.client.get(f"/v1/memories?user_id=proj&{query}", headers=headers)
        assert r.status_code == 400, (query, r.text)
        assert (r.json()["type"] == "error") if anthropic else ("error" in r.json())
    for body in bad_bodies:
        r = await proxy.client.post("/v1/memories", json={"user_id": "proj", **body}, headers=headers)
        assert r.status_code == 400, (body, r.text)
        assert (r.json()["type"] == "error") if anthropic else ("error" in r.json())
    edge = await proxy.client.post("/v1/memories", json={"user_id": "proj", "content": "y", "created_at": "0001-01-01"})
    assert edge.status_code == 201 and edge.json()["created_at"] == "0001-01-01T00:00:00.000000Z"
    assert await proxy.memories("proj") == [edge.json()]


async def test_an_id_taken_in_another_scope_is_a_409_not_an_empty_answer(proxy: Running) -> None:
    p = proxy
    first = await p.client.post("/v1/memories", json={"user_id": "a", "content": "one", "id": "mem_taken"})
    assert first.status_code == 201, first.text
    again = await p.client.post("/v1/memories", json={"user_id": "a", "content": "one", "id": "mem_taken"})
    assert again.status_code == 200 and again.json()["id"] == "mem_taken"  # a duplicate: the stored one
    other = await p.client.post("/v1/memories", json={"user_id": "b", "content": "two", "id": "mem_taken"})
    assert other.status_code == 409 and "mem_taken" in other.json()["error"]["message"]
    assert await p.memories("b") == []
