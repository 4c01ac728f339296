"""app/projects.py: a working directory or x-memory-project named as a scope under its owner."""

from __future__ import annotations

import hashlib

import pytest

from app.config import SCOPE_RE, ProjectSettings
from app.projects import InvalidProject, find_project, normalise_directory, owner_of, project_scope, split_scope

SHARED = ProjectSettings()


def short(path: str) -> str:
    return hashlib.sha256(path.encode()).hexdigest()[:6]


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("/src/alpha", "/src/alpha"),
        ("/src/alpha/", "/src/alpha"),
        ("/src/./x/../alpha", "/src/alpha"),
        ("//src//alpha", "/src/alpha"),
        ("/Src/Alpha", "/Src/Alpha"),  # case kept: POSIX paths are case-sensitive
        ("/", "/"),
    ],
)
def test_normalise_directory(raw: str, expected: str) -> None:
    assert normalise_directory(raw) == expected


UNFIT = ["src/alpha", "", "~/alpha", "C:\\src\\alpha", "/a\nb", "/a\x00b", "/a\tb", "/" + "a" * 5000]


@pytest.mark.parametrize("raw", UNFIT)
def test_unfit_directories_are_ignored(raw: str) -> None:
    assert normalise_directory(raw) is None


def test_scope_name_is_owner_folder_and_path_hash() -> None:
    p = find_project(SHARED, "local", None, "/src/alpha")
    assert p is not None
    assert p.scope == f"local:alpha-{short('/src/alpha')}"
    assert (p.owner, p.name, p.directory, p.signal) == ("local", "alpha", "/src/alpha", "environment")


def test_same_folder_name_in_two_places_is_two_projects() -> None:
    one = find_project(SHARED, "local", None, "/src/alpha")
    two = find_project(SHARED, "local", None, "/work/alpha")
    assert one is not None and two is not None and one.scope != two.scope


def test_folder_part_is_sanitised_and_fits_the_scope_rule() -> None:
    p = find_project(SHARED, "alice", None, "/home/a/my project (v2)")
    assert p is not None and SCOPE_RE.fullmatch(p.scope) and p.scope.startswith("alice:my_project_v2-")
    long = find_project(SHARED, "o" * 100, None, "/x/" + "f" * 300)
    assert long is not None and len(long.scope) == 128 and SCOPE_RE.fullmatch(long.scope)
    assert project_scope("o" * 125, "alpha", "/alpha") is None  # no room under that owner


def test_header_names_a_project_or_a_directory() -> None:
    named = find_project(SHARED, "local", "payments-api", "/src/alpha")
    assert named is not None and (named.scope, named.signal, named.directory) == ("local:payments-api", "header", None)
    path = find_project(SHARED, "local", "/src/alpha/", None)
    assert path is not None and path.scope == f"local:alpha-{short('/src/alpha')}" and path.signal == "header"


@pytest.mark.parametrize("bad", ["a b", "", "x" * 65, "alpha:beta", "relative/dir", "/a\x01b"])
def test_bad_header_is_refused(bad: str) -> None:
    with pytest.raises(InvalidProject):
        find_project(SHARED, "local", bad, None)


def test_mode_off_finds_no_project() -> None:
    off = ProjectSettings(mode="off")
    assert find_project(off, "local", "alpha", "/src/alpha") is None


def test_owner() -> None:
    assert owner_of(SHARED, own_scope="alice", client_scope="claude-cli") == "alice"
    assert owner_of(SHARED, own_scope=None, client_scope="claude-cli") == "local"
    assert owner_of(ProjectSettings(local_owner="me"), own_scope=None, client_scope="codex-cli") == "me"
    assert owner_of(ProjectSettings(mode="per_client"), own_scope=None, client_scope="claude-cli") == "claude-cli"


def test_split_scope() -> None:
    assert split_scope("alice:alpha-3f2a9c") == ("alice", "alpha-3f2a9c")
    assert split_scope("claude-cli") == (None, None)
