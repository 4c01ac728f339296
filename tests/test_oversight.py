"""Usage records, /v1/usage, scopes as objects with modes, the recall log and /metrics, in-process."""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import orjson
import pytest

from app.cli import main
from app.config import ApiKey, Observability, Settings
from app.store.sqlite import SqliteDb
from app.store.usage import UsageFilter, UsageRecord
from app.usage import FIGURES, summarise
from tests.inprocess import Running, chat_body, make_settings, marker, running, upstream_requests

pytestmark = pytest.mark.timeout(60)
ADMIN, PINNED = "admin-key-7d1f", "pinned-key-3a9c"


def keyed(tmp_path: Path, db: str | None = None, **observability: object) -> Settings:
    """Settings with an admin key and a key pinned to scope `alice` (on the `db` store when given)."""
    settings = make_settings(tmp_path)
    return dataclasses.replace(
        settings,
        db_path=db or settings.db_path,
        keys=(ApiKey(ADMIN, None, True), ApiKey(PINNED, "alice")),
        observability=dataclasses.replace(Observability(), **observability),  # type: ignore[arg-type]
    )


def auth(key: str) -> dict[str, str]:
    return {"authorization": f"Bearer {key}"}


async def chat(p: Running, text: str, scope: str, *, key: str = ADMIN, **kw: object) -> None:
    anthropic = bool(kw.pop("anthropic", False))
    headers = {**auth(key), "x-memory-user-id": scope, **kw.pop("headers", {})}  # type: ignore[dict-item]
    body = {**chat_body(text, anthropic=anthropic, stream=bool(kw.pop("stream", False))), **kw}
    r = await p.client.post("/v1/messages" if anthropic else "/v1/chat/completions", json=body, headers=headers)
    assert r.status_code == 200, r.text


@asynccontextmanager
async def keyed_proxy(tmp_path: Path, db: str | None = None, **observability: object) -> AsyncIterator[Running]:
    """A proxy with both keys whose test client speaks with the admin key unless told otherwise."""
    async with running(tmp_path, settings=keyed(tmp_path, db, **observability)) as p:
        p.client.headers.update(auth(ADMIN))
        yield p


async def records(p: Running, scope: str | None = None) -> list[UsageRecord]:
    await p.drain()
    store = p.ctx.store
    return await store.usage(UsageFilter(scope))


@pytest.mark.parametrize(
    ("anthropic", "stream", "extra"),
    [
        (False, False, {}),
        (False, True, {"stream_options": {"include_usage": True}}),
        (True, False, {}),
        (True, True, {}),
    ],
)
async def test_a_chat_leaves_a_usage_record_with_tokens(
    tmp_path: Path, store_url: str, anthropic: bool, stream: bool, extra: dict
):
    async with keyed_proxy(tmp_path, store_url) as p:
        await chat(p, f"hello {marker()}", "proj", anthropic=anthropic, stream=stream, **extra)
        (rec,) = await records(p, "proj")
    assert (rec.user_id, rec.status, rec.input_tokens, rec.output_tokens) == ("proj", 200, 10, 5)
    assert rec.endpoint == ("/v1/messages" if anthropic else "/v1/chat/completions")
    assert rec.captured == 2 and rec.latency_ms > 0 and rec.ttfb_ms is not None and rec.ttfb_ms <= rec.latency_ms


async def test_injected_memories_are_logged_and_counted(tmp_path: Path, store_url: str):
    async with keyed_proxy(tmp_path, store_url) as p:
        word = marker()
        r = await p.client.post(
            "/v1/memories", json={"content": f"the {word} server is in Oslo", "user_id": "proj"}, headers=auth(ADMIN)
        )
        mem = r.json()
        assert mem["recall_count"] == 0 and mem["last_recalled_at"] is None
        await chat(p, f"where is the {word} server?", "proj")
        (rec,) = await records(p, "proj")
        assert rec.injected == (mem["id"],)
        again = (await p.client.get(f"/v1/memories/{mem['id']}?user_id=proj", headers=auth(ADMIN))).json()
        assert again["recall_count"] == 1 and again["last_recalled_at"] is not None
        log = await p.ctx.store.recall_log("proj", mem["id"])
        assert [x.request_id for x in log] == [rec.request_id]
        assert await p.ctx.store.recall_log("other", mem["id"]) == []


async def test_usage_is_off_when_configured(tmp_path: Path):
    async with keyed_proxy(tmp_path, usage_enabled=False) as p:
        await chat(p, "hello", "proj")
        assert await records(p) == []


