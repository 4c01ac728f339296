"""Dashboard sessions: an opaque cookie token per log-in, each with its caller and CSRF token, in memory."""

from __future__ import annotations

import hmac
import secrets
import time
from dataclasses import dataclass

from app.auth import Principal

COOKIE = "memory_proxy_session"
SESSION_SECONDS = 12 * 3600
MAX_SESSIONS = 1000  # the oldest session goes first past this (log-ins cannot grow memory without bound)


@dataclass(frozen=True)
class Session:
    """Who logged in (never their key), the CSRF token their forms carry, and when it ends."""

    principal: Principal
    csrf: str
    expires: float

    def csrf_ok(self, sent: str | None) -> bool:
        """True when a form carried this session's CSRF token."""
        return sent is not None and hmac.compare_digest(sent.encode(), self.csrf.encode())


class Sessions:
    """Owns the live sessions; a restart logs everyone out."""

    def __init__(self) -> None:
        self._live: dict[str, Session] = {}

    def create(self, principal: Principal) -> str:
        """A new session for `principal`; its cookie token."""
        while len(self._live) >= MAX_SESSIONS:
            del self._live[next(iter(self._live))]
        token = secrets.token_urlsafe(32)
        self._live[token] = Session(principal, secrets.token_urlsafe(32), time.time() + SESSION_SECONDS)
        return token

    def get(self, token: str | None) -> Session | None:
        """The live session for a cookie token, if any."""
        session = self._live.get(token) if token else None
        if session is not None and session.expires < time.time():
            del self._live[token]  # type: ignore[arg-type]
            return None
        return session

    def drop(self, token: str | None) -> None:
        """End a session (log-out)."""
        if token:
            self._live.pop(token, None)
