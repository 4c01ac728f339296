"""app/scopes.py: scope precedence and the scope-name rule."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest
from starlette.datastructures import Headers

from app.auth import ANONYMOUS, Principal
from app.config import HeaderPattern, ProjectSettings, ScopeRules, load_settings
from app.scopes import ForbiddenScope, InvalidScope, resolve_scope, validate_scope

RULES = ScopeRules(
    custom_header="x-memory-user-id",
    patterns=(
        HeaderPattern("user-agent", re.compile("^OpenAIClientImpl/Java", re.IGNORECASE), "pycharm-ai"),
        HeaderPattern("user-agent", re.compile("^claude-cli|Claude Code", re.IGNORECASE), "claude-cli"),
        HeaderPattern("x-client", re.compile("cli", re.IGNORECASE), "generic-cli"),
    ),
    default_user_id="default-dev",
)
PINNED = Principal("key#0", user_id="pycharm-ai")
ADMIN = Principal("key#1", admin=True)


def test_default_when_nothing_matches() -> None:
    d = resolve_scope(RULES, {"user-agent": "curl/8.0"}, ANONYMOUS)
    assert (d.user_id, d.matched_pattern, d.custom_header_present, d.is_default) == ("default-dev", None, False, True)


def test_pattern_match_is_case_insensitive_and_reported() -> None:
    d = resolve_scope(RULES, {"user-agent": "openaiclientimpl/java 1.2"}, ANONYMOUS)
    assert d.user_id == "pycharm-ai"
    assert d.is_default is False
    assert d.matched_pattern is not None and "OpenAIClientImpl/Java" in d.matched_pattern


def test_pattern_search_is_not_anchored_unless_the_regex_is() -> None:
    assert resolve_scope(RULES, {"user-agent": "foo Claude Code/1.0"}, ANONYMOUS).user_id == "claude-cli"
    assert resolve_scope(RULES, {"user-agent": "x OpenAIClientImpl/Java"}, ANONYMOUS).is_default


def test_first_matching_pattern_in_file_order_wins(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(
        "user_id_mappings:\n"
        "  header_patterns:\n"
        "    - {header: user-agent, pattern: 'Code', user_id: zzz-first}\n"
        "    - {header: user-agent, pattern: '^claude', user_id: aaa-second}\n"
        "    - {header: user-agent, pattern: '.*', user_id: mmm-third}\n",
        encoding="utf-8",
    )
    rules = load_settings(env={"MEMORY_CONFIG": str(path)}).scopes
    assert resolve_scope(rules, {"user-agent": "claude Code"}, ANONYMOUS).user_id == "zzz-first"
    assert resolve_scope(rules, {"user-agent": "claude-cli"}, ANONYMOUS).user_id == "aaa-second"
    assert resolve_scope(rules, {"user-agent": "vim"}, ANONYMOUS).user_id == "mmm-third"


def test_patterns_on_different_headers_follow_file_order() -> None:
    headers = {"user-agent": "Claude Code", "x-client": "some-cli"}
    assert resolve_scope(RULES, headers, ANONYMOUS).user_id == "claude-cli"
    assert resolve_scope(RULES, {"x-client": "some-cli"}, ANONYMOUS).user_id == "generic-cli"


@pytest.mark.parametrize("principal", [ANONYMOUS, ADMIN, Principal("key#2")])
def test_custom_header_beats_patterns_for_steerable_principals(principal: Principal) -> None:
    d = resolve_scope(RULES, {"x-memory-user-id": "proj-x", "user-agent": "Claude Code"}, principal)
    assert (d.user_id, d.custom_header_present, d.is_default, d.matched_pattern) == ("proj-x", True, False, None)


def test_custom_header_lookup_is_case_insensitive_with_real_headers() -> None:
    headers = Headers(headers={"X-Memory-User-Id": "proj-y", "User-Agent": "Claude Code"})
    assert resolve_scope(RULES, headers, ANONYMOUS).user_id == "proj-y"


def test_custom_header_name_is_configurable() -> None:
    rules = ScopeRules(custom_header="x-project", default_user_id="d")
    assert resolve_scope(rules, {"x-project": "p1", "x-memory-user-id": "p2"}, ANONYMOUS).user_id == "p1"
    assert resolve_scope(rules, {"x-memory-user-id": "p2"}, ANONYMOUS).user_id == "d"


def test_pinned_key_wins_over_user_agent_and_may_not_name_another_scope() -> None:
    d = resolve_scope(RULES, {"x-memory-user-id": "pycharm-ai", "user-agent": "Claude Code"}, PINNED)
    assert d.user_id == "pycharm-ai"
    assert d.is_default is False and d.matched_pattern is None
    assert d.custom_header_present is True
    with pytest.raises(ForbiddenScope):
        resolve_scope(RULES, {"x-memory-user-id": "someone-else", "user-agent": "Claude Code"}, PINNED)


def test_pinned_key_not_steered_by_user_agent_alone() -> None:
    other = Principal("key#3", user_id="team-a")
    assert resolve_scope(RULES, {"user-agent": "OpenAIClientImpl/Java"}, other).user_id == "team-a"
    assert resolve_scope(RULES, {}, other).user_id == "team-a"


@pytest.mark.parametrize(
    "bad", ["", " ", "has space", "a/b", "semi;colon", "x" * 129, "ünï", "line\nbreak", "../etc", "a*"]
)
def test_invalid_custom_header_scope_raises_never_falls_back(bad: str) -> None:
    with pytest.raises(InvalidScope):
        resolve_scope(RULES, {"x-memory-user-id": bad, "user-agent": "Claude Code"}, ANONYMOUS)
    with pytest.raises(InvalidScope):
        resolve_scope(RULES, {"x-memory-user-id": bad}, ADMIN)


@pytest.mark.parametrize("good", ["a", "A-z_0.9:@", "user@example.com", "proj:sub.v2", "x" * 128])
def test_valid_scope_names(good: str) -> None:
    assert validate_scope(good) == good
    assert resolve_scope(RULES, {"x-memory-user-id": good}, ANONYMOUS).user_id == good


def test_invalid_scope_is_a_value_error_with_a_bounded_message() -> None:
    with pytest.raises(ValueError) as info:
        validate_scope("<" * 5000)
    assert len(str(info.value)) < 400


def test_scope_with_trailing_newline_is_invalid():
    with pytest.raises(InvalidScope):
        validate_scope("alice\n")


def test_admin_key_with_its_own_scope_uses_it_unless_a_header_steers():
    rules = ScopeRules(patterns=(HeaderPattern("user-agent", re.compile("^curl"), "curl-scope"),))
    admin = Principal("key#1", None, True, "ops")
    assert resolve_scope(rules, {"user-agent": "curl/8"}, admin).user_id == "ops"
    assert resolve_scope(rules, {"x-memory-user-id": "proj", "user-agent": "curl/8"}, admin).user_id == "proj"
    assert admin.may_use("anything")


ALICE = Principal("key#0", user_id="alice")
BOB = Principal("key#1", user_id="bob")


def test_project_from_the_working_directory_is_shared_by_every_client() -> None:
    claude = resolve_scope(RULES, {"user-agent": "claude-cli/2"}, ANONYMOUS, "/src/alpha")
    other = resolve_scope(RULES, {"user-agent": "curl/8"}, ANONYMOUS, "/src/alpha/")
    assert claude.user_id == other.user_id and claude.user_id.startswith("local:alpha-")
    assert claude.project is not None and claude.project.signal == "environment"
    assert claude.matched_pattern is not None  # the client is still reported


def test_outside_a_project_the_client_scope_stays() -> None:
    assert resolve_scope(RULES, {"user-agent": "claude-cli/2"}, ANONYMOUS, None).user_id == "claude-cli"
    assert resolve_scope(RULES, {}, ALICE, None).user_id == "alice"


def test_unfit_directory_is_ignored_and_reported() -> None:
    d = resolve_scope(RULES, {"user-agent": "claude-cli/2"}, ANONYMOUS, "relative/alpha")
    assert (d.user_id, d.ignored_directory, d.project) == ("claude-cli", True, None)
    assert not resolve_scope(RULES, {}, ANONYMOUS, "/src/alpha").ignored_directory


def test_modes() -> None:
    per_client = dataclasses.replace(RULES, projects=ProjectSettings(mode="per_client"))
    claude = resolve_scope(per_client, {"user-agent": "claude-cli/2"}, ANONYMOUS, "/a")
    assert claude.user_id.startswith("claude-cli:a-")
    assert resolve_scope(per_client, {}, ALICE, "/a").user_id.startswith("alice:a-")
    off = dataclasses.replace(RULES, projects=ProjectSettings(mode="off"))
    assert resolve_scope(off, {"user-agent": "claude-cli/2"}, ANONYMOUS, "/a").user_id == "claude-cli"
    assert resolve_scope(off, {"x-memory-project": "alpha"}, ANONYMOUS).user_id == "default-dev"


def test_pinned_keys_of_two_people_in_one_repository_never_meet() -> None:
    a = resolve_scope(RULES, {}, ALICE, "/src/alpha").user_id
    b = resolve_scope(RULES, {}, BOB, "/src/alpha").user_id
    assert a.startswith("alice:alpha-") and b.startswith("bob:alpha-") and a.split(":")[1] == b.split(":")[1]
    assert resolve_scope(RULES, {"x-memory-user-id": a}, ALICE).user_id == a
    with pytest.raises(ForbiddenScope):
        resolve_scope(RULES, {"x-memory-user-id": b}, ALICE)
    with pytest.raises(ForbiddenScope):
        resolve_scope(RULES, {"x-memory-user-id": "alicex:alpha"}, ALICE)


def test_explicit_scope_still_decides_exactly() -> None:
    headers = {"x-memory-user-id": "proj-x", "x-memory-project": "alpha"}
    assert resolve_scope(RULES, headers, ANONYMOUS, "/src/alpha").user_id == "proj-x"
    assert resolve_scope(RULES, headers, ADMIN, "/src/alpha").user_id == "proj-x"


def test_project_header_beats_the_environment_and_a_bad_one_is_refused() -> None:
    d = resolve_scope(RULES, {"x-memory-project": "payments"}, ANONYMOUS, "/src/alpha")
    assert d.user_id == "local:payments" and d.project is not None and d.project.signal == "header"
    admin_home = Principal("key#2", admin=True, home="ops")
    assert resolve_scope(RULES, {"x-memory-project": "payments"}, admin_home).user_id == "ops:payments"
    with pytest.raises(InvalidScope):
        resolve_scope(RULES, {"x-memory-project": "not a name"}, ANONYMOUS)
