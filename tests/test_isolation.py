"""A state machine over keys and scopes: nothing written, read, searched or deleted leaves its scope."""

from __future__ import annotations

import dataclasses

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import Bundle, RuleBasedStateMachine, initialize, invariant, rule
from starlette.testclient import TestClient

from app.config import ApiKey, Settings
from app.main import create_app

# Project scopes live under their owner: a pinned key reaches `<its scope>:…` and nothing else.
SCOPES = ["alpha", "beta", "gamma.team", "delta@x", "alpha:repo-3f2a9c", "beta:repo-3f2a9c", "alphabet:repo"]
KEYS = {
    "pin-alpha": ApiKey("pin-alpha-secret", user_id="alpha"),
    "pin-beta": ApiKey("pin-beta-secret", user_id="beta"),
    "admin": ApiKey("admin-secret", admin=True),
}
WORDS = ["kiwi", "mango", "deploy", "tabs", "coffee"]


def allowed(key: str, scope: str) -> bool:
    entry = KEYS[key]
    return entry.admin or entry.user_id == scope or scope.startswith(f"{entry.user_id}:")


class ScopeMachine(RuleBasedStateMachine):
    """Drives the memory API with several keys and compares it with a per-scope model."""

    ids = Bundle("ids")

    @initialize()
    def start(self) -> None:
        import tempfile

        self.tmp = tempfile.TemporaryDirectory()
        s = Settings(db_path=f"{self.tmp.name}/m.db", keys=tuple(KEYS.values()))
        self.client = TestClient(create_app(dataclasses.replace(s)), base_url="http://127.0.0.1")
        self.client.__enter__()
        self.model: dict[str, dict[str, str]] = {scope: {} for scope in SCOPES}
        self.counter = 0

    def teardown(self) -> None:
        if hasattr(self, "client"):
            self.client.__exit__(None, None, None)
            self.tmp.cleanup()

    def call(self, method: str, path: str, key: str, **kw):  # type: ignore[no-untyped-def]
        headers = {"Authorization": f"Bearer {KEYS[key].key}", **kw.pop("headers", {})}
        return self.client.request(method, path, headers=headers, **kw)

    @rule(
        target=ids,
        key=st.sampled_from(sorted(KEYS)),
        scope=st.sampled_from(SCOPES),
        words=st.lists(st.sampled_from(WORDS), min_size=1, max_size=3),
    )
    def add(self, key: str, scope: str, words: list[str]) -> str:
        self.counter += 1
        content = f"{' '.join(words)} #{self.counter}"
        r = self.call("POST", "/v1/memories", key, json={"user_id": scope, "content": content})
        if not allowed(key, scope):
            assert r.status_code == 403
            return "mem_none"
        assert r.status_code == 201 and r.json()["user_id"] == scope
        self.model[scope][r.json()["id"]] = content
        return r.json()["id"]

    @rule(key=st.sampled_from(sorted(KEYS)), scope=st.sampled_from(SCOPES))
    def list_scope(self, key: str, scope: str) -> None:
        r = self.call("GET", "/v1/memories", key, params={"user_id": scope, "limit": 1000})
        if not allowed(key, scope):
            assert r.status_code == 403
            return
        assert {m["id"]: m["content"] for m in r.json()["data"]} == self.model[scope]

    @rule(key=st.sampled_from(["pin-alpha", "pin-beta"]), steer=st.sampled_from(SCOPES))
    def pinned_key_steers_only_to_its_own_scopes(self, key: str, steer: str) -> None:
        r = self.call(
            "GET",
            "/v1/memories",
            key,
            params={"limit": 1000},
            headers={"x-memory-user-id": steer, "User-Agent": "OpenAIClientImpl/Java"},
        )
        if not allowed(key, steer):
            assert r.status_code == 403
            return
        assert {m["id"] for m in r.json()["data"]} == set(self.model[steer])

    @rule(key=st.sampled_from(sorted(KEYS)), scope=st.sampled_from(SCOPES), word=st.sampled_from(WORDS))
    def search(self, key: str, scope: str, word: str) -> None:
        r = self.call("GET", "/v1/memories/search", key, params={"user_id": scope, "q": word, "limit": 100})
        if not allowed(key, scope):
            assert r.status_code == 403
            return
        for hit in r.json()["data"]:
            assert hit["user_id"] == scope and self.model[scope].get(hit["id"]) == hit["content"]

    @rule(key=st.sampled_from(sorted(KEYS)), scope=st.sampled_from(SCOPES), memory_id=ids)
    def delete(self, key: str, scope: str, memory_id: str) -> None:
        r = self.call("DELETE", f"/v1/memories/{memory_id}", key, params={"user_id": scope})
        if not allowed(key, scope):
            assert r.status_code == 403
        elif memory_id in self.model[scope]:
            assert r.status_code == 204
            del self.model[scope][memory_id]
        else:
            assert r.status_code == 404  # absent, or another scope's: untouched

    @rule(key=st.sampled_from(sorted(KEYS)), scope=st.sampled_from(SCOPES), memory_id=ids)
    def get(self, key: str, scope: str, memory_id: str) -> None:
        r = self.call("GET", f"/v1/memories/{memory_id}", key, params={"user_id": scope})
        if not allowed(key, scope):
            assert r.status_code == 403
        elif memory_id in self.model[scope]:
            assert r.json()["user_id"] == scope
        else:
            assert r.status_code == 404

    @rule(key=st.sampled_from(sorted(KEYS)), scope=st.sampled_from(SCOPES))
    def forget(self, key: str, scope: str) -> None:
        r = self.call("DELETE", "/v1/memories", key, params={"user_id": scope})
        if not allowed(key, scope):
            assert r.status_code == 403
            return
        assert r.json() == {"deleted": len(self.model[scope])}
        self.model[scope].clear()

    @invariant()
    def every_scope_matches_the_model(self) -> None:
        if not hasattr(self, "client"):
            return
        for scope in SCOPES:
            r = self.call("GET", "/v1/memories/export", "admin", params={"user_id": scope})
            lines = [line for line in r.text.splitlines() if line]
            assert len(lines) == len(self.model[scope])


ScopeMachine.TestCase.settings = settings(
    max_examples=25, stateful_step_count=25, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
TestScopeIsolation = pytest.mark.slow(ScopeMachine.TestCase)
