"""Seeing and steering memory at run time: per-scope modes, usage records and metrics for each answer."""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING, Any

from app import logsafe
from app.config import Settings
from app.dashboard import templates
from app.metrics import Metrics
from app.request_state import RequestState
from app.sessions import Sessions
from app.store import MemoryStore
from app.store.usage import Mode, UsageRecord

if TYPE_CHECKING:
    from app.context import Context

log = logsafe.logger("memory_proxy.oversight")
PRUNE_EVERY = 3600.0  # seconds between deletions of usage records past their retention
DAY = 86400.0
USAGE_ROUTES = frozenset({"chat"})  # the routes whose requests the usage log records


class Oversight:
    """Owns the per-scope modes (a cache of the store's table), the metrics, usage recording, and the
    dashboard's sessions and templates."""

    def __init__(self, settings: Settings, context: Context) -> None:
        self.settings = settings
        self.context = context
        self.modes: dict[str, Mode] = {}
        self.directories: dict[str, str] = {}  # project scope -> its working directory (a cache of the store's)
        self.litellm_up = 0.0
        obs = settings.observability
        self.metrics = Metrics(settings, self._gauges, self._counts) if obs.metrics_enabled else None
        self.retention = obs.usage_retention_days * DAY
        self._pruned_at = 0.0
        self._tasks: set[asyncio.Task[Any]] = set()
        self.sessions = Sessions()
        self.templates = templates()

    def mode(self, scope: str) -> Mode:
        """The scope's stored memory mode (`on` unless someone changed it)."""
        return self.modes.get(scope, "on")

    async def load(self) -> None:
        """Read the stored modes (at start-up); changes go through set_mode, which keeps this cache."""
        store = self.context.store
        if store is not None:
            self.modes = await store.scope_modes()
            self.directories = await store.project_directories()

    def saw_project(self, scope: str, directory: str) -> None:
        """A chat came from `directory` in project scope `scope`: record it once (the store keeps it)."""
        if self.directories.get(scope) == directory:
            return
        self.directories[scope] = directory
        if self.context.store is not None:
            self._spawn(self._note_project(self.context.store, scope, directory))

    async def _note_project(self, store: MemoryStore, scope: str, directory: str) -> None:
        try:
            await store.note_project(scope, directory)
        except Exception as exc:  # shown from memory until the next chat of the project writes it again
            self.directories.pop(scope, None)
            log.warning("scope %s: recording its project directory failed: %s", scope, type(exc).__name__)

    async def set_mode(self, store: MemoryStore, scope: str, mode: Mode) -> None:
        """Store a scope's mode; every later request of the scope follows it at once."""
        await store.set_scope_mode(scope, mode)
        if mode == "on":
            self.modes.pop(scope, None)
        else:
            self.modes[scope] = mode

    def _gauges(self) -> dict[str, float]:
        c = self.context
        writer = c.writer
        return {
            "memory_proxy_writer_queue_depth": writer.queue.qsize() if writer else 0,
            "memory_proxy_writer_dropped": writer.dropped if writer else 0,
            "memory_proxy_store_errors": (writer.failures if writer else 0) + c.counters.memory_errors,
            "memory_proxy_secrets_redacted": c.redactor.redacted,
            "memory_proxy_redaction_failures": c.redactor.failures,
            "memory_proxy_retention_deleted": (
                c.retention.deleted_for_age + c.retention.deleted_for_count if c.retention else 0
            ),
            "memory_proxy_litellm_up": self.litellm_up,
            "memory_proxy_ignored_directories": c.counters.ignored_directories,
            "memory_proxy_auth_limiter_records": c.guesses.tracked(),
        }

    def _counts(self) -> dict[str, float]:
        guesses = self.context.guesses
        return {"memory_proxy_auth_failures": guesses.failures, "memory_proxy_auth_refused": guesses.refused}

    def answered(self, state: RequestState, status: int, seconds: float, ttfb: float | None) -> None:
        """One request is answered: count it, and queue its usage record (chats only)."""
        if self.metrics is not None:
            self.metrics.observe(state, status, seconds)
        writer = self.context.writer
        route = state.route
        if writer is None or route is None or route.name not in USAGE_ROUTES or state.scope is None:
            return
        if not self.settings.observability.usage_enabled:
            return
        tokens_in, tokens_out = state.reply.tokens() if state.reply is not None else (None, None)
        now = time.time()
        writer.submit(
            [
                UsageRecord(
                    state.request_id,
                    now,
                    state.scope,
                    state.client,
                    state.model,
                    route.path,
                    status or 499,
                    seconds * 1000,
                    None if ttfb is None else ttfb * 1000,
                    tokens_in,
                    tokens_out,
                    state.injected,
                    state.captured,
                )
            ]
        )
        if now - self._pruned_at > PRUNE_EVERY:
            self._pruned_at = now
            self._spawn(self.prune(now - self.retention))

    async def prune(self, before: float) -> None:
        """Delete usage records older than `before` (retention)."""
        store = self.context.store
        if store is None:
            return
        try:
            removed = await store.prune_usage(before)
        except Exception as exc:  # retention runs again within the hour
            log.warning("usage retention failed: %s", type(exc).__name__)
            return
        if removed:
            log.info("usage retention: %d records older than %d days deleted", removed, self.retention // DAY)

    def _spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
