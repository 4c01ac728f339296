"""Usage records, the filters that read them, and per-scope memory modes: what both backends store."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Mode = Literal["on", "off", "read", "write"]
MODES: tuple[Mode, ...] = ("on", "off", "read", "write")
RECALL_LOG_LIMIT = 20  # requests shown for one memory


@dataclass(frozen=True)
class UsageRecord:
    """One request as the usage log keeps it (no content, no keys)."""

    request_id: str
    at: float
    user_id: str
    client: str | None
    model: str | None
    endpoint: str
    status: int
    latency_ms: float
    ttfb_ms: float | None
    input_tokens: int | None
    output_tokens: int | None
    injected: tuple[str, ...] = ()
    captured: int = 0


@dataclass(frozen=True)
class UsageFilter:
    """Which usage records a query reads; `user_id` None means every scope (operators only)."""

    user_id: str | None = None
    since: float | None = None
    until: float | None = None
    model: str | None = None
    status: int | None = None
