"""The dashboard in a real browser: Playwright driving the system's Chromium against a real proxy.

Playwright's own browser download is not used; the Debian `chromium` package is (.ci/run installs
it). Without it these tests skip, except under CI=true, where a missing browser is a failure.
"""

from __future__ import annotations

import dataclasses
import os
import re
import shutil
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from app.config import ApiKey
from tests.inprocess import BackgroundStack, chat_body, make_settings, marker

CHROMIUM = os.environ.get("MEMORY_TEST_CHROMIUM", "/usr/bin/chromium")
ADMIN, PINNED = "admin-key-browser-4b7e", "pinned-key-browser-c21d"
HOSTILE = (
    '<script>window.__pwned = 1; alert("script")</script>'
    "<img src=x onerror=\"window.__pwned = 2; alert('img')\">"
    "<a href=\"javascript:alert('link')\">click me</a>"
)

pytestmark = [pytest.mark.timeout(120), pytest.mark.slow]


def _browser_or_skip() -> str:
    if Path(CHROMIUM).is_file() or shutil.which(CHROMIUM):
        return CHROMIUM
    if os.environ.get("CI") == "true":
        pytest.fail(f"Chromium is required under CI=true (install the chromium package): {CHROMIUM} is missing")
    pytest.skip(f"no Chromium at {CHROMIUM}: apt-get install chromium to run the browser tests")


@pytest.fixture(scope="module")
def browser() -> Iterator:  # type: ignore[type-arg]
    """One headless Chromium for the module."""
    executable = _browser_or_skip()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=executable, args=["--no-sandbox"])
        yield chromium
        chromium.close()


@pytest.fixture
def served(tmp_path: Path) -> Iterator[BackgroundStack]:
    """A proxy (real uvicorn, fake provider) with an admin key and a key pinned to `alice`."""
    settings = dataclasses.replace(make_settings(tmp_path), keys=(ApiKey(ADMIN, None, True), ApiKey(PINNED, "alice")))
    with BackgroundStack(tmp_path, settings=settings) as running:
        yield running


@pytest.fixture
def page(browser, served: BackgroundStack):  # type: ignore[no-untyped-def]
    """A fresh browser context and page, failing the test on any dialog or page error."""
    context = browser.new_context()
    tab = context.new_page()
    tab.events = []  # type: ignore[attr-defined]
    tab.on("dialog", lambda d: (tab.events.append(f"dialog: {d.message}"), d.dismiss()))  # type: ignore[attr-defined]
    tab.on("pageerror", lambda e: tab.events.append(f"error: {e}"))  # type: ignore[attr-defined]
    yield tab
    context.close()


def api(served: BackgroundStack) -> httpx.Client:
    assert served.proxy is not None
    return httpx.Client(base_url=served.proxy.url, headers={"authorization": f"Bearer {ADMIN}"}, timeout=15)


def add(served: BackgroundStack, scope: str, content: str) -> str:
    with api(served) as client:
        r = client.post("/v1/memories", json={"content": content, "user_id": scope})
        assert r.status_code == 201, r.text
        return r.json()["id"]


def settle(served: BackgroundStack) -> None:
    """Wait until every captured turn and usage record is written."""
    assert served.proxy is not None
    served.call(served.proxy.ctx.writer.flush())


def log_in(page, served: BackgroundStack, key: str) -> None:  # type: ignore[no-untyped-def]
    assert served.proxy is not None
    page.goto(f"{served.proxy.url}/dashboard")
    assert page.url.endswith("/dashboard/login")
    page.fill("input[name=key]", key)
    page.click("button[type=submit]")
    page.wait_for_url(re.compile(r"/dashboard$"))


def test_log_in_find_search_and_delete(page, served: BackgroundStack) -> None:  # type: ignore[no-untyped-def]
    word = marker()
    # (a turn is also found by words of the turn before it, so the one searched for comes last)
    add(served, "research-notes", "the coffee machine is on floor two")
    doomed = add(served, "research-notes", f"the {word} cluster runs in Frankfurt")
    add(served, "other-team", "unrelated")
    log_in(page, served, ADMIN)
    cookie = next(c for c in page.context.cookies() if c["name"] == "memory_proxy_session")
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict"
    assert ADMIN not in page.content()

    page.fill("input[name=find]", "research")
    page.click("form.search button[type=submit]")
    rows = page.locator("#scopes tbody tr")
    assert rows.count() == 1 and "research-notes" in rows.first.inner_text()
    page.click("#scopes a:has-text('research-notes')")
    page.wait_for_url(re.compile(r"/dashboard/scopes/research-notes$"))

    page.fill("input[name=q]", word)
    page.click("form.search button[type=submit]")
    hits = page.locator("#memories tbody tr")
    assert hits.count() == 1 and "Frankfurt" in hits.first.inner_text()
    hits.first.locator("button.danger").click()
    page.wait_for_url(re.compile(r"/dashboard/scopes/research-notes$"))
    assert "Frankfurt" not in page.locator("#memories").inner_text()
    with api(served) as client:
        assert client.get(f"/v1/memories/{doomed}", params={"user_id": "research-notes"}).status_code == 404
    assert page.events == []  # type: ignore[attr-defined]


def test_pause_a_scope_and_a_chat_is_not_captured(page, served: BackgroundStack) -> None:  # type: ignore[no-untyped-def]
    add(served, "alice", "alice likes tea")
    log_in(page, served, PINNED)
    assert page.locator("#scopes tbody tr").count() == 1  # a pinned key sees its own scope only
    page.click("#scopes a:has-text('alice')")
    page.click("button:has-text('Pause')")
    page.wait_for_url(re.compile(r"/dashboard/scopes/alice$"))
    assert page.inner_text("#mode") == "off"

    word = marker()
    assert served.proxy is not None
    with httpx.Client(base_url=served.proxy.url, headers={"authorization": f"Bearer {PINNED}"}, timeout=15) as c:
        assert c.post("/v1/chat/completions", json=chat_body(f"remember {word}")).status_code == 200
        settle(served)
        assert word not in str(c.get("/v1/memories", params={"limit": 100}).json())
        page.click("button:has-text('Resume')")
        page.wait_for_url(re.compile(r"/dashboard/scopes/alice$"))
        assert page.inner_text("#mode") == "on"
        assert c.post("/v1/chat/completions", json=chat_body(f"remember {word} now")).status_code == 200
        settle(served)
        assert word in str(c.get("/v1/memories", params={"limit": 100}).json())
    page.reload()
    assert word in page.locator("#memories").inner_text()
    page.goto(f"{served.proxy.url}/dashboard/requests")
    assert page.locator("#requests tbody tr").count() == 2
    assert page.events == []  # type: ignore[attr-defined]


def test_a_hostile_memory_does_not_run(page, served: BackgroundStack) -> None:  # type: ignore[no-untyped-def]
    memory_id = add(served, "alice", HOSTILE)
    log_in(page, served, ADMIN)
    assert served.proxy is not None
    for path in ("/dashboard/scopes/alice", f"/dashboard/scopes/alice/memories/{memory_id}", "/dashboard"):
        page.goto(served.proxy.url + path)
        assert page.evaluate("window.__pwned") is None
        assert page.locator("img").count() == 0
        assert page.locator("a[href^='javascript:']").count() == 0
        assert page.locator("script").count() == 0
    page.goto(f"{served.proxy.url}/dashboard/scopes/alice")
    page.locator("a[href*='/memories/']").first.click()
    assert "onerror=" in page.inner_text("pre.content")  # shown as text, inert
    assert page.events == []  # type: ignore[attr-defined]
