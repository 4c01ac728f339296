"""What the front door learns about a request, typed, for the handlers and the access log."""

from __future__ import annotations

import re
import uuid
from collections.abc import Mapping, MutableMapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from starlette.requests import Request

from app.auth import Principal
from app.errors import ErrorShape
from app.routing import Route

if TYPE_CHECKING:
    from app.sse import ReplyAssembler

_CLIENT_ID = re.compile(r"[A-Za-z0-9._:@/+=-]{1,128}")
_KEY = "memory_proxy"


@dataclass
class RequestState:
    """Request id, dialect, route, caller, and (once known) the memory scope and model.

    Chats also leave here what the usage log and the metrics read once the response is sent.
    """

    request_id: str
    error_shape: ErrorShape
    route: Route | None = None
    principal: Principal | None = None
    scope: str | None = None
    model: str | None = None
    client: str | None = None  # the header pattern that chose the scope
    recall_seconds: float | None = None
    injected: tuple[str, ...] = ()  # ids of the memories injected
    captured: int = 0  # memories queued for capture
    reply: ReplyAssembler | None = None  # token counts, once the reply has passed

    @property
    def sees_internals(self) -> bool:
        """Operators (admin keys, anonymous loopback) may see health details and LiteLLM's own headers."""
        return self.principal is not None and self.principal.operator


def request_id(headers: Mapping[str, str]) -> str:
    """The client's `x-request-id` when it is a sane token, else a new one."""
    sent = headers.get("x-request-id")
    if sent is not None and _CLIENT_ID.fullmatch(sent):
        return sent
    return "req_" + uuid.uuid4().hex


def attach(scope: MutableMapping[str, Any], state: RequestState) -> None:
    """Store the state in the ASGI scope (Starlette's `request.state` reads the same dict)."""
    scope.setdefault("state", {})[_KEY] = state


def state_of(request: Request) -> RequestState:
    """The state the Guard attached to this request."""
    return request.scope["state"][_KEY]
