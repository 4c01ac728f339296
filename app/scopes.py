"""Scope detection: which memory scope a request belongs to."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from app.auth import Principal
from app.config import SCOPE_RE, ScopeRules
from app.projects import PROJECT_HEADER, InvalidProject, Project, find_project, normalise_directory, owner_of


class InvalidScope(ValueError):
    """A scope name that breaks the naming rule; the caller answers 400."""


class ForbiddenScope(PermissionError):
    """A pinned key named a scope that is not its own; the caller answers 403."""


@dataclass(frozen=True)
class ScopeDecision:
    """The resolved scope and how it was found (what /memory-routing/info reports)."""

    user_id: str
    matched_pattern: str | None
    custom_header_present: bool
    is_default: bool
    project: Project | None = None
    ignored_directory: bool = False  # the client reported a working directory unfit for scoping


def validate_scope(name: str) -> str:
    """Return `name` if it is a legal scope name, else raise InvalidScope."""
    if not SCOPE_RE.fullmatch(name):
        raise InvalidScope(f"invalid scope name {name[:140]!r}: use 1-128 characters of A-Z a-z 0-9 . _ : @ -")
    return name


def resolve_scope(
    rules: ScopeRules, headers: Mapping[str, str], principal: Principal, workdir: str | None = None
) -> ScopeDecision:
    """Custom header (when the principal may steer, or a pinned key naming its own project scope) >
    project (x-memory-project, else `workdir`: the dialect's detected working directory) > pinned
    key scope > an admin key's own scope > header patterns > default."""
    custom = headers.get(rules.custom_header)
    present = custom is not None
    if custom is not None and (principal.user_id is None or custom.strip() != principal.user_id):
        named = validate_scope(custom.strip())
        if principal.user_id is None:
            return ScopeDecision(named, None, True, False)
        if not principal.may_use(named):
            raise ForbiddenScope(f"this key may not use scope {named!r}")
        return ScopeDecision(named, None, True, False)
    client = _client_scope(rules, headers, principal)
    directory = normalise_directory(workdir) if workdir is not None else None
    ignored = workdir is not None and directory is None and rules.projects.mode != "off"
    owner = owner_of(rules.projects, own_scope=principal.user_id or principal.home, client_scope=client.user_id)
    try:
        project = find_project(rules.projects, owner, headers.get(PROJECT_HEADER), directory)
    except InvalidProject as exc:
        raise InvalidScope(str(exc)) from None
    if project is not None:
        return ScopeDecision(project.scope, client.matched_pattern, present, False, project, ignored)
    return ScopeDecision(client.user_id, client.matched_pattern, present, client.is_default, None, ignored)


def _client_scope(rules: ScopeRules, headers: Mapping[str, str], principal: Principal) -> ScopeDecision:
    """The scope outside any project: the pinned or admin key's own, else the client pattern's, else the default."""
    if principal.user_id is not None:
        return ScopeDecision(principal.user_id, None, False, False)
    if principal.home is not None:
        return ScopeDecision(principal.home, None, False, False)
    for rule in rules.patterns:
        value = headers.get(rule.header)
        if value is not None and rule.pattern.search(value):
            return ScopeDecision(rule.user_id, f"{rule.header}: {rule.pattern.pattern}", False, False)
    return ScopeDecision(rules.default_user_id, None, False, True)