async def test_usage_endpoint_groups_and_limits_pinned_keys(tmp_path: Path, store_url: str):
    async with keyed_proxy(tmp_path, store_url) as p:
        await chat(p, "one", "alice")
        await chat(p, "two", "alice")
        await chat(p, "three", "bob")
        await p.drain()
        by_scope = (await p.client.get("/v1/usage?group_by=scope", headers=auth(ADMIN))).json()["data"]
        assert [(r["scope"], r["requests"], r["input_tokens"], r["output_tokens"]) for r in by_scope] == [
            ("alice", 2, 20, 10),
            ("bob", 1, 10, 5),
        ]
        assert all(r["p50_ms"] <= r["p95_ms"] and r["memories_captured"] == 2 * r["requests"] for r in by_scope)
        mine = (await p.client.get("/v1/usage?group_by=scope", headers=auth(PINNED))).json()["data"]
        assert [r["scope"] for r in mine] == ["alice"]
        refused = await p.client.get("/v1/usage?user_id=bob", headers=auth(PINNED))
        assert refused.status_code == 403
        by_model = (await p.client.get("/v1/usage?group_by=model", headers=auth(ADMIN))).json()["data"]
        assert [(r["model"], r["requests"]) for r in by_model] == [("fake-model", 3)]
        today = time.strftime("%Y-%m-%d", time.gmtime())
        by_day = (await p.client.get("/v1/usage", headers=auth(ADMIN))).json()["data"]
        assert [(r["day"], r["requests"]) for r in by_day] == [(today, 3)]
        future = (await p.client.get(f"/v1/usage?since={time.time() + 60}", headers=auth(ADMIN))).json()["data"]
        assert future == []
        until = (await p.client.get("/v1/usage?until=2000-01-01", headers=auth(ADMIN))).json()["data"]
        assert until == []
        for bad in ("group_by=week", "since=yesterday", "user_id=bad%20name"):
            assert (await p.client.get(f"/v1/usage?{bad}", headers=auth(ADMIN))).status_code == 400


async def test_scopes_list_and_mode_change_take_effect_at_once(tmp_path: Path, store_url: str):
    async with keyed_proxy(tmp_path, store_url) as p:
        await chat(p, "remember the blue door", "alice")
        await p.drain()
        scopes = (await p.client.get("/v1/scopes", headers=auth(ADMIN))).json()["data"]
        (alice,) = scopes
        assert (alice["user_id"], alice["memories"], alice["requests"], alice["mode"]) == ("alice", 2, 1, "on")
        assert alice["last_active_at"].endswith("Z")

        r = await p.client.patch("/v1/scopes/alice", json={"mode": "off"}, headers=auth(PINNED))
        assert r.status_code == 200 and r.json()["mode"] == "off"
        info = (await p.client.get("/memory-routing/info", headers=auth(PINNED))).json()
        assert info["mode"] == "off"
        word = marker()
        await chat(p, f"never keep {word}", "alice", key=PINNED)
        await p.drain()
        assert not [m for m in await p.memories("alice") if word in m["content"]]

        # read: recall but no capture; a request's own header may narrow it further, never widen it.
        await p.client.patch("/v1/scopes/alice", json={"mode": "read"}, headers=auth(ADMIN))
        word = marker()
        await chat(p, f"still not {word}", "alice", headers={"x-memory-mode": "on"})
        await p.drain()
        assert not [m for m in await p.memories("alice") if word in m["content"]]
        await chat(p, f"door {word}", "alice", headers={"x-memory-mode": "off"})
        assert "blue door" not in str(upstream_requests(word)[-1]["body"])
        await chat(p, f"blue door {word}?", "alice")
        assert "remember the blue door" in str(upstream_requests(word)[-1]["body"])

        await p.client.patch("/v1/scopes/alice", json={"mode": "on"}, headers=auth(ADMIN))
        word = marker()
        await chat(p, f"keep {word}", "alice")
        await p.drain()
        assert [m for m in await p.memories("alice") if word in m["content"]]

        assert (await p.client.patch("/v1/scopes/bob", json={"mode": "off"}, headers=auth(PINNED))).status_code == 403
        assert (await p.client.patch("/v1/scopes/alice", json={"mode": "x"}, headers=auth(ADMIN))).status_code == 400
        assert (await p.client.patch("/v1/scopes/alice", content=b"{", headers=auth(ADMIN))).status_code == 400
        assert [s["user_id"] for s in (await p.client.get("/v1/scopes", headers=auth(PINNED))).json()["data"]] == [
            "alice"
        ]


async def test_modes_survive_a_restart(tmp_path: Path, store_url: str):
    settings = keyed(tmp_path, store_url)
    async with running(tmp_path, settings=settings) as p:
        await p.client.patch("/v1/scopes/carol", json={"mode": "write"}, headers=auth(ADMIN))
    async with running(tmp_path, settings=settings) as p:
        p.client.headers.update(auth(ADMIN))
        info = (await p.client.get("/memory-routing/info", headers={**auth(ADMIN), "x-memory-user-id": "carol"})).json()
        assert info["mode"] == "write"
        scopes = (await p.client.get("/v1/scopes", headers=auth(ADMIN))).json()["data"]
        assert [(s["user_id"], s["mode"]) for s in scopes] == [("carol", "write")]


