"""Provider-side stored objects belong to the key that made them.

LiteLLM reaches the provider with the one master key, so a stored response (`store: true`) is
anyone's who knows its id. The proxy records the owner (a digest of the key, and the scope) of every
Responses id the provider returns, and a pinned key may address only ids recorded as its own: GET,
DELETE, `/input_items`, `/cancel`, and `previous_response_id` in a new response. Any other id is a
404, upstream never called. Families the proxy does not track (message batches, conversations, item
references, containers, vector stores, files, other paths under /v1/responses) are for operators
only. Operators pass everywhere.
"""

from __future__ import annotations

import hashlib
import re
from typing import Any

import orjson
from starlette.requests import Request
from starlette.types import ASGIApp

from app import logsafe, routes
from app.auth import Principal, presented_key
from app.context import Context, ctx
from app.errors import ErrorShape, error_response
from app.request_state import state_of
from app.store import MemoryStore
from app.store.objects import Owner

log = logsafe.logger("memory_proxy.objects")
MAX_REPLY_BYTES = 16 * 1024 * 1024  # a non-streamed response object read past this is not recorded
MAX_HEAD_BYTES = 1024 * 1024  # the stream's first events (they carry the id) are read up to this


def owner_of(request: Request, principal: Principal, scope: str) -> Owner:
    """The owner a request's objects get: its key's digest (never the key) and its scope."""
    key = presented_key(request.headers) or principal.name
    return Owner(hashlib.blake2b(key.encode(), digest_size=16, person=b"object-owner").hexdigest(), scope)


def _not_found(shape: ErrorShape, object_id: str) -> ASGIApp:
    return error_response(shape, 404, f"No response found with id '{object_id}'.")


async def owns(c: Context, request: Request, principal: Principal, object_id: str) -> bool:
    """True when this caller may address `object_id`: operators always, a pinned key its own ids only."""
    if principal.operator:
        return True
    if c.store is None or principal.user_id is None:
        return False
    try:
        recorded = await c.store.object_owner(object_id)
    except Exception as exc:  # an unknown owner is refused, never guessed
        log.warning("object owner lookup failed: %s", type(exc).__name__)
        return False
    return recorded == owner_of(request, principal, principal.user_id)


# A `file_id` key anywhere in a body (OpenAI input_file/input_image and chat `file` parts, Anthropic
# `source: {"type": "file"}`): inside a JSON string the quotes would be escaped, so this finds keys only.
_FILE_ID = re.compile(rb'"file_id"\s*:')


def untracked_reference(body: dict[str, Any], raw: bytes) -> str | None:
    """A field of a new request that names a stored object the proxy does not track, if any: a
    conversation, an item reference, a container (Anthropic's or a tool's), vector stores, a file."""
    for field in ("conversation", "container"):
        if body.get(field) is not None:
            return field
    items = body.get("input")
    if isinstance(items, list) and any(isinstance(i, dict) and i.get("type") == "item_reference" for i in items):
        return "item_reference"
    tools = body.get("tools")
    for tool in tools if isinstance(tools, list) else ():
        if isinstance(tool, dict) and (isinstance(tool.get("container"), str) or tool.get("vector_store_ids")):
            return "container" if isinstance(tool.get("container"), str) else "vector_store_ids"
    if _FILE_ID.search(raw):
        return "file_id"
    return None


async def refused_reference(c: Context, request: Request, body: dict[str, Any], raw: bytes) -> ASGIApp | None:
    """The 404 for a new request that continues or cites an object this caller does not own, else None."""
    state = state_of(request)
    assert state.principal is not None
    if state.principal.operator:
        return None
    if (field := untracked_reference(body, raw)) is not None:
        return error_response(state.error_shape, 404, f"`{field}` is not available to this key")
    previous = body.get("previous_response_id")
    if previous is not None and not (isinstance(previous, str) and await owns(c, request, state.principal, previous)):
        return _not_found(state.error_shape, str(previous))
    return None


async def stored_response(request: Request) -> ASGIApp:
    """/v1/responses/{response_id} and its /input_items and /cancel: the owner's, then LiteLLM's."""
    state = state_of(request)
    assert state.principal is not None
    c = ctx(request)
    principal = state.principal
    object_id = request.path_params["response_id"]
    if not await owns(c, request, principal, object_id):
        return _not_found(state.error_shape, object_id)
    recorder = None
    if c.store is not None and principal.user_id is not None and request.scope["path"].endswith(object_id):
        # LiteLLM hands out a fresh encoding of the id with each response object: it is the owner's too.
        recorder = ResponseIds(c.store, owner_of(request, principal, principal.user_id), streaming=False)
    return await routes.forward(request, recorder)


async def operators_only(request: Request) -> ASGIApp:
    """Stored-object families the proxy does not track: passed through for operators, 404 for pinned keys."""
    state = state_of(request)
    assert state.principal is not None
    if not state.principal.operator:
        return error_response(state.error_shape, 404, f"no such endpoint: {request.scope['path']}")
    return await routes.forward(request)


class ResponseIds:
    """Finds the id of the response object in a reply as its bytes pass by, and records its owner.

    A stream names it in its first event (`response.created`), so only the head of a stream is read;
    a whole reply is kept (up to MAX_REPLY_BYTES) and read at its end. The relay awaits `record`
    before it sends on the bytes that follow, so the client never holds an id the store does not know.
    """

    def __init__(self, store: MemoryStore, owner: Owner, *, streaming: bool) -> None:
        self.store = store
        self.owner = owner
        self.streaming = streaming
        self.found: str | None = None
        self._buf = bytearray()
        self._done = False

    def feed(self, chunk: bytes) -> bool:
        """Read a chunk; True when it completed an id that must be recorded before the chunk is sent."""
        if self._done:
            return False
        self._buf += chunk
        limit = MAX_HEAD_BYTES if self.streaming else MAX_REPLY_BYTES
        if len(self._buf) > limit:
            self._done = True
            self._buf = bytearray()
            return False
        if not self.streaming:
            return False
        while (end := self._buf.find(b"\n\n")) >= 0:
            event, self._buf = bytes(self._buf[:end]), self._buf[end + 2 :]
            for line in event.splitlines():
                if line.startswith(b"data:") and self._take(line[5:]):
                    return True
        return False

    def _take(self, data: bytes) -> bool:
        try:
            event = orjson.loads(data)
        except orjson.JSONDecodeError:
            return False
        response = event.get("response") if isinstance(event, dict) else None
        object_id = response.get("id") if isinstance(response, dict) else None
        if isinstance(object_id, str) and object_id:
            self.found, self._done, self._buf = object_id, True, bytearray()
            return True
        return False

    def finish(self) -> bool:
        """The reply ended whole: True when a non-streamed reply held an id that must be recorded."""
        if self.streaming or self._done:
            return False
        self._done = True
        try:
            reply = orjson.loads(self._buf)
        except orjson.JSONDecodeError:
            return False
        object_id = reply.get("id") if isinstance(reply, dict) else None
        self._buf = bytearray()
        if isinstance(object_id, str) and object_id:
            self.found = object_id
            return True
        return False

    async def record(self) -> None:
        """Write the found id's owner to the store (a failure is logged: the reply goes on)."""
        if self.found is None:
            return
        try:
            await self.store.own_object(self.found, self.owner)
        except Exception as exc:
            log.warning("recording the owner of a stored response failed: %s", type(exc).__name__)
