"""app/objects.py: a stored response belongs to the key that made it (in-process, the fake provider upstream)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import httpx
import orjson
import pytest

from app.config import ApiKey
from app.objects import ResponseIds
from app.store.objects import Owner
from tests import fake_provider
from tests.inprocess import make_settings, running

pytestmark = pytest.mark.timeout(60)
KEYS = (ApiKey("alice-key", user_id="alice"), ApiKey("bob-key", user_id="bob"), ApiKey("admin-key", admin=True))
ALICE = {"authorization": "Bearer alice-key"}
BOB = {"authorization": "Bearer bob-key"}
ADMIN = {"authorization": "Bearer admin-key"}


def upstream_hits(response_id: str) -> list[dict]:
    return [r for r in fake_provider.REQUESTS if response_id in r["path"] or response_id in str(r["body"])]


async def create(client: httpx.AsyncClient, headers: dict[str, str], *, stream: bool = False, **extra: object) -> str:
    body = {"model": "m", "input": "alice private: my PIN is 8831", "store": True, "stream": stream, **extra}
    r = await client.post("/v1/responses", json=body, headers=headers)
    assert r.status_code == 200, r.text
    if not stream:
        return r.json()["id"]
    created = next(line for line in r.text.splitlines() if line.startswith("data:"))
    return orjson.loads(created[5:])["response"]["id"]


def settings_for(tmp_path: Path, db: str | None = None):  # type: ignore[no-untyped-def]
    base = make_settings(tmp_path)
    return replace(base, keys=KEYS, db_path=db or base.db_path)


@pytest.mark.parametrize("stream", [False, True])
async def test_another_key_cannot_read_list_cancel_continue_or_delete_a_response(tmp_path: Path, stream: bool) -> None:
    async with running(tmp_path, settings=settings_for(tmp_path)) as p:
        rid = await create(p.client, ALICE, stream=stream)
        before = len(upstream_hits(rid))
        for method, path in (
            ("GET", f"/v1/responses/{rid}"),
            ("GET", f"/v1/responses/{rid}/input_items"),
            ("POST", f"/v1/responses/{rid}/cancel"),
            ("DELETE", f"/v1/responses/{rid}"),
            ("GET", f"/responses/{rid}"),
        ):
            r = await p.client.request(method, path, headers=BOB)
            assert r.status_code == 404 and r.json()["error"]["type"] == "not_found_error", (method, path)
        for streamed in (False, True):
            body = {"model": "m", "input": "what was it?", "previous_response_id": rid, "stream": streamed}
            r = await p.client.post("/v1/responses", json=body, headers=BOB)
            assert r.status_code == 404, r.text
        assert len(upstream_hits(rid)) == before  # upstream never asked
        assert (await p.client.get(f"/v1/responses/{rid}", headers=ALICE)).json()["id"] == rid
        items = (await p.client.get(f"/v1/responses/{rid}/input_items", headers=ALICE)).json()["data"]
        assert "8831" in str(items)
        follow = {"model": "m", "input": "and?", "previous_response_id": rid, "stream": stream}
        assert (await p.client.post("/v1/responses", json=follow, headers=ALICE)).status_code == 200
        assert (await p.client.get(f"/v1/responses/{rid}", headers=ADMIN)).status_code == 200
        assert (await p.client.delete(f"/v1/responses/{rid}", headers=ALICE)).json()["deleted"] is True


async def test_ids_without_a_record_are_refused_to_pinned_keys_and_pass_for_admins(tmp_path: Path) -> None:
    async with running(tmp_path, settings=settings_for(tmp_path)) as p:
        fake_provider.STORED["resp_unrecorded"] = {"response": {"id": "resp_unrecorded"}, "input": []}
        assert (await p.client.get("/v1/responses/resp_unrecorded", headers=ALICE)).status_code == 404
        assert (await p.client.get("/v1/responses/resp_unrecorded", headers=ADMIN)).status_code == 200
        rid = await create(p.client, ADMIN)  # an admin's response is not a pinned key's either
        assert (await p.client.get(f"/v1/responses/{rid}", headers=ALICE)).status_code == 404


async def test_families_the_proxy_does_not_track_are_closed_to_pinned_keys(tmp_path: Path) -> None:
    async with running(tmp_path, settings=settings_for(tmp_path)) as p:
        anthropic = {"x-api-key": "alice-key", "anthropic-version": "2023-06-01"}
        r = await p.client.post("/v1/messages/batches", json={"requests": []}, headers=anthropic)
        assert r.status_code == 404 and r.json()["type"] == "error"
        assert (await p.client.get("/v1/messages/batches/msgbatch_1", headers=anthropic)).status_code == 404
        assert (await p.client.post("/v1/responses/compact", json={}, headers=ALICE)).status_code == 404
        file_part = {"type": "input_file", "file_id": "file-1"}
        for extra in (
            {"conversation": "conv_1"},
            {"input": [{"type": "item_reference", "id": "msg_1"}]},
            {"input": [{"role": "user", "content": [file_part]}]},
            {"tools": [{"type": "code_interpreter", "container": "cntr_1"}]},
            {"tools": [{"type": "file_search", "vector_store_ids": ["vs_1"]}]},
        ):
            body = {"model": "m", "input": "hi", **extra}
            assert (await p.client.post("/v1/responses", json=body, headers=ALICE)).status_code == 404, extra
            assert (await p.client.post("/v1/responses", json=body, headers=ADMIN)).status_code == 200, extra
        source = {"type": "document", "source": {"type": "file", "file_id": "file_1"}}
        for extra in ({"container": "container_1"}, {"messages": [{"role": "user", "content": [source]}]}):
            body = {"model": "m", "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}], **extra}
            r = await p.client.post("/v1/messages", json=body, headers=anthropic)
            assert r.status_code == 404 and r.json()["type"] == "error", extra
        mention = {"model": "m", "input": 'my notes say "file_id": 7', "tools": [{"type": "function", "name": "f"}]}
        assert (await p.client.post("/v1/responses", json=mention, headers=ALICE)).status_code == 200
        chat = {"model": "m", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 5}
        counted = await p.client.post("/v1/messages/count_tokens", json=chat, headers=anthropic)
        assert "no such endpoint" not in counted.text  # passed through (the fake provider has no such route)


async def test_records_survive_a_restart_and_go_when_the_scope_is_forgotten(tmp_path: Path) -> None:
    db = str(tmp_path / "owners.db")
    async with running(tmp_path, settings=settings_for(tmp_path, db)) as p:
        rid = await create(p.client, ALICE)
    async with running(tmp_path, settings=settings_for(tmp_path, db)) as p:
        fake_provider.STORED[rid] = {"response": {"id": rid}, "input": []}  # a new fake provider: same object
        assert (await p.client.get(f"/v1/responses/{rid}", headers=ALICE)).status_code == 200
        assert (await p.client.get(f"/v1/responses/{rid}", headers=BOB)).status_code == 404
        assert (await p.client.delete("/v1/memories", params={"user_id": "alice"}, headers=ALICE)).status_code == 200
        assert (await p.client.get(f"/v1/responses/{rid}", headers=ALICE)).status_code == 404


async def test_two_instances_on_one_database_share_the_records(tmp_path: Path, store_url: str) -> None:
    async with running(tmp_path, settings=settings_for(tmp_path, store_url)) as first:
        rid = await create(first.client, ALICE, stream=True)
        async with running(tmp_path, settings=settings_for(tmp_path, store_url)) as second:
            fake_provider.STORED[rid] = {"response": {"id": rid}, "input": []}
            assert (await second.client.get(f"/v1/responses/{rid}", headers=ALICE)).status_code == 200
            assert (await second.client.get(f"/v1/responses/{rid}", headers=BOB)).status_code == 404


class FakeStore:
    def __init__(self) -> None:
        self.owned: list[str] = []

    async def own_object(self, object_id: str, owner: Owner) -> None:
        self.owned.append(object_id)


def test_the_stream_id_is_found_in_the_first_event_whatever_the_chunking() -> None:
    stream = b'event: response.created\ndata: {"type":"response.created","response":{"id":"resp_9"}}\n\n' + b"x" * 50
    for size in (1, 7, len(stream)):
        ids = ResponseIds(FakeStore(), Owner("k", "s"), streaming=True)  # type: ignore[arg-type]
        hits = [i for i in range(0, len(stream), size) if ids.feed(stream[i : i + size])]
        assert len(hits) == 1 and ids.found == "resp_9"
        assert ids.finish() is False
