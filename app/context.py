"""The per-app objects the lifespan owns, shared by the route modules."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from starlette.requests import Request

from app.config import Settings
from app.guessing import Guesses
from app.models import ModelTable
from app.proxy import Upstream
from app.redaction import Redactor
from app.retention import Retention
from app.store import MemoryStore
from app.writer import MemoryWriter

if TYPE_CHECKING:
    from app.oversight import Oversight


@dataclass
class Counters:
    """Counts shown by /health: memory-step failures, requests shed under load, and working
    directories ignored for scoping (too long, control characters, not absolute)."""

    memory_errors: int = 0
    overloaded: int = 0
    ignored_directories: int = 0


@dataclass
class Context:
    """Settings plus what the lifespan opened: the upstream client, the store and its writer."""

    settings: Settings
    models: ModelTable
    upstream: Upstream
    store: MemoryStore | None = None
    writer: MemoryWriter | None = None
    retention: Retention | None = None
    counters: Counters = field(default_factory=Counters)
    guesses: Guesses = field(default_factory=Guesses)  # failed key checks (the Guard's and the dashboard log-in's)
    redactor: Redactor = field(default_factory=Redactor)  # every memory written passes through it
    oversight: Oversight | None = None  # set by create_app: modes, metrics, usage records


def ctx(request: Request) -> Context:
    """The app's context from a request."""
    return request.app.state.ctx
