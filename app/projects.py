"""Projects: a client's working directory (or `x-memory-project`) named as a scope under its owner.

A project is its working directory after `posixpath.normpath`, case kept (POSIX paths are
case-sensitive): `/src/alpha` and `/work/alpha` are two projects. Its scope is
`<owner>:<folder>-<6 hex of sha256(path)>`, e.g. `local:alpha-3f2a9c`.
"""

from __future__ import annotations

import hashlib
import posixpath
import re
from dataclasses import dataclass

from app.config import SCOPE_RE, ProjectSettings

PROJECT_HEADER = "x-memory-project"
MAX_PATH_CHARS = 4096  # PATH_MAX on Linux: anything longer is not a directory a client works in
HASH_CHARS = 6
_NAME_RE = re.compile(r"[A-Za-z0-9._-]{1,64}")
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


class InvalidProject(ValueError):
    """An `x-memory-project` value that names no project; the caller answers 400."""


@dataclass(frozen=True)
class Project:
    """One project: its scope name, its owner, and the directory (None when a header named it)."""

    scope: str
    owner: str
    name: str
    directory: str | None
    signal: str  # "environment" (the client's own block) or "header" (x-memory-project)


def normalise_directory(raw: str) -> str | None:
    """The project directory of a client-reported path; None when it is too long, has control
    characters or is not absolute (ignored for scoping, never an error)."""
    if len(raw) > MAX_PATH_CHARS or _CONTROL.search(raw) or not raw.startswith("/"):
        return None
    path = posixpath.normpath(raw)
    return "/" + path.lstrip("/")  # normpath keeps a leading `//`; one directory has one name


def project_scope(owner: str, label: str, directory: str | None) -> str | None:
    """`<owner>:<label>-<hash>` for a directory, `<owner>:<label>` for a named project; None when
    the owner leaves no room within the scope rule."""
    suffix = f"-{hashlib.sha256(directory.encode()).hexdigest()[:HASH_CHARS]}" if directory else ""
    room = 128 - len(owner) - 1 - len(suffix)
    if room < 1:
        return None
    label = _UNSAFE.sub("_", label).strip("_")[:room] or "root"
    name = f"{owner}:{label}{suffix}"
    return name if SCOPE_RE.fullmatch(name) else None


def owner_of(settings: ProjectSettings, *, own_scope: str | None, client_scope: str) -> str:
    """Who a project scope belongs to: a key's own scope, else the client (per_client) or the local owner."""
    if own_scope is not None:
        return own_scope
    return client_scope if settings.mode == "per_client" else settings.local_owner


def find_project(settings: ProjectSettings, owner: str, header: str | None, directory: str | None) -> Project | None:
    """The project of a request: `x-memory-project` first, else the normalised working directory.

    Raises InvalidProject for a header that is neither a project name nor an absolute path.
    """
    if settings.mode == "off":
        return None
    if header is not None:
        value = header.strip()
        if _NAME_RE.fullmatch(value):
            scope = project_scope(owner, value, None)
            return Project(scope, owner, value, None, "header") if scope else None
        path = normalise_directory(value)
        if path is None:
            raise InvalidProject(
                f"invalid {PROJECT_HEADER} {value[:140]!r}: use a name of 1-64 characters of A-Z a-z 0-9 . _ - "
                "or an absolute directory path"
            )
        return _from_directory(owner, path, "header")
    if directory is None:
        return None
    return _from_directory(owner, directory, "environment")


def _from_directory(owner: str, directory: str, signal: str) -> Project | None:
    folder = posixpath.basename(directory) or "root"
    scope = project_scope(owner, folder, directory)
    return Project(scope, owner, folder, directory, signal) if scope else None


def split_scope(scope: str) -> tuple[str | None, str | None]:
    """A scope name's owner and project (`alice:alpha-3f2a9c` → alice, alpha-3f2a9c); (None, None) for
    a scope that is no project's."""
    owner, sep, project = scope.rpartition(":")
    return (owner, project) if sep and owner and project else (None, None)
