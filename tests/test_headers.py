"""app/headers.py: hop-by-hop stripping both ways, credential swap, cookies."""

from __future__ import annotations

import pytest

from app.headers import (
    HOP_BY_HOP,
    client_response_headers,
    filter_headers,
    upstream_request_headers,
    with_content_type,
)


def names(pairs: list[tuple[str, str]]) -> list[str]:
    return [n.lower() for n, _ in pairs]


CLIENT = [
    ("Host", "127.0.0.1:8764"),
    ("Content-Type", "application/json"),
    ("Content-Length", "123"),
    ("Authorization", "Bearer client-secret"),
    ("X-Api-Key", "client-secret-2"),
    ("Cookie", "session=abc"),
    ("Connection", "keep-alive, X-Private-Hop"),
    ("Keep-Alive", "timeout=5"),
    ("X-Private-Hop", "1"),
    ("TE", "trailers"),
    ("Transfer-Encoding", "chunked"),
    ("Upgrade", "h2c"),
    ("Proxy-Authorization", "Basic cHJveHk="),
    ("Proxy-Connection", "keep-alive"),
    ("Trailer", "x-checksum"),
    ("Expect", "100-continue"),
    ("anthropic-version", "2023-06-01"),
    ("anthropic-beta", "prompt-caching-2024-07-31"),
    ("User-Agent", "claude-cli/1.0"),
    ("X-Request-Id", "r1"),
    ("Accept", "text/event-stream"),
]


@pytest.mark.parametrize("hop", sorted(HOP_BY_HOP))
def test_every_hop_by_hop_header_is_removed(hop: str) -> None:
    pairs = [(hop.title(), "v"), ("x-keep", "1")]
    assert filter_headers(pairs, frozenset()) == [("x-keep", "1")]


def test_fields_named_in_connection_are_removed_case_insensitively() -> None:
    pairs = [
        ("Connection", "close, X-Foo"),
        ("connection", "x-bar"),
        ("x-foo", "1"),
        ("X-BAR", "2"),
        ("x-baz", "3"),
    ]
    assert filter_headers(pairs, frozenset()) == [("x-baz", "3")]


def test_upstream_request_swaps_credential_for_master_key() -> None:
    out = upstream_request_headers(CLIENT, "sk-master")
    auth = [v for n, v in out if n.lower() == "authorization"]
    assert auth == ["Bearer sk-master"]
    assert "x-api-key" not in names(out)
    assert all("client-secret" not in v for _, v in out)


def test_upstream_request_without_master_key_forwards_no_credential() -> None:
    out = upstream_request_headers(CLIENT, None)
    assert "authorization" not in names(out) and "x-api-key" not in names(out)
    assert all("client-secret" not in v for _, v in out)


def test_upstream_request_drops_hop_by_hop_cookies_and_recomputed_headers() -> None:
    out = names(upstream_request_headers(CLIENT, "sk-master"))
    for gone in (
        "host",
        "content-length",
        "cookie",
        "connection",
        "keep-alive",
        "x-private-hop",
        "te",
        "transfer-encoding",
        "upgrade",
        "proxy-authorization",
        "proxy-connection",
        "trailer",
        "expect",
    ):
        assert gone not in out, gone


def test_upstream_request_keeps_end_to_end_headers_in_order() -> None:
    out = upstream_request_headers(CLIENT, "sk-master")
    kept = [(n, v) for n, v in out if n.lower() != "authorization"]
    assert kept == [
        ("Content-Type", "application/json"),
        ("anthropic-version", "2023-06-01"),
        ("anthropic-beta", "prompt-caching-2024-07-31"),
        ("User-Agent", "claude-cli/1.0"),
        ("X-Request-Id", "r1"),
        ("Accept", "text/event-stream"),
    ]


def test_repeated_end_to_end_headers_are_preserved() -> None:
    out = upstream_request_headers([("x-tag", "a"), ("x-tag", "b")], None)
    assert out == [("x-tag", "a"), ("x-tag", "b")]


def test_client_response_filtering() -> None:
    upstream = [
        ("content-type", "text/event-stream"),
        ("content-length", "99"),
        ("transfer-encoding", "chunked"),
        ("connection", "keep-alive, x-upstream-hop"),
        ("x-upstream-hop", "1"),
        ("keep-alive", "timeout=5"),
        ("set-cookie", "track=1"),
        ("server", "uvicorn"),
        ("date", "Mon, 01 Jan 2024 00:00:00 GMT"),
        ("x-litellm-model-id", "abc"),
        ("retry-after", "3"),
        ("x-ratelimit-remaining-requests", "9"),
    ]
    assert client_response_headers(upstream, reveal_internals=True) == [
        ("content-type", "text/event-stream"),
        ("x-litellm-model-id", "abc"),
        ("retry-after", "3"),
        ("x-ratelimit-remaining-requests", "9"),
    ]


def test_litellm_internals_reach_operators_only() -> None:
    upstream = [
        ("x-litellm-model-api-base", "http://10.0.0.5:4000/v1"),
        ("X-LiteLLM-Key-Spend", "12.5"),
        ("x-litellm-version", "1.108.7"),
        ("x-litellm-model-id", "abc"),
        ("llm_provider-openai-organization", "org-secret"),
        ("x-litellm-call-id", "call-1"),
        ("x-litellm-response-cost", "0.001"),
        ("x-ratelimit-remaining-requests", "9"),
    ]
    assert client_response_headers(upstream, reveal_internals=False) == [
        ("x-litellm-call-id", "call-1"),
        ("x-litellm-response-cost", "0.001"),
        ("x-ratelimit-remaining-requests", "9"),
    ]
    assert client_response_headers(upstream, reveal_internals=True) == upstream


def test_memory_controls_and_scope_header_never_go_upstream():
    client = [
        ("x-memory-user-id", "secret-project"),
        ("x-memory-mode", "read"),
        ("x-team-scope", "other"),
        ("x-request-id", "abc"),
    ]
    sent = dict(upstream_request_headers(client, None, scope_header="x-team-scope"))
    assert sent == {"x-request-id": "abc"}


def test_litellm_request_headers_pass_only_when_allowed() -> None:
    sent = [("X-LiteLLM-Num-Retries", "8"), ("x-litellm-timeout", "1"), ("x-litellm-tags", "a"), ("x-other", "1")]
    assert names(upstream_request_headers(sent, None)) == ["x-other"]
    allowed = upstream_request_headers(sent, None, litellm_allowed=frozenset({"x-litellm-tags"}))
    assert names(allowed) == ["x-litellm-tags", "x-other"]


def test_with_content_type_replaces_every_label_and_keeps_the_rest() -> None:
    headers = [("Content-Type", "application/x-www-form-urlencoded"), ("accept", "*/*"), ("content-type", "text/plain")]
    assert with_content_type(headers, "application/json") == [("accept", "*/*"), ("content-type", "application/json")]