async def test_project_directories_survive_a_restart(tmp_path: Path, store_url: str):
    settings = keyed(tmp_path, store_url)
    async with running(tmp_path, settings=settings) as p:
        p.client.headers.update(auth(ADMIN))
        r = await p.client.post("/v1/messages", json=claude_code_body(f"hello {marker()}", "/src/alpha"))
        scope = r.headers["x-memory-user-id"]
        await p.drain()
        for _ in range(100):  # the directory is written off the response path
            if await p.ctx.store.project_directories():
                break
            await asyncio.sleep(0.02)
    async with running(tmp_path, settings=settings) as p:
        rows = {s["user_id"]: s for s in (await p.client.get("/v1/scopes", headers=auth(ADMIN))).json()["data"]}
        assert rows[scope]["directory"] == "/src/alpha"


async def test_retention_deletes_old_records(tmp_path: Path, store_url: str):
    async with keyed_proxy(tmp_path, store_url, usage_retention_days=1) as p:
        store = p.ctx.store
        old = UsageRecord("req_old", time.time() - 2 * 86400, "s", None, "m", "/v1/messages", 200, 1.0, 1.0, 1, 1)
        await store.add_usage([old])
        p.ctx.oversight._pruned_at = 0.0  # the next answered chat runs retention
        await chat(p, "hello", "s")
        await asyncio.gather(*p.ctx.oversight._tasks)
        ids = [r.request_id for r in await records(p)]
        assert "req_old" not in ids and len(ids) == 1


async def test_metrics_exposition(tmp_path: Path):
    async with keyed_proxy(tmp_path) as p:
        await chat(p, "hello", "alice")
        await p.drain()
        assert (await p.client.get("/metrics", headers={"authorization": ""})).status_code == 401
        assert (await p.client.get("/metrics", headers=auth(PINNED))).status_code == 403
        r = await p.client.get("/metrics", headers=auth(ADMIN))
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
        text = r.text
        assert 'memory_proxy_requests_total{endpoint="chat",model="other",status="200"} 1.0' in text
        assert 'memory_proxy_request_seconds_bucket{endpoint="chat"' in text
        assert "memory_proxy_memories_captured_total 2.0" in text
        assert "memory_proxy_recall_seconds_count 1.0" in text
        assert "memory_proxy_writer_queue_depth 0.0" in text
        assert "memory_proxy_litellm_up 0.0" in text  # the fake upstream has no /health/liveliness
        assert "alice" not in text  # no scope label unless configured


async def test_metrics_scope_label_and_switch(tmp_path: Path):
    async with keyed_proxy(tmp_path, metrics_scope_label=True) as p:
        await chat(p, "hello", "alice")
        await p.drain()
        text = (await p.client.get("/metrics", headers=auth(ADMIN))).text
        assert 'memory_proxy_memories_captured_total{scope="alice"} 2.0' in text
    async with keyed_proxy(tmp_path, metrics_enabled=False) as p:
        assert (await p.client.get("/metrics", headers=auth(ADMIN))).status_code == 404


async def test_metrics_are_anonymous_on_loopback_without_keys(tmp_path: Path):
    async with running(tmp_path) as p:
        r = await p.client.get("/metrics")
        assert r.status_code == 200 and "memory_proxy_requests_total" in r.text


def _record(scope: str, at: float, model: str, status: int = 200, latency: float = 10.0) -> UsageRecord:
    path = "/v1/messages"
    return UsageRecord("req_" + marker(), at, scope, None, model, path, status, latency, 1.0, 7, 3, ("m1",), 2)


