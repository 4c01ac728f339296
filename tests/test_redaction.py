"""Credential redaction: each kind through capture (user turn and reply), the memory API and import, on both stores."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path

import orjson
import pytest

from app import redaction
from app.redaction import Redactor, marker, redact
from app.store import NewMemory
from tests.fake_secrets import credentials, rand
from tests.inprocess import Running, chat_body, make_settings, running

pytestmark = pytest.mark.timeout(60)
KINDS = sorted(credentials())


@pytest.fixture
async def proxy(tmp_path: Path, store_url: str) -> AsyncIterator[Running]:
    """A proxy on each backend, anonymous (loopback, no keys)."""
    async with running(tmp_path, settings=replace(make_settings(tmp_path), db_path=store_url)) as p:
        yield p


@pytest.mark.parametrize("kind", KINDS)
def test_each_kind_is_replaced_by_its_marker_keeping_the_words_around_it(kind: str) -> None:
    sentence, secret = credentials()[kind]
    out = redact(f"before {sentence} after")
    assert secret not in out.text and out.count == 1
    assert marker(kind) in out.text
    assert out.text.startswith("before ") and out.text.endswith(" after")


def test_a_token_longer_than_the_known_pattern_is_removed_whole() -> None:
    long_key = "sk" + "_live_" + rand(99)
    assert redact(f"stripe {long_key} ok").text == f"stripe {marker('stripe-key')} ok"


def test_an_unended_private_key_block_is_removed_to_the_end() -> None:
    body = rand(64)
    assert redact(f"key:\n-----BEGIN RSA PRIVATE KEY-----\n{body}").text == f"key:\n{marker('private-key')}"


def test_a_keyword_value_is_taken_only_where_it_is_quoted() -> None:
    assert redact('password = "summertime" and summertime is warm').text == (
        f'password = "{marker("secret")}" and summertime is warm'
    )


def test_quoted_keywords_and_high_entropy_strings_are_caught() -> None:
    assert redact('password = "' + rand(12) + '"').text == f'password = "{marker("secret")}"'
    token = rand(40)
    assert redact(f'headers = {{"X-Token": "{token}"}}').count >= 1


@pytest.mark.parametrize(
    "text",
    [
        "I went to a support group yesterday and it was really powerful; Melanie painted a sunrise.",
        "commit 3f2c1e9a7b6d5c4e3f2a1b0c9d8e7f6a5b4c3d2e fixed it; see 'a94a8fe5ccb19ba61c4c0873d391e987982fbbd3'",
        "sha256 of the tarball: 'e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855'",
        'def connect(url: str, password: str) -> None:\n    token = os.environ["TOKEN"]\n    key = "primary"',
        "The password must be at least 12 characters; set PGPASSWORD in your environment.",
        "postgresql://localhost/mydb and https://example.com/path?q=1 and user@example.com",
        "Use `uuid4()`: '123e4567-e89b-12d3-a456-426614174000' is a sample id.",
    ],
)
def test_ordinary_prose_code_hashes_and_urls_are_unchanged(text: str) -> None:
    assert redact(text) == redaction.Redacted(text, 0)


async def test_a_failing_redaction_drops_the_item_and_counts(monkeypatch: pytest.MonkeyPatch) -> None:
    def boom(text: str) -> redaction.Redacted:
        raise RuntimeError("detector broke")

    monkeypatch.setattr(redaction, "redact", boom)
    r = Redactor()
    assert await r.memories([NewMemory("s", "user", "anything")]) == []
    assert r.failures == 1


async def test_switched_off_it_stores_text_as_sent() -> None:
    sentence, _ = credentials()["github-token"]
    item = NewMemory("s", "user", sentence)
    assert await Redactor(enabled=False).memories([item]) == [item]


async def _stored_text(p: Running, scope: str) -> str:
    await p.drain()
    export = await p.client.get("/v1/memories/export", params={"user_id": scope})
    return export.text


@pytest.mark.parametrize("anthropic", [False, True])
async def test_capture_redacts_the_user_turn_and_the_reply_that_repeats_it(proxy: Running, anthropic: bool) -> None:
    # The fake provider repeats the last 60 characters of the turn; every short kind ends its turn.
    for kind, (sentence, secret) in credentials().items():
        scope = f"cap-{kind}-{int(anthropic)}"
        path = "/v1/messages" if anthropic else "/v1/chat/completions"
        r = await proxy.client.post(
            path, json=chat_body(sentence, anthropic=anthropic), headers={"x-memory-user-id": scope}
        )
        assert r.status_code == 200, r.text
        assert secret[-20:] in r.text or kind == "private-key"  # the reply did repeat it: the chat is untouched
        stored = await _stored_text(proxy, scope)
        rows = [orjson.loads(line) for line in stored.splitlines()]
        assert {row["role"] for row in rows} == {"user", "assistant"}, kind
        assert secret not in stored, kind
        assert marker(kind) in stored, kind
        if kind != "private-key":
            assert all(marker(kind) in row["content"] for row in rows), (kind, rows)
    health = (await proxy.client.get("/health")).json()["memory_store"]
    assert health["secrets_redacted"] >= 2 * len(KINDS) - 1
    assert "memory_proxy_secrets_redacted" in (await proxy.client.get("/metrics")).text


async def test_memory_api_and_import_store_no_credential(proxy: Running) -> None:
    c = proxy.client
    creds = credentials()
    for kind, (sentence, secret) in creds.items():
        r = await c.post("/v1/memories", json={"user_id": "api", "content": f"note: {sentence}"})
        assert r.status_code == 201, r.text
        assert secret not in r.text and marker(kind) in r.json()["content"]
    lines = b"".join(
        orjson.dumps({"user_id": "imp", "content": sentence, "created_at": 1_700_000_000 + i}) + b"\n"
        for i, (sentence, _) in enumerate(creds.values())
    )
    assert (await c.post("/v1/memories/import", content=lines)).json() == {"imported": len(creds), "skipped": 0}
    for scope in ("api", "imp"):
        stored = await _stored_text(proxy, scope)
        assert all(secret not in stored for _, secret in creds.values())
        assert all(marker(kind) in stored for kind in creds)


async def test_redaction_switched_off_stores_the_text(tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    settings = replace(settings, memory=replace(settings.memory, redact_secrets=False))
    sentence, secret = credentials()["github-token"]
    async with running(tmp_path, settings=settings) as p:
        assert (await p.client.post("/v1/memories", json={"user_id": "off", "content": sentence})).status_code == 201
        assert secret in await _stored_text(p, "off")


def test_a_long_line_reaches_the_plugins_in_overlapping_windows() -> None:
    line = "v" * 2500
    parts = redaction.windows(line, 1000, 300)
    assert all(len(p) <= 1000 for p in parts) and "".join(p[:700] for p in parts[:-1]) + parts[-1] == line
    assert redaction.windows("short\nlines", 1000, 300) == ["short", "lines"]


@pytest.mark.parametrize("at", [0, 690, 980, 1690])
def test_a_secret_on_a_window_boundary_of_a_long_line_is_still_found(at: int) -> None:
    sentence, secret = credentials()["github-token"]
    filler = "word " * 500
    text = filler[:at] + " " + sentence + " " + filler
    assert secret in text and secret not in redaction.redact(text).text
