"""Usage records, the filters that read them, and per-scope memory modes: what both backends store."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import orjson

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


USAGE_COLUMNS = (
    "u.request_id, u.at, u.user_id, u.client, u.model, u.endpoint, u.status, u.latency_ms, u.ttfb_ms, "
    "u.input_tokens, u.output_tokens, u.injected, u.captured"
)
# Every known scope (memories, usage or a stored mode) with its counts; `{only}` narrows to one scope.
SCOPES_SQL = (
    "SELECT s.user_id, "
    "(SELECT count(*) FROM memories m WHERE m.user_id = s.user_id), "
    "(SELECT count(*) FROM usage u WHERE u.user_id = s.user_id), "
    "(SELECT max(u.at) FROM usage u WHERE u.user_id = s.user_id), "
    "(SELECT mode FROM scope_modes x WHERE x.user_id = s.user_id) "
    "FROM (SELECT user_id FROM memories {only} UNION SELECT user_id FROM usage {only} "
    "UNION SELECT user_id FROM scope_modes {only}) s ORDER BY s.user_id"
)


def usage_record(row: Sequence[Any]) -> UsageRecord:
    """A UsageRecord from a row of USAGE_COLUMNS (`injected` is stored as a JSON list)."""
    fields = list(row)
    fields[11] = tuple(orjson.loads(row[11]))
    return UsageRecord(*fields)


def usage_conditions(f: UsageFilter) -> list[tuple[str, Any]]:
    """(column and operator, value) for each filter set in `f`, the scope first; values are bound, never inlined."""
    wanted = (
        ("u.user_id =", f.user_id),
        ("u.at >=", f.since),
        ("u.at <", f.until),
        ("u.model =", f.model),
        ("u.status =", f.status),
    )
    return [(clause, value) for clause, value in wanted if value is not None]


def scope_summary(row: Sequence[Any]) -> dict[str, Any]:
    """A SCOPES_SQL row as the scope object (a scope without a stored mode is `on`)."""
    user_id, memories, requests, last, mode = row
    return {
        "user_id": user_id,
        "memories": memories,
        "requests": requests,
        "last_active_at": last,
        "mode": mode or "on",
    }