def test_cli_usage_prints_the_api_figures(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    db = tmp_path / "memory.db"
    store = SqliteDb(str(db))
    day = 1_700_000_000.0  # 2023-11-14
    store.add_usage(
        [
            _record("alice", day, "m-a", latency=10),
            _record("alice", day + 60, "m-b", status=502, latency=30),
            _record("bob", day + 86400, "m-a", latency=20),
        ]
    )
    store.close()

    assert main(["usage", "--db", str(db), "--json", "--group-by", "scope"]) == 0
    rows = orjson.loads(capsys.readouterr().out)["data"]
    assert rows == summarise([*SqliteDb(str(db)).usage(UsageFilter())], "scope")
    assert [(r["scope"], r["requests"], r["errors"], r["input_tokens"], r["p95_ms"]) for r in rows] == [
        ("alice", 2, 1, 14, 30.0),
        ("bob", 1, 0, 7, 20.0),
    ]

    assert main(["usage", "--db", str(db), "--user", "alice", "--since", "2023-11-14"]) == 0
    table = capsys.readouterr().out.splitlines()
    assert table[0].split() == ["DAY", *(f.upper() for f in FIGURES)]
    assert table[1].split() == ["2023-11-14", "2", "1", "14", "6", "2", "4", "10.0", "30.0"]

    assert main(["usage", "--db", str(db), "--since", str(day + 3600)]) == 0
    assert [line.split()[0] for line in capsys.readouterr().out.splitlines()[1:]] == ["2023-11-15"]
    assert main(["usage", "--db", str(db), "--until", "2000-01-01"]) == 0
    assert capsys.readouterr().out == "no requests recorded\n"
    assert main(["usage", "--db", str(db), "--since", "last week"]) == 2
    assert "--since" in capsys.readouterr().err


def claude_code_body(text: str, workdir: str) -> dict[str, object]:
    """An Anthropic request with Claude Code's environment block as a `system`-role message."""
    env = (
        f"# Environment\nYou have been invoked in the following environment: \n - Primary working directory: {workdir}"
    )
    return {
        "model": "fake-model",
        "max_tokens": 64,
        "messages": [{"role": "user", "content": text}, {"role": "system", "content": env}],
    }


async def test_projects_are_visible_in_info_header_and_scopes(tmp_path: Path, store_url: str):
    async with keyed_proxy(tmp_path, store_url) as p:
        word = marker()
        r = await p.client.post("/v1/messages", json=claude_code_body(f"the port is 5433 {word}", "/src/alpha/"))
        assert r.status_code == 200, r.text
        project = r.headers["x-memory-user-id"]
        assert project.startswith("local:alpha-")  # the admin key has no user_id: the local owner
        r = await p.client.post(
            "/v1/messages", json=claude_code_body(f"mine {word}", "/src/alpha"), headers=auth(PINNED)
        )
        alices = r.headers["x-memory-user-id"]
        assert alices == "alice:" + project.split(":")[1]
        await p.drain()
        rows = {s["user_id"]: s for s in (await p.client.get("/v1/scopes")).json()["data"]}
        assert (rows[project]["owner"], rows[project]["directory"]) == ("local", "/src/alpha")
        assert rows[alices]["owner"] == "alice" and rows[alices]["project"] == project.split(":")[1]
        mine = (await p.client.get("/v1/scopes", headers=auth(PINNED))).json()["data"]
        assert [s["user_id"] for s in mine] == [alices]  # its project scopes, never the local owner's
        assert sorted(m["content"] for m in await p.memories(alices)) == [f"Fake reply to: mine {word}", f"mine {word}"]
        own = await p.client.get("/v1/memories", headers={**auth(PINNED), "x-memory-user-id": alices})
        assert own.status_code == 200 and len(own.json()["data"]) == 2
        theirs = await p.client.get("/v1/memories", headers={**auth(PINNED), "x-memory-user-id": project})
        assert theirs.status_code == 403
        info = (await p.client.get("/memory-routing/info", params={"directory": "/src/alpha"})).json()
        assert (info["user_id"], info["owner"], info["project"], info["directory"], info["project_signal"]) == (
            project,
            "local",
            "alpha",
            "/src/alpha",
            "environment",
        )
        named = (await p.client.get("/memory-routing/info", headers={"x-memory-project": "payments"})).json()
        assert (named["user_id"], named["project_signal"]) == ("local:payments", "header")


async def test_unfit_directory_is_counted_and_a_bad_project_header_is_a_400(tmp_path: Path):
    async with keyed_proxy(tmp_path) as p:
        r = await p.client.post("/v1/messages", json=claude_code_body("hello", "relative/alpha"))
        assert r.status_code == 200 and not r.headers["x-memory-user-id"].startswith("local:")
        assert (await p.client.get("/health")).json()["memory_store"]["ignored_directories"] == 1
        assert "memory_proxy_ignored_directories 1.0" in (await p.client.get("/metrics")).text
        bad = {"x-memory-project": "no spaces"}
        anthropic = await p.client.post("/v1/messages", json=claude_code_body("hi", "/a"), headers=bad)
        assert anthropic.status_code == 400 and anthropic.json()["type"] == "error"
        openai = await p.client.post("/v1/chat/completions", json=chat_body("hi"), headers=bad)
        assert openai.status_code == 400 and openai.json()["error"]["type"] == "invalid_request_error"
        foreign = await p.client.post(
            "/v1/chat/completions", json=chat_body("hi"), headers={**auth(PINNED), "x-memory-user-id": "bob:alpha"}
        )
        assert foreign.status_code == 403 and "error" in foreign.json()
