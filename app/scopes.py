"""Scope detection: which memory scope a request belongs to."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from app.auth import Principal
from app.config import SCOPE_RE, ScopeRules


class InvalidScope(ValueError):
    """A scope name that breaks the naming rule; the caller answers 400."""


@dataclass(frozen=True)
class ScopeDecision:
    """The resolved scope and how it was found (what /memory-routing/info reports)."""

    user_id: str
    matched_pattern: str | None
    custom_header_present: bool
    is_default: bool


def validate_scope(name: str) -> str:
    """Return `name` if it is a legal scope name, else raise InvalidScope."""
    if not SCOPE_RE.fullmatch(name):
        raise InvalidScope(f"invalid scope name {name[:140]!r}: use 1-128 characters of A-Z a-z 0-9 . _ : @ -")
    return name


def resolve_scope(rules: ScopeRules, headers: Mapping[str, str], principal: Principal) -> ScopeDecision:
    """Pinned key scope > custom header (when the principal may steer) > an admin key's own scope >
    header patterns > default."""
    custom = headers.get(rules.custom_header)
    present = custom is not None
    if principal.user_id is not None:
        return ScopeDecision(principal.user_id, None, present, False)
    if custom is not None:
        return ScopeDecision(validate_scope(custom.strip()), None, True, False)
    if principal.home is not None:
        return ScopeDecision(principal.home, None, False, False)
    for rule in rules.patterns:
        value = headers.get(rule.header)
        if value is not None and rule.pattern.search(value):
            return ScopeDecision(rule.user_id, f"{rule.header}: {rule.pattern.pattern}", False, False)
    return ScopeDecision(rules.default_user_id, None, False, True)
