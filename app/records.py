"""Memory records as clients see them (API bodies, JSON Lines imports and exports, the CLI): shaped, parsed, checked."""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import orjson

from app.bodies import TooDeep, parse_json
from app.store import Memory, NewMemory

ROLES = frozenset({"user", "assistant", "note", "system"})
MAX_LIMIT = 1000
MEMORY_ID = re.compile(r"[A-Za-z0-9_.:-]{1,64}")  # always fullmatch
# The times every store can index and every page can print: years 1 to 9999 in UTC (datetime's range).
EARLIEST = datetime(1, 1, 1, tzinfo=UTC).timestamp()
LATEST = datetime(9999, 12, 31, 23, 59, 59, tzinfo=UTC).timestamp()
MAX_MODEL_CHARS = 256


def iso(ts: float) -> str:
    """A UTC timestamp as ISO-8601 with a Z suffix."""
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def memory_json(memory: Memory) -> dict[str, Any]:
    """The API shape of a memory, with an ISO-8601 UTC `created_at`."""
    return {
        "id": memory.id,
        "user_id": memory.user_id,
        "role": memory.role,
        "content": memory.content,
        "created_at": iso(memory.created_at),
        "model": memory.model,
        "metadata": memory.metadata,
        "recall_count": memory.recall_count,
        "last_recalled_at": iso(memory.last_recalled_at) if memory.last_recalled_at is not None else None,
    }


class RecordError(ValueError):
    """A record that cannot be stored; the message says where and why."""


class RecordTooLarge(RecordError):
    """A record or an import past a configured size limit (413, not 400)."""


def parse_timestamp(value: Any, where: str) -> float:
    """`created_at` as ISO-8601 (naive means UTC) or Unix seconds, from year 1 to 9999 in UTC."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        ts = float(value)
    elif isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            raise RecordError(f"{where}: created_at {value[:40]!r} is not an ISO-8601 time") from None
        ts = (parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)).timestamp()
    else:
        raise RecordError(f"{where}: created_at must be an ISO-8601 time or a Unix timestamp")
    if not EARLIEST <= ts <= LATEST:  # also NaN; an offset can move year 1 or 9999 out of range in UTC
        raise RecordError(f"{where}: created_at {str(value)[:40]!r} is out of range (years 1 to 9999 in UTC)")
    return ts


def _text(value: str, where: str, name: str) -> str:
    # PostgreSQL's text cannot hold NUL: refused on every backend, so a record means the same everywhere.
    if "\x00" in value:
        raise RecordError(f"{where}: {name} must not contain NUL characters")
    return value


def parse_record(
    item: Any, where: str, default_role: str, scope_for: Callable[[str | None], str], max_chars: int | None = None
) -> NewMemory:
    """One memory object; `scope_for` turns its optional `user_id` into the scope (or raises)."""
    if not isinstance(item, dict):
        raise RecordError(f"{where}: expected a JSON object")
    content = item.get("content")
    if not isinstance(content, str) or not content.strip():
        raise RecordError(f"{where}: content must be a non-empty string")
    if max_chars is not None and len(content) > max_chars:
        raise RecordTooLarge(f"{where}: content is longer than the limit of {max_chars} characters")
    _text(content, where, "content")
    role = item.get("role", default_role)
    if not isinstance(role, str) or role not in ROLES:
        raise RecordError(f"{where}: role must be one of {sorted(ROLES)}")
    metadata = item.get("metadata") or {}
    if not isinstance(metadata, dict):
        raise RecordError(f"{where}: metadata must be a JSON object")
    user_id = item.get("user_id")
    if user_id is not None and not isinstance(user_id, str):
        raise RecordError(f"{where}: user_id must be a string")
    model = item.get("model")
    if model is not None and not (isinstance(model, str) and len(_text(model, where, "model")) <= MAX_MODEL_CHARS):
        raise RecordError(f"{where}: model must be a string of at most {MAX_MODEL_CHARS} characters")
    memory_id = item.get("id")
    if memory_id is not None and not (isinstance(memory_id, str) and MEMORY_ID.fullmatch(memory_id)):
        raise RecordError(f"{where}: id must be 1-64 of A-Z a-z 0-9 . _ : -")
    extra: dict[str, Any] = {}
    if item.get("created_at") is not None:
        extra["created_at"] = parse_timestamp(item["created_at"], where)
    try:
        scope = scope_for(user_id)
    except ValueError as exc:  # a bad scope name; permission errors pass through untouched
        raise RecordError(f"{where}: {exc}") from None
    return NewMemory(
        scope,
        role,
        content.strip(),
        model=model,
        metadata=metadata,
        id=memory_id,
        **extra,
    )


def split_lines(data: bytes, max_lines: int | None = None) -> list[tuple[int, bytes]]:
    """The non-blank lines of a JSON Lines body with their line numbers, refusing past `max_lines`."""
    numbered = [(n, line) for n, line in enumerate(data.removeprefix(b"\xef\xbb\xbf").splitlines(), 1) if line.strip()]
    if max_lines is not None and len(numbered) > max_lines:
        raise RecordTooLarge(f"the import has {len(numbered)} records; the limit is {max_lines}")
    return numbered


def parse_numbered(
    lines: list[tuple[int, bytes]], scope_for: Callable[[str | None], str], max_chars: int | None = None
) -> list[NewMemory]:
    """Records from `split_lines` output; the first bad one raises, naming its line."""
    items = []
    for number, line in lines:
        try:
            parsed = parse_json(line)
        except orjson.JSONDecodeError:
            raise RecordError(f"line {number}: not valid JSON") from None
        except TooDeep as exc:
            raise RecordError(f"line {number}: {exc}") from None
        items.append(parse_record(parsed, f"line {number}", "user", scope_for, max_chars))
    return items


def parse_lines(data: bytes, scope_for: Callable[[str | None], str]) -> list[NewMemory]:
    """Every non-blank JSON Lines record, all checked before any is returned."""
    return parse_numbered(split_lines(data), scope_for)
