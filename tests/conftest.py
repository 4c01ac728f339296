"""Shared fixtures: keep every test away from the developer's real .env, keys and database."""

from __future__ import annotations

import pytest

pytest_plugins = ["tests.backends"]  # the store_url / pg_database fixtures (SQLite and PostgreSQL)

PROXY_ENV = (
    "MEMORY_HOST",
    "MEMORY_PORT",
    "LITELLM_PORT",
    "LITELLM_BASE_URL",
    "LITELLM_MASTER_KEY",
    "MEMORY_CONFIG",
    "MEMORY_DB",
    "SUPERMEMORY_API_KEY",
)


@pytest.fixture(autouse=True)
def isolated_env(monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory) -> None:
    """No test reads the developer's .env or provider keys, or touches ./data/memory.db."""
    for name in PROXY_ENV:
        monkeypatch.delenv(name, raising=False)
    for name in ("OPENAI_API_KEY", "ANTHROPIC_API_KEY", "PYCHARM_PROXY_KEY", "ADMIN_PROXY_KEY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("MEMORY_ENV_FILE", "")
    monkeypatch.setenv("MEMORY_DB", str(tmp_path_factory.mktemp("db") / "memory.db"))


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    """The real stack (fake provider → LiteLLM binary → memory proxy) from the Procfile."""
    from tests.stack import start_stack

    running = start_stack(tmp_path_factory.mktemp("stack"))
    yield running
    running.stop()


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Keep the markers honest: a test that starts the real stack must be marked e2e."""
    for item in items:
        if "stack" in getattr(item, "fixturenames", ()) and item.get_closest_marker("e2e") is None:
            raise pytest.UsageError(f"{item.nodeid} uses the real stack but is not marked e2e")
