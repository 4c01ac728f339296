"""Usage figures: records grouped by day, model or scope, the same for the API, the CLI and the dashboard."""

from __future__ import annotations

import math
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any, Literal, get_args

from app.records import parse_timestamp
from app.store.usage import UsageRecord

GroupBy = Literal["day", "model", "scope"]
GROUP_BYS: tuple[GroupBy, ...] = get_args(GroupBy)
FIGURES = (
    "requests",
    "errors",
    "input_tokens",
    "output_tokens",
    "memories_injected",
    "memories_captured",
    "p50_ms",
    "p95_ms",
)


def day_of(ts: float) -> str:
    """The UTC date of a timestamp, as YYYY-MM-DD."""
    return datetime.fromtimestamp(ts, UTC).date().isoformat()


def parse_when(raw: str, name: str) -> float:
    """A `since`/`until` value: Unix seconds, or an ISO-8601 date or time (naive means UTC)."""
    try:
        return parse_timestamp(float(raw), name)
    except ValueError:
        return parse_timestamp(raw, name)


def _key(record: UsageRecord, group_by: GroupBy) -> str:
    if group_by == "day":
        return day_of(record.at)
    if group_by == "model":
        return record.model or ""
    return record.user_id


def percentile(sorted_values: list[float], share: float) -> float | None:
    """Nearest-rank percentile of an ascending list (None when empty)."""
    if not sorted_values:
        return None
    return sorted_values[max(0, math.ceil(share * len(sorted_values)) - 1)]


def table_rows(rows: list[dict[str, Any]], group_by: GroupBy) -> list[list[str]]:
    """Summary rows as text cells, group key first (the CLI's table)."""
    return [[str(r[group_by]) or "-", *("-" if r[f] is None else str(r[f]) for f in FIGURES)] for r in rows]


def summarise(records: Iterable[UsageRecord], group_by: GroupBy) -> list[dict[str, Any]]:
    """One row per group, in key order: counts, token sums, memory flow and latency percentiles."""
    groups: dict[str, list[UsageRecord]] = {}
    for r in records:
        groups.setdefault(_key(r, group_by), []).append(r)
    rows = []
    for key in sorted(groups):
        members = groups[key]
        latencies = sorted(r.latency_ms for r in members)
        p50, p95 = percentile(latencies, 0.5), percentile(latencies, 0.95)
        rows.append(
            {
                group_by: key,
                "requests": len(members),
                "errors": sum(1 for r in members if r.status >= 400),
                "input_tokens": sum(r.input_tokens or 0 for r in members),
                "output_tokens": sum(r.output_tokens or 0 for r in members),
                "memories_injected": sum(len(r.injected) for r in members),
                "memories_captured": sum(r.captured for r in members),
                "p50_ms": None if p50 is None else round(p50, 2),
                "p95_ms": None if p95 is None else round(p95, 2),
            }
        )
    return rows
