"""Prometheus metrics: one registry per app, fed once per answered request, read by GET /metrics."""

from __future__ import annotations

from collections.abc import Callable, Iterator

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from app.config import Settings
from app.request_state import RequestState

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)
RECALL_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2)
OTHER = "other"  # the label for a model the config does not list (a client's free text)
Gauges = Callable[[], dict[str, float]]


class _Live(Collector):
    """Values read at scrape time: gauges (writer queue, drops, store errors, LiteLLM reachability) or counters."""

    def __init__(self, read: Gauges, help_texts: dict[str, str], family: type[Metric] = GaugeMetricFamily) -> None:
        self.read = read
        self.help_texts = help_texts
        self.family = family

    def collect(self) -> Iterator[Metric]:
        for name, value in self.read().items():
            yield self.family(name, self.help_texts[name], value=value)  # type: ignore[call-arg]


GAUGES = {
    "memory_proxy_writer_queue_depth": "memories and usage records waiting to be written",
    "memory_proxy_writer_dropped": "memories and usage records dropped (failed every retry, or a full queue)",
    "memory_proxy_store_errors": "failed store writes plus memory steps that failed during chats",
    "memory_proxy_secrets_redacted": "credentials replaced by a marker before a memory was written",
    "memory_proxy_redaction_failures": "memories not stored because redaction failed on them",
    "memory_proxy_retention_deleted": "memories deleted by retention (too old, or beyond max_per_scope)",
    "memory_proxy_litellm_up": "1 when LiteLLM answered its health probe at scrape time",
    "memory_proxy_ignored_directories": "working directories in client environment blocks unfit for scoping",
    "memory_proxy_auth_limiter_records": "client addresses and key prefixes with failed key checks on record",
}
COUNTS = {
    "memory_proxy_auth_failures": "failed key checks (API keys and dashboard log-ins)",
    "memory_proxy_auth_refused": "key checks refused with 429 after too many failures from the client or key prefix",
}


class Metrics:
    """Owns the registry: request counts and latency by endpoint, status and model; recall; memory flow."""

    def __init__(self, settings: Settings, gauges: Gauges, counts: Gauges) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.scope_label = settings.observability.metrics_scope_label
        self.models = frozenset(m.name for m in settings.models)
        labels = ["endpoint", "status", "model", *(["scope"] if self.scope_label else [])]
        per_scope = ["scope"] if self.scope_label else []
        r = self.registry
        self.requests = Counter("memory_proxy_requests", "requests answered", labels, registry=r)
        self.latency = Histogram(
            "memory_proxy_request_seconds", "time to the last byte", labels, buckets=LATENCY_BUCKETS, registry=r
        )
        self.recall = Histogram(
            "memory_proxy_recall_seconds", "memory search and selection", per_scope, buckets=RECALL_BUCKETS, registry=r
        )
        self.injected = Counter("memory_proxy_memories_injected", "memories injected", per_scope, registry=r)
        self.captured = Counter("memory_proxy_memories_captured", "memories queued for capture", per_scope, registry=r)
        r.register(_Live(gauges, GAUGES))
        r.register(_Live(counts, COUNTS, CounterMetricFamily))

    def observe(self, state: RequestState, status: int, seconds: float) -> None:
        """Count one answered request."""
        if state.route is None:  # refused before routing (a bad path): no endpoint to name
            return
        model = state.model if state.model in self.models else (OTHER if state.model else "")
        scope = [state.scope or ""] if self.scope_label else []
        labels = (state.route.name, str(status or 499), model, *scope)
        self.requests.labels(*labels).inc()
        self.latency.labels(*labels).observe(seconds)
        if state.recall_seconds is not None:
            (self.recall.labels(*scope) if scope else self.recall).observe(state.recall_seconds)
        if state.injected:
            (self.injected.labels(*scope) if scope else self.injected).inc(len(state.injected))
        if state.captured:
            (self.captured.labels(*scope) if scope else self.captured).inc(state.captured)

    def render(self) -> bytes:
        """The Prometheus text exposition of every metric."""
        return generate_latest(self.registry)
