"""Helpers for end-to-end tests: SDK clients and the fake provider's request log."""

from __future__ import annotations

import time
import uuid

import anthropic
import httpx
import openai

from tests.stack import Stack


def oai(url: str, key: str = "anything", **headers: str) -> openai.OpenAI:
    """An official OpenAI client pointed at a memory proxy."""
    return openai.OpenAI(base_url=f"{url}/v1", api_key=key, max_retries=0, timeout=30, default_headers=headers)


def anth(url: str, key: str = "anything", **headers: str) -> anthropic.Anthropic:
    """An official Anthropic client pointed at a memory proxy."""
    return anthropic.Anthropic(base_url=url, api_key=key, max_retries=0, timeout=30, default_headers=headers)


def marker() -> str:
    """A unique word to find one test's requests in the provider log."""
    return "mk" + uuid.uuid4().hex[:12]


def provider_calls(stack: Stack, needle: str) -> list[dict]:
    """Requests the fake provider received whose body mentions `needle`."""
    calls = httpx.get(f"{stack.provider_url}/_requests", timeout=10).json()
    return [c for c in calls if needle in str(c["body"])]


def wait_for(check, timeout: float = 10.0):  # type: ignore[no-untyped-def]
    """Poll until `check()` is truthy (capture runs after the response); return its value."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(0.05)


def writer_idle(url: str) -> bool:
    """True when the proxy's memory writer has nothing queued and nothing being written."""
    return httpx.get(f"{url}/health", timeout=10).json()["memory_store"]["writer_idle"]
