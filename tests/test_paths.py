"""Unit tests of path canonicalisation: one decoded path to decide on, one raw path to forward."""

from __future__ import annotations

import pytest

from app.paths import BadPath, canonical_path

TRAVERSALS = [
    b"/v1/models/../../model/info",
    b"/v1/models/%2e%2e/%2e%2e/model/info",
    b"/v1/models/%2E%2E/%2E%2E/model/info",
    b"/v1/models/.%2e/.%2E/model/info",
    b"/v1/models/..%2f..%2fmodel/info",
    b"/v1/models/..%5c..%5cmodel/info",
    b"/models/../routes",
    b"/v1/messages/../../routes",
    b"/v1/models/./../key/generate",
    b"/v1/models/..",
    b"/v1/models/.",
    b"/v1/models/%252e%252e/%252e%252e/model/info",
    b"/v1/models/a%2f%2f..%2fkey",
    b"/v1/models/a%00b",
    b"model/info",
    b"http://127.0.0.1:8765/model/info",
    b"/v1/models/\xff",
]


@pytest.mark.parametrize("raw", TRAVERSALS)
def test_paths_a_server_could_rewrite_are_refused(raw: bytes) -> None:
    with pytest.raises(BadPath):
        canonical_path(raw)


@pytest.mark.parametrize(
    ("raw", "decoded", "forwarded"),
    [
        (b"/v1/chat/completions", "/v1/chat/completions", b"/v1/chat/completions"),
        (b"//v1//models///x", "/v1/models/x", b"/v1/models/x"),
        (b"/v1/models/openai%2Fgpt-4o", "/v1/models/openai/gpt-4o", b"/v1/models/openai%2Fgpt-4o"),
        (b"/v1/files/a%20b", "/v1/files/a b", b"/v1/files/a%20b"),
        (b"/v1/models/gpt-4.1..mini", "/v1/models/gpt-4.1..mini", b"/v1/models/gpt-4.1..mini"),
    ],
)
def test_plain_paths_pass_and_keep_their_encoding(raw: bytes, decoded: str, forwarded: bytes) -> None:
    assert canonical_path(raw) == (decoded, forwarded)
