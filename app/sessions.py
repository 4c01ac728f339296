"""Dashboard sessions: an opaque cookie token per log-in, each with its caller and CSRF token, in memory."""

from __future__ import annotations

import hmac
import secrets
import time
from dataclasses import dataclass

from app.auth import Principal

COOKIE = "memory_proxy_session"
SESSION_SECONDS = 12 * 3600
# Sessions one principal (one configured key, or the anonymous owner) holds at once; its oldest goes
# first past this. Principals are the configured keys, so the table is bounded without a global cap
# that one key's log-ins could use to push out another key's sessions.
SESSIONS_PER_PRINCIPAL = 5


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
    """Owns the live sessions, per principal; a restart logs everyone out."""

    def __init__(self) -> None:
        self._live: dict[str, Session] = {}
        self._tokens_of: dict[str, list[str]] = {}  # principal name -> its tokens, oldest first

    def create(self, principal: Principal) -> str:
        """A new session for `principal` (ending its own oldest past SESSIONS_PER_PRINCIPAL); its cookie token."""
        tokens = self._tokens_of.setdefault(principal.name, [])
        now = time.time()
        for token in [t for t in tokens if self._live[t].expires < now]:
            self.drop(token)
        tokens = self._tokens_of.setdefault(principal.name, [])
        while len(tokens) >= SESSIONS_PER_PRINCIPAL:
            self.drop(tokens[0])
        token = secrets.token_urlsafe(32)
        self._live[token] = Session(principal, secrets.token_urlsafe(32), now + SESSION_SECONDS)
        tokens.append(token)
        return token

    def get(self, token: str | None) -> Session | None:
        """The live session for a cookie token, if any."""
        session = self._live.get(token) if token else None
        if session is not None and session.expires < time.time():
            self.drop(token)
            return None
        return session

    def drop(self, token: str | None) -> None:
        """End a session (log-out)."""
        session = self._live.pop(token, None) if token else None
        if session is None:
            return
        tokens = self._tokens_of[session.principal.name]
        tokens.remove(token)  # type: ignore[arg-type]
        if not tokens:
            del self._tokens_of[session.principal.name]
