"""End-to-end: usage records with real token counts, scope modes, /metrics and the dashboard, through the
real stack (fake provider → LiteLLM binary → memory proxy from the Procfile) and the official SDKs."""

from __future__ import annotations

import httpx
import pytest

from tests.e2e import anth, marker, oai, wait_for, writer_idle

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(900)]


def usage_by_scope(stack, scope: str) -> dict:  # type: ignore[no-untyped-def]
    r = httpx.get(f"{stack.memory_url}/v1/usage", params={"user_id": scope, "group_by": "scope"}, timeout=10)
    assert r.status_code == 200, r.text
    rows = r.json()["data"]
    return rows[0] if rows else {}


def test_sdk_chats_leave_usage_with_tokens_from_litellm(stack):  # type: ignore[no-untyped-def]
    scope = f"usage-{marker()}"
    oai(stack.memory_url, **{"x-memory-user-id": scope}).chat.completions.create(
        model="fake-model", messages=[{"role": "user", "content": "count my tokens"}]
    )
    with anth(stack.memory_url, **{"x-memory-user-id": scope}).messages.stream(
        model="claude-fake", max_tokens=50, messages=[{"role": "user", "content": "count these too"}]
    ) as events:
        assert events.get_final_text()
    assert wait_for(lambda: writer_idle(stack.memory_url) and usage_by_scope(stack, scope).get("requests") == 2)
    row = usage_by_scope(stack, scope)
    assert row["errors"] == 0 and row["memories_captured"] == 4
    assert row["input_tokens"] >= 20 and row["output_tokens"] >= 10  # the fake provider's counts, via LiteLLM
    assert row["p50_ms"] > 0


def test_paused_scope_is_not_captured_and_metrics_and_dashboard_answer(stack):  # type: ignore[no-untyped-def]
    scope = f"paused-{marker()}"
    r = httpx.patch(f"{stack.memory_url}/v1/scopes/{scope}", json={"mode": "off"}, timeout=10)
    assert r.status_code == 200 and r.json()["mode"] == "off"
    info = httpx.get(f"{stack.memory_url}/memory-routing/info", headers={"x-memory-user-id": scope}, timeout=10)
    assert info.json()["mode"] == "off"
    oai(stack.memory_url, **{"x-memory-user-id": scope, "x-memory-mode": "on"}).chat.completions.create(
        model="fake-model", messages=[{"role": "user", "content": "do not keep this"}]
    )
    assert wait_for(lambda: writer_idle(stack.memory_url) and usage_by_scope(stack, scope).get("requests") == 1)
    assert usage_by_scope(stack, scope)["memories_captured"] == 0
    memories = httpx.get(f"{stack.memory_url}/v1/memories", params={"user_id": scope}, timeout=10).json()["data"]
    assert memories == []

    metrics = httpx.get(f"{stack.memory_url}/metrics", timeout=10)
    assert metrics.status_code == 200
    assert 'memory_proxy_requests_total{endpoint="chat",model="fake-model",status="200"}' in metrics.text
    assert "memory_proxy_litellm_up 1.0" in metrics.text
    page = httpx.get(f"{stack.memory_url}/dashboard", timeout=10)
    assert page.status_code == 200 and scope in page.text
