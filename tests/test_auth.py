"""app/auth.py: who is calling (Bearer or x-api-key) and which scopes they may use."""

from __future__ import annotations

import pytest
from starlette.datastructures import Headers

from app.auth import ANONYMOUS, Principal, authenticate, presented_key
from app.config import ApiKey

KEYS = (
    ApiKey("pc-secret", user_id="pycharm-ai"),
    ApiKey("adm-secret", admin=True),
    ApiKey("cli-secret", user_id="claude-cli"),
)


@pytest.mark.parametrize(
    "headers",
    [
        {"authorization": "Bearer pc-secret"},
        {"authorization": "bearer pc-secret"},
        {"authorization": "Bearer   pc-secret  "},
        {"x-api-key": "pc-secret"},
        {"x-api-key": " pc-secret "},
    ],
)
def test_pinned_key_via_bearer_or_x_api_key(headers: dict[str, str]) -> None:
    p = authenticate(KEYS, headers)
    assert p is not None
    assert p.user_id == "pycharm-ai" and p.admin is False


def test_admin_key_is_unpinned_admin() -> None:
    p = authenticate(KEYS, {"x-api-key": "adm-secret"})
    assert p is not None and p.admin is True and p.user_id is None


def test_each_key_maps_to_its_own_principal() -> None:
    a = authenticate(KEYS, {"authorization": "Bearer pc-secret"})
    b = authenticate(KEYS, {"authorization": "Bearer cli-secret"})
    assert a is not None and b is not None
    assert (a.user_id, b.user_id) == ("pycharm-ai", "claude-cli")
    assert a.name != b.name
    assert "secret" not in a.name and "secret" not in b.name


def test_real_starlette_headers_are_case_insensitive() -> None:
    p = authenticate(KEYS, Headers(headers={"Authorization": "Bearer cli-secret"}))
    assert p is not None and p.user_id == "claude-cli"


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"authorization": "Bearer wrong"},
        {"authorization": "Bearer pc-secre"},
        {"authorization": "Bearer pc-secret-extra"},
        {"authorization": "Bearer PC-SECRET"},
        {"authorization": "Bearer "},
        {"authorization": "pc-secret"},
        {"authorization": "Basic pc-secret"},
        {"x-api-key": "wrong"},
        {"x-api-key": ""},
        {"authorization": "Bearer ünïcode"},
    ],
)
def test_wrong_or_missing_key_is_rejected(headers: dict[str, str]) -> None:
    assert authenticate(KEYS, headers) is None


def test_x_api_key_used_when_authorization_is_not_bearer() -> None:
    p = authenticate(KEYS, {"authorization": "Basic Zm9vOmJhcg==", "x-api-key": "adm-secret"})
    assert p is not None and p.admin


def test_no_keys_configured_means_anonymous() -> None:
    assert authenticate((), {}) is ANONYMOUS
    assert authenticate((), {"authorization": "Bearer anything"}) is ANONYMOUS
    assert ANONYMOUS.user_id is None and ANONYMOUS.admin is False


def test_presented_key() -> None:
    assert presented_key({"authorization": "Bearer abc"}) == "abc"
    assert presented_key({"x-api-key": "def"}) == "def"
    assert presented_key({"authorization": "Bearer abc", "x-api-key": "def"}) == "abc"
    assert presented_key({"authorization": "Token abc"}) is None
    assert presented_key({}) is None


def test_may_use() -> None:
    pinned = Principal("key#0", user_id="pycharm-ai")
    admin = Principal("key#1", admin=True)
    assert pinned.may_use("pycharm-ai")
    assert not pinned.may_use("claude-cli")
    assert not pinned.may_use("pycharm-ai-2")
    assert not pinned.may_use("PYCHARM-AI")
    assert pinned.may_use("pycharm-ai:alpha-3f2a9c")  # its own project scopes
    assert not pinned.may_use("pycharm-ai-2:alpha") and not pinned.may_use("claude-cli:pycharm-ai")
    assert admin.may_use("pycharm-ai") and admin.may_use("anything")
    assert ANONYMOUS.may_use("anything") and ANONYMOUS.may_use("default-dev")
