"""Client authentication: who is calling, and which scopes they may touch."""

from __future__ import annotations

import hmac
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import unquote_plus

from app.config import ApiKey


@dataclass(frozen=True)
class Principal:
    """An authenticated caller: anonymous (loopback, no keys), a pinned key or an admin key."""

    name: str
    user_id: str | None = None
    admin: bool = False
    home: str | None = None  # an admin key's own scope, used when no header names one
    anonymous: bool = False  # no keys are configured (loopback only): the machine's owner

    @property
    def operator(self) -> bool:
        """Admin keys and the anonymous loopback owner: LiteLLM's management API and operator details."""
        return self.admin or self.anonymous

    def may_use(self, scope: str) -> bool:
        """True when this caller may read or write `scope`: a pinned key its own and its project
        scopes (`<user_id>:…`), every other caller any."""
        if self.user_id is None or self.admin:
            return True
        return scope == self.user_id or scope.startswith(f"{self.user_id}:")


ANONYMOUS = Principal("anonymous", anonymous=True)


def presented_key(headers: Mapping[str, str], query_key: str | None = None) -> str | None:
    """The credential a client sent: `Authorization: Bearer …`, Anthropic's `x-api-key`, Gemini's
    `x-goog-api-key`, or (Gemini paths only, see take_query_key) the `?key=` parameter."""
    auth = headers.get("authorization")
    if auth:
        scheme, _, token = auth.partition(" ")
        if scheme.lower() == "bearer" and token.strip():
            return token.strip()
    for key in (headers.get("x-api-key"), headers.get("x-goog-api-key"), query_key):
        if key and key.strip():
            return key.strip()
    return None


def take_query_key(query: bytes) -> tuple[bytes, str | None]:
    """The query string without its `key` parameters, and the first one's value.

    The Gemini API takes its key as `?key=`; removed here, it is never forwarded or logged.
    """
    kept, found = [], None
    for pair in query.split(b"&"):
        name, _, value = pair.partition(b"=")
        if unquote_plus(name.decode("latin-1")) == "key":
            found = found if found is not None else unquote_plus(value.decode("latin-1"))
        elif pair:
            kept.append(pair)
    return b"&".join(kept), found


def authenticate(
    keys: tuple[ApiKey, ...], headers: Mapping[str, str], query_key: str | None = None
) -> Principal | None:
    """The caller's principal, or None when keys are configured and none matches."""
    if not keys:
        return ANONYMOUS
    token = presented_key(headers, query_key)
    if token is None:
        return None
    found = None
    candidate = token.encode()
    for index, entry in enumerate(keys):
        # Compare against every key so timing does not reveal which one (or whether any) matched.
        if hmac.compare_digest(candidate, entry.key.encode()) and found is None:
            pinned = None if entry.admin else entry.user_id
            found = Principal(f"key#{index}", pinned, entry.admin, entry.user_id if entry.admin else None)
    return found
