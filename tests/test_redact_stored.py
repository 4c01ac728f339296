"""`python -m app memories redact`: credentials stored before redaction are replaced in place, on both stores."""

from __future__ import annotations

import asyncio

import orjson
import pytest

from app.cli import main
from app.redaction import marker
from app.store import NewMemory, open_store
from tests.fake_secrets import credentials

pytestmark = pytest.mark.timeout(60)


async def _seed(url: str, items: list[NewMemory]) -> list[str]:
    store = await open_store(url)
    try:  # straight into the store, as a memory written before redaction existed
        return [m.id for m in await store.add_many(items)]
    finally:
        await store.close()


async def _read(url: str, scope: str, query: str) -> tuple[list[dict], list[str]]:
    store = await open_store(url)
    try:
        exported = [dataclass_json(m) async for m in store.export(scope)]
        found = [m.content for m, _ in await store.search(scope, query, 10)]
        return exported, found
    finally:
        await store.close()


def dataclass_json(m: object) -> dict:
    return orjson.loads(orjson.dumps(m))


def test_redact_rewrites_in_place_keeping_id_time_and_index(store_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    creds = credentials()
    items = [
        NewMemory("leaky", "user", f"pelican {sentence}", 1_700_000_000.0 + i, metadata={"n": i})
        for i, (sentence, _) in enumerate(creds.values())
    ]
    items.append(NewMemory("clean", "user", "pelican feathers are white", 1_700_000_100.0))
    ids = asyncio.run(_seed(store_url, items))
    github_secret = creds["github-token"][1]

    assert main(["memories", "redact", "--db", store_url, "--json"]) == 0
    report = orjson.loads(capsys.readouterr().out)
    assert report["scanned"] == len(items)
    assert report["memories"] == len(creds) and report["secrets"] == len(creds)
    assert report["scopes"] == {"leaky": len(creds)}

    exported, found = asyncio.run(_read(store_url, "leaky", "pelican"))
    text = orjson.dumps(exported).decode()
    assert all(secret not in text for _, secret in creds.values())
    assert all(marker(kind) in text for kind in creds)
    assert sorted(m["id"] for m in exported) == sorted(ids[: len(creds)])
    assert [m["created_at"] for m in exported] == [i.created_at for i in items[: len(creds)]]
    assert len(found) == len(creds)  # the term index holds the rewritten memories
    _, by_secret = asyncio.run(_read(store_url, "leaky", github_secret))
    assert by_secret == []  # … and no longer the credential's term

    assert main(["memories", "redact", "--db", store_url, "--user", "leaky"]) == 0
    assert "replaced 0 credentials in 0 memories" in capsys.readouterr().out
