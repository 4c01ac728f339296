"""Header hygiene between client, proxy and LiteLLM (RFC 9110 §7.6.1)."""

from __future__ import annotations

from collections.abc import Collection, Iterable

HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "proxy-connection",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
    }
)
# Never forwarded upstream: the client's credentials (replaced by the master key), its cookies,
# and headers the HTTP client recomputes.
_REQUEST_DROP = frozenset(
    {"authorization", "x-api-key", "x-goog-api-key", "cookie", "host", "content-length", "expect"}
)
_RESPONSE_DROP = frozenset({"content-length", "set-cookie", "server", "date"})


def _connection_tokens(headers: Iterable[tuple[str, str]]) -> set[str]:
    tokens: set[str] = set()
    for name, value in headers:
        if name.lower() == "connection":
            tokens.update(t.strip().lower() for t in value.split(",") if t.strip())
    return tokens


def filter_headers(headers: Iterable[tuple[str, str]], drop: frozenset[str]) -> list[tuple[str, str]]:
    """The end-to-end headers: hop-by-hop ones, those named in Connection, and `drop` removed."""
    pairs = list(headers)
    named = _connection_tokens(pairs)
    return [(n, v) for n, v in pairs if (low := n.lower()) not in HOP_BY_HOP and low not in named and low not in drop]


def upstream_request_headers(
    client: Iterable[tuple[str, str]],
    master_key: str | None,
    scope_header: str = "x-memory-user-id",
    litellm_allowed: Collection[str] = (),
) -> list[tuple[str, str]]:
    """Headers to send to LiteLLM: filtered, with the client's credential swapped for the master key.

    Our own `x-memory-*` controls and the scope header stay here: LiteLLM forwards every `x-*`
    header to the provider, and a scope name is nobody else's business. LiteLLM's `x-litellm-*`
    request headers (retries, timeouts, tags, callbacks, …) are the operator's: only those named in
    `litellm_allowed` pass.
    """
    out = [
        (n, v)
        for n, v in filter_headers(client, _REQUEST_DROP)
        if not (low := n.lower()).startswith("x-memory-")
        and low != scope_header
        and (not low.startswith("x-litellm-") or low in litellm_allowed)
    ]
    if master_key:
        out.append(("authorization", f"Bearer {master_key}"))
    return out


def with_content_type(headers: Iterable[tuple[str, str]], content_type: str) -> list[tuple[str, str]]:
    """`headers` with every `content-type` replaced by one of `content_type`."""
    return [*((n, v) for n, v in headers if n.lower() != "content-type"), ("content-type", content_type)]


# LiteLLM's own response headers that are fine for any client: they describe this one call.
_LITELLM_PUBLIC = frozenset(
    {
        "x-litellm-call-id",
        "x-litellm-response-cost",
        "x-litellm-response-duration-ms",
        "x-litellm-overhead-duration-ms",
        "x-litellm-attempted-retries",
        "x-litellm-attempted-fallbacks",
    }
)


def is_internal(name: str) -> bool:
    """LiteLLM headers that expose the operator's set-up: provider URLs, the master key's spend,
    versions, deployment ids, and the provider's raw headers (`llm_provider-*`, e.g. the organisation)."""
    low = name.lower()
    return (low.startswith("x-litellm-") and low not in _LITELLM_PUBLIC) or low.startswith("llm_provider-")


def client_response_headers(upstream: Iterable[tuple[str, str]], reveal_internals: bool) -> list[tuple[str, str]]:
    """Headers to return to the client from LiteLLM's response; internals only for operators."""
    kept = filter_headers(upstream, _RESPONSE_DROP)
    return kept if reveal_internals else [(n, v) for n, v in kept if not is_internal(n)]
