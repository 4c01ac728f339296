"""The dashboard over HTTP: sessions, CSRF, who sees what, escaping, and every page's actions."""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
import pytest

from app.config import ApiKey, Observability
from tests.fake_secrets import credentials
from tests.inprocess import Running, chat_body, make_settings, running

pytestmark = pytest.mark.timeout(60)
ADMIN, PINNED = "admin-key-dash-51c2", "pinned-key-dash-9e07"
HOSTILE = '<script>alert(1)</script><img src=x onerror="alert(2)"><a href="javascript:alert(3)">x</a>'


def keyed(tmp_path: Path, **observability: object):  # type: ignore[no-untyped-def]
    return dataclasses.replace(
        make_settings(tmp_path),
        keys=(ApiKey(ADMIN, None, True), ApiKey(PINNED, "alice")),
        observability=dataclasses.replace(Observability(), **observability),  # type: ignore[arg-type]
    )


def csrf_of(html: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', html)
    assert found, "the page has no CSRF field"
    return found.group(1)


@asynccontextmanager
async def log_in(p: Running, key: str) -> AsyncIterator[httpx.AsyncClient]:
    """A browser-like client of its own, logged in with `key`."""
    async with httpx.AsyncClient(base_url=p.url, timeout=15) as client:
        r = await client.post("/dashboard/login", data={"key": key})
        assert r.status_code == 303 and r.headers["location"] == "/dashboard", r.text
        yield client


async def add(p: Running, scope: str, content: str) -> dict:
    r = await p.client.post(
        "/v1/memories", json={"content": content, "user_id": scope}, headers={"authorization": f"Bearer {ADMIN}"}
    )
    assert r.status_code == 201, r.text
    return r.json()


async def test_anonymous_owner_on_loopback_gets_a_session_without_logging_in(tmp_path: Path):
    async with running(tmp_path) as p:
        r = await p.client.get("/dashboard")
        assert r.status_code == 200 and "Overview" in r.text
        cookie = r.headers["set-cookie"].lower()
        assert "httponly" in cookie and "samesite=strict" in cookie and "path=/dashboard" in cookie
        assert "script-src" not in r.headers["content-security-policy"]  # default-src 'none': no scripts run
        assert (await p.client.get("/dashboard/login")).status_code == 303


async def test_log_in_with_a_key_and_never_see_it(tmp_path: Path):
    async with running(tmp_path, settings=keyed(tmp_path)) as p:
        r = await p.client.get("/dashboard")
        assert r.status_code == 303 and r.headers["location"] == "/dashboard/login"
        bad = await p.client.post("/dashboard/login", data={"key": "wrong"})
        assert bad.status_code == 401 and "not valid" in bad.text and "set-cookie" not in bad.headers
        async with log_in(p, ADMIN) as admin:
            for path in ("/dashboard", "/dashboard/requests"):
                page = await admin.get(path)
                assert page.status_code == 200 and ADMIN not in page.text and PINNED not in page.text
            out = await admin.post("/dashboard/logout", data={"csrf": csrf_of(page.text)})
            assert out.status_code == 303
            assert (await admin.get("/dashboard")).status_code == 303


async def test_every_change_needs_the_csrf_token(tmp_path: Path):
    async with running(tmp_path, settings=keyed(tmp_path)) as p:
        mem = await add(p, "alice", "keep me")
        async with log_in(p, ADMIN) as admin:
            page = await admin.get("/dashboard/scopes/alice")
            token = csrf_of(page.text)
            url = f"/dashboard/scopes/alice/memories/{mem['id']}/delete"
            for form in ({"mode": "off"}, {"csrf": "forged"}):
                r = await admin.post(url, data=form)
                assert r.status_code == 403 and "CSRF" in r.text
            assert (await admin.post("/dashboard/scopes/alice/mode", data={"mode": "off"})).status_code == 403
            assert (
                await admin.post(url, content=b"{}", headers={"content-type": "application/json"})
            ).status_code == 415
            assert (await p.client.get(f"/v1/memories/{mem['id']}?user_id=alice", headers=_admin())).status_code == 200
            r = await admin.post(url, data={"csrf": token})
            assert r.status_code == 303
            assert (await p.client.get(f"/v1/memories/{mem['id']}?user_id=alice", headers=_admin())).status_code == 404


async def test_a_foreign_origin_cannot_post_but_the_dashboard_itself_can(tmp_path: Path):
    async with running(tmp_path, settings=keyed(tmp_path)) as p:
        async with log_in(p, ADMIN) as admin:
            token = csrf_of((await admin.get("/dashboard")).text)
            form = {"csrf": token, "mode": "off"}
            evil = await admin.post(
                "/dashboard/scopes/alice/mode", data=form, headers={"origin": "http://evil.example"}
            )
            assert evil.status_code == 403
            own = await admin.post("/dashboard/scopes/alice/mode", data=form, headers={"origin": p.url})
            assert own.status_code == 303
            assert p.ctx.oversight.mode("alice") == "off"
        # Same-origin only counts for the dashboard: the API still refuses unknown origins.
        api = await p.client.get("/v1/scopes", headers={**_admin(), "origin": p.url})
        assert api.status_code == 403


async def test_a_pinned_key_sees_only_its_scope(tmp_path: Path):
    async with running(tmp_path, settings=keyed(tmp_path)) as p:
        await add(p, "alice", "alice's note")
        await add(p, "bob", "bob's secret")
        async with log_in(p, PINNED) as pinned:
            overview = await pinned.get("/dashboard")
            assert "alice" in overview.text and "bob" not in overview.text
            assert (await pinned.get("/dashboard/scopes/bob")).status_code == 403
            assert (await pinned.get("/dashboard/scopes/bob/export")).status_code == 403
            assert (await pinned.get("/dashboard/requests?scope=bob")).status_code == 403
            token = csrf_of(overview.text)
            assert (
                await pinned.post("/dashboard/scopes/bob/mode", data={"csrf": token, "mode": "off"})
            ).status_code == 403
            assert p.ctx.oversight.mode("bob") == "on"
        async with log_in(p, ADMIN) as admin:
            overview = await admin.get("/dashboard")
            assert "alice" in overview.text and "bob" in overview.text


async def test_hostile_memory_text_is_escaped(tmp_path: Path):
    async with running(tmp_path, settings=keyed(tmp_path)) as p:
        mem = await add(p, "alice", HOSTILE)
        async with log_in(p, ADMIN) as admin:
            for path in ("/dashboard/scopes/alice", f"/dashboard/scopes/alice/memories/{mem['id']}"):
                html = (await admin.get(path)).text
                assert "<script>alert(1)" not in html and "<img src=x" not in html and 'href="javascript:' not in html
                assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html


async def test_scope_page_search_mode_import_export_and_recall_log(tmp_path: Path):
    async with running(tmp_path, settings=keyed(tmp_path)) as p:
        await add(p, "alice", "the staging database is on port 5433")
        await add(p, "alice", "lunch is at noon")
        async with log_in(p, ADMIN) as admin:
            # (a turn is also found by the turn before it, so search for the later one)
            hits = await admin.get("/dashboard/scopes/alice?q=noon")
            assert "lunch is at noon" in hits.text and "port 5433" not in hits.text
            token = csrf_of(hits.text)
            r = await admin.post("/dashboard/scopes/alice/mode", data={"csrf": token, "mode": "off"})
            assert r.status_code == 303 and p.ctx.oversight.mode("alice") == "off"
            assert 'id="mode" class="mode-off">off' in (await admin.get("/dashboard/scopes/alice")).text
            await admin.post("/dashboard/scopes/alice/mode", data={"csrf": token, "mode": "on"})
            assert p.ctx.oversight.mode("alice") == "on"

            lines = '{"content": "imported one"}\n{"content": "imported two", "role": "note"}\n'
            r = await admin.post("/dashboard/scopes/alice/import", data={"csrf": token, "lines": lines})
            assert r.status_code == 200 and "2 imported, 0 skipped" in r.text
            wrong = '{"content": "x", "user_id": "bob"}\n'
            r = await admin.post("/dashboard/scopes/alice/import", data={"csrf": token, "lines": wrong})
            assert r.status_code == 400 and "bob" in r.text
            export = await admin.get("/dashboard/scopes/alice/export")
            assert export.headers["content-disposition"].startswith("attachment")
            assert sorted(line.split('"content":"')[1].split('"')[0] for line in export.text.splitlines()) == [
                "imported one",
                "imported two",
                "lunch is at noon",
                "the staging database is on port 5433",
            ]

            chat = chat_body("which port does the staging database use?")
            headers = {**_admin(), "x-memory-user-id": "alice"}
            assert (await p.client.post("/v1/chat/completions", json=chat, headers=headers)).status_code == 200
            await p.ctx.writer.flush()
            (staging,) = [m for m in await _memories(p, "alice") if "5433" in m["content"]]
            detail = await admin.get(f"/dashboard/scopes/alice/memories/{staging['id']}")
            assert "1 times" in detail.text and 'id="recalls"' in detail.text

            requests = await admin.get("/dashboard/requests?scope=alice&status=200")
            assert "/v1/chat/completions" in requests.text
            assert "/v1/chat/completions" not in (await admin.get("/dashboard/requests?status=500")).text
            assert (await admin.get("/dashboard/requests?status=abc")).status_code == 400
            found = await admin.get("/dashboard?find=ALI")
            assert "/dashboard/scopes/alice" in found.text
            assert "/dashboard/scopes/alice" not in (await admin.get("/dashboard?find=zzz")).text
            assert (await admin.get("/dashboard/static/dashboard.css")).headers["content-type"].startswith("text/css")
            assert (await admin.get("/dashboard/nothing-here")).status_code == 404


async def test_dashboard_can_be_switched_off(tmp_path: Path):
    async with running(tmp_path, settings=keyed(tmp_path, dashboard_enabled=False)) as p:
        assert (await p.client.post("/dashboard/login", data={"key": ADMIN})).status_code == 404
        assert (await p.client.get("/dashboard/login")).status_code == 404
    async with running(
        tmp_path,
        settings=dataclasses.replace(make_settings(tmp_path), observability=Observability(dashboard_enabled=False)),
    ) as p:
        assert (await p.client.get("/dashboard")).status_code == 404


def _admin() -> dict[str, str]:
    return {"authorization": f"Bearer {ADMIN}"}


async def _memories(p: Running, scope: str) -> list[dict]:
    r = await p.client.get("/v1/memories", params={"user_id": scope, "limit": 100}, headers=_admin())
    return r.json()["data"]


async def test_scopes_are_grouped_by_owner_with_the_project_directory(tmp_path: Path):
    async with running(tmp_path, settings=keyed(tmp_path)) as p:
        p.client.headers["authorization"] = f"Bearer {ADMIN}"
        body = {
            "model": "fake-model",
            "max_tokens": 16,
            "messages": [
                {"role": "user", "content": "the port is 5433"},
                {"role": "system", "content": "# Environment\n - Primary working directory: /src/alpha"},
            ],
        }
        for key in (ADMIN, PINNED):
            r = await p.client.post("/v1/messages", json=body, headers={"authorization": f"Bearer {key}"})
            assert r.status_code == 200, r.text
        await add(p, "bob:alpha-000000", "bob's project note")
        await p.drain()
        async with log_in(p, ADMIN) as admin:
            html = (await admin.get("/dashboard")).text
            assert 'data-owner="local"' in html and 'data-owner="alice"' in html and 'data-owner="bob"' in html
            local = html[html.index('data-owner="local"') :].split("</table>")[0]
            assert "local:alpha-" in local and "<code>/src/alpha</code>" in local and "alice:" not in local
        async with log_in(p, PINNED) as pinned:
            html = (await pinned.get("/dashboard")).text
            assert 'data-owner="alice"' in html and "<code>/src/alpha</code>" in html
            assert "bob" not in html and "local:" not in html
            scope = re.search(r"alice:alpha-[0-9a-f]{6}", html)
            assert scope and (await pinned.get(f"/dashboard/requests?scope={scope.group(0)}")).status_code == 200


async def test_log_ins_with_a_pinned_key_never_end_the_admins_session(tmp_path: Path):
    from app.sessions import SESSIONS_PER_PRINCIPAL

    async with running(tmp_path, settings=keyed(tmp_path)) as p, log_in(p, ADMIN) as admin:
        async with log_in(p, PINNED) as first_pinned:
            assert (await first_pinned.get("/dashboard")).status_code == 200
            for _ in range(SESSIONS_PER_PRINCIPAL):
                r = await p.client.post("/dashboard/login", data={"key": PINNED})
                assert r.status_code == 303
            # The pinned key's own oldest session went; the admin's stays.
            assert (await first_pinned.get("/dashboard")).status_code == 303
        assert (await admin.get("/dashboard")).status_code == 200


async def test_odd_request_filters_are_a_400_page_on_both_backends(tmp_path: Path, store_url: str):
    settings = dataclasses.replace(make_settings(tmp_path), db_path=store_url)
    async with running(tmp_path, settings=settings) as p:
        for query in ("status=²", "status=" + "9" * 30, "model=a%00b", "model=" + "m" * 300):
            r = await p.client.get(f"/dashboard/requests?{query}")
            assert r.status_code == 400, (query, r.status_code)
        assert (await p.client.get("/dashboard/requests?status=200")).status_code == 200


async def test_scope_page_sets_the_scope_s_retention_and_its_import_is_redacted(tmp_path: Path):
    sentence, secret = credentials()["stripe-key"]
    async with running(tmp_path, settings=keyed(tmp_path)) as p:
        async with log_in(p, ADMIN) as admin:
            token = csrf_of((await admin.get("/dashboard/scopes/carol")).text)
            form = {"csrf": token, "max_age_days": "7", "max_per_scope": ""}
            assert (await admin.post("/dashboard/scopes/carol/retention", data=form)).status_code == 303
            assert await p.ctx.store.scope_retention() == {"carol": (7.0, None)}
            assert (
                'name="max_age_days" size="5" inputmode="decimal"\n      value="7.0"'
                in (await admin.get("/dashboard/scopes/carol")).text
            )
            bad = await admin.post("/dashboard/scopes/carol/retention", data={**form, "max_per_scope": "-2"})
            assert bad.status_code == 400 and await p.ctx.store.scope_retention() == {"carol": (7.0, None)}
            cleared = {"csrf": token, "max_age_days": "", "max_per_scope": ""}
            assert (await admin.post("/dashboard/scopes/carol/retention", data=cleared)).status_code == 303
            assert await p.ctx.store.scope_retention() == {}

            lines = json.dumps({"content": sentence}) + "\n"
            r = await admin.post("/dashboard/scopes/carol/import", data={"csrf": token, "lines": lines})
            assert r.status_code == 200 and "1 imported" in r.text
            stored = [m["content"] for m in await _memories(p, "carol")]
            assert stored == [sentence.replace(secret, "[redacted: stripe-key]")]
