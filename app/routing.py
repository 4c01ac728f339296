"""The routing table: every path the proxy owns, who may call it, and the handler that answers."""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from enum import StrEnum

from starlette.requests import Request
from starlette.types import ASGIApp

# A handler answers with an ASGI app: a Starlette Response, or the streaming ProxyResponse.
Handler = Callable[[Request], Awaitable[ASGIApp]]


class Access(StrEnum):
    """Who may call a route."""

    OPEN = "open"  # no key needed; a key, when sent, is still checked (health details)
    CLIENT = "client"  # any valid key, pinned keys included
    ADMIN = "admin"  # admin keys, or anonymous clients on loopback when no keys are configured


@dataclass(frozen=True)
class Route:
    """One entry: a path (`{name}` matches one segment) or, with `prefix`, a path and all below it."""

    name: str
    path: str
    methods: frozenset[str]
    access: Access
    handler: Handler
    prefix: bool = False


ANY_METHOD = frozenset({"*"})


def route(name: str, path: str, methods: str, access: Access, handler: Handler, prefix: bool = False) -> Route:
    """A Route from a space-separated method list (`*` for any method)."""
    return Route(name, path, frozenset(methods.split()), access, handler, prefix)


@dataclass(frozen=True)
class Match:
    """The route a request resolved to, with its path parameters; `allowed` is False for a wrong method."""

    route: Route
    params: dict[str, str]
    allowed: bool = True


_PARAM = re.compile(r"\{(\w+)\}")


class RoutingTable:
    """Resolves (method, path) to a route: exact and templated paths first, then prefixes, then the fallback."""

    def __init__(self, routes: list[Route], fallback: Route) -> None:
        self.routes = routes
        self.fallback = fallback
        self._exact: dict[str, list[Route]] = {}
        self._templates: list[tuple[re.Pattern[str], Route]] = []
        self._prefixes: list[Route] = []
        for r in routes:
            if r.prefix:
                self._prefixes.append(r)
            elif "{" in r.path:
                pattern = "^" + _PARAM.sub(r"(?P<\1>[^/]+)", re.escape(r.path).replace(r"\{", "{").replace(r"\}", "}"))
                self._templates.append((re.compile(pattern + "$"), r))
            else:
                self._exact.setdefault(r.path, []).append(r)

    def match(self, method: str, path: str) -> Match:
        """The route for this request; exact paths win over templates, templates over prefixes."""
        candidates: list[tuple[Route, dict[str, str]]] = [(r, {}) for r in self._exact.get(path, ())]
        if not candidates:
            candidates = [(r, m.groupdict()) for p, r in self._templates if (m := p.match(path))]
        for r, params in candidates:
            if "*" in r.methods or method in r.methods or (method == "HEAD" and "GET" in r.methods):
                return Match(r, params)
        if candidates:
            return Match(candidates[0][0], candidates[0][1], allowed=False)
        for r in self._prefixes:
            if path == r.path or path.startswith(r.path + "/"):
                return Match(r, {})
        return Match(self.fallback, {})

    def allowed_methods(self, path: str) -> list[str]:
        """Methods served at `path` (for a 405's Allow header)."""
        found = list(self._exact.get(path, ())) + [r for p, r in self._templates if p.match(path)]
        return sorted({m for r in found for m in r.methods})
