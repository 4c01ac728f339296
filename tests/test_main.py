"""app/main.py: create_app builds without touching anything, and survives a store that will not open."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from tests.inprocess import make_settings, running

pytestmark = pytest.mark.timeout(30)


def test_create_app_opens_nothing_until_the_lifespan(tmp_path: Path) -> None:
    from app.main import create_app

    settings = make_settings(tmp_path)
    create_app(settings)
    assert not Path(settings.db_path).exists()


async def test_a_store_that_cannot_open_leaves_chats_working(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    settings = replace(make_settings(tmp_path), db_path=str(blocker / "memory.db"))
    async with running(tmp_path, settings=settings) as p:
        r = await p.client.post(
            "/v1/chat/completions", json={"model": "m", "messages": [{"role": "user", "content": "x"}]}
        )
        health = (await p.client.get("/health")).json()
    assert r.status_code == 200 and r.headers["x-memory-error"] == "memory store unavailable"
    assert health["status"] == "degraded" and health["memory_store"]["status"] == "unavailable"


def test_the_app_is_built_on_first_access_only(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import app.main

    config = tmp_path / "config.yaml"
    config.write_text("memroy: {enabled: false}\n")
    monkeypatch.setenv("MEMORY_CONFIG", str(config))
    with pytest.raises(SystemExit) as exit_:
        app.main.app  # noqa: B018 - the attribute access is what builds the app
    assert "did you mean 'memory'" in str(exit_.value)
