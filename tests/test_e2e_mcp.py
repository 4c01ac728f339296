"""The MCP server at /mcp, driven by the official `mcp` client against the proxy as a real process."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import httpx2
import pytest
from mcp import MCPError
from mcp.client.session import ClientSession
from mcp.client.streamable_http import streamable_http_client

from app.mcp_server import MAX_RESULT_CHARS
from tests.e2e import marker
from tests.stack import free_port, stack_config, start_memory

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]

ALICE, BOB, ADMIN = "alice-" + "k" * 20, "bob-" + "k" * 20, "admin-" + "k" * 20
MAX_CHARS = 1000


@pytest.fixture(scope="module")
def proxy(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A keyed memory proxy: alice and bob pinned to their own scopes, one admin key."""
    workdir: Path = tmp_path_factory.mktemp("mcp")
    config = stack_config(free_port())
    config["auth"] = {
        "keys": [
            {"key": "os.environ/ALICE_KEY", "user_id": "alice"},
            {"key": "os.environ/BOB_KEY", "user_id": "bob"},
            {"key": "os.environ/ADMIN_KEY", "admin": True},
        ]
    }
    config.setdefault("memory", {})["max_memory_chars"] = MAX_CHARS
    proc, url = start_memory(workdir, "mcp", config, free_port(), ALICE_KEY=ALICE, BOB_KEY=BOB, ADMIN_KEY=ADMIN)
    yield url
    proc.stop()


class Mcp:
    """One MCP client session on /mcp as `key` (plus any extra headers)."""

    def __init__(self, url: str, key: str, **headers: str) -> None:
        self.url, self.headers = f"{url}/mcp", {"authorization": f"Bearer {key}", **headers}

    async def run(self, calls: list[tuple[str, dict[str, Any]]]) -> list[Any]:
        """Initialize, then each (tool, arguments) call in order; `tools/list` for a tool named ''."""
        async with httpx2.AsyncClient(headers=self.headers, timeout=30) as http:
            async with streamable_http_client(self.url, http_client=http) as (read, write):
                async with ClientSession(read, write) as session:
                    await session.initialize()
                    results: list[Any] = []
                    for name, arguments in calls:
                        if name:
                            results.append(await session.call_tool(name, arguments))
                        else:
                            results.append(await session.list_tools())
                    return results

    def call(self, name: str, **arguments: Any) -> Any:
        """One tool call in its own session; a result with is_error, or its text parsed as JSON."""
        (result,) = asyncio.run(self.run([(name, arguments)]))
        if result.is_error:
            return result
        return json.loads(result.content[0].text)


def test_tools_are_listed_with_schemas_and_descriptions(proxy: str) -> None:
    (listed,) = asyncio.run(Mcp(proxy, ALICE).run([("", {})]))
    tools = {t.name: t for t in listed.tools}
    assert set(tools) == {"search", "remember", "forget", "list_recent"}
    for tool in tools.values():
        assert tool.description and len(tool.description) > 40
        assert tool.input_schema["type"] == "object"
    assert tools["search"].input_schema["required"] == ["question"]
    assert tools["remember"].input_schema["required"] == ["text"]
    assert tools["forget"].input_schema["required"] == ["id"]
    assert tools["list_recent"].input_schema["properties"]["limit"]["maximum"] == 50


def test_remember_search_list_forget(proxy: str) -> None:
    alice = Mcp(proxy, ALICE)
    word = marker()
    stored = alice.call("remember", text=f"My sailing boat is called {word}.")
    assert stored["new"] is True and stored["role"] == "note" and len(stored["date"]) == 10
    # The same memory the REST API sees, in alice's scope.
    got = httpx.get(f"{proxy}/v1/memories/{stored['id']}", headers={"authorization": f"Bearer {ALICE}"})
    assert got.status_code == 200 and got.json()["user_id"] == "alice"
    again = alice.call("remember", text=f"My sailing boat is called {word}.")
    assert again["new"] is False and again["id"] == stored["id"]

    found = alice.call("search", question=f"what is my boat called {word}")
    assert found["notes"][0]["id"] == stored["id"] and found["notes"][0]["date"] == stored["date"]
    recent = alice.call("list_recent", limit=5)
    assert stored["id"] in [n["id"] for n in recent["notes"]]

    assert alice.call("forget", id=stored["id"]) == {"deleted": stored["id"]}
    assert stored["id"] not in [n["id"] for n in alice.call("search", question=word)["notes"]]
    assert alice.call("forget", id=stored["id"]).is_error


def test_pinned_keys_see_only_their_own_scope(proxy: str) -> None:
    word = marker()
    stored = Mcp(proxy, ALICE).call("remember", text=f"The vault code is {word}.")
    # A pinned key naming another person's scope is refused, as on chats and the memory API (403).
    steering = Mcp(proxy, BOB, **{"x-memory-user-id": "alice"})
    assert steering.call("search", question=f"vault code {word}").is_error
    assert steering.call("list_recent", limit=50).is_error
    bob = Mcp(proxy, BOB)
    assert bob.call("search", question=f"vault code {word}")["notes"] == []
    assert stored["id"] not in [n["id"] for n in bob.call("list_recent", limit=50)["notes"]]
    assert bob.call("forget", id=stored["id"]).is_error
    assert Mcp(proxy, ALICE).call("search", question=f"vault code {word}")["notes"][0]["id"] == stored["id"]
    # An admin key steers with the header, as on the memory API.
    admin = Mcp(proxy, ADMIN, **{"x-memory-user-id": "alice"})
    assert admin.call("search", question=f"vault code {word}")["notes"][0]["id"] == stored["id"]


def test_no_key_or_a_wrong_key_is_401(proxy: str) -> None:
    body = {"jsonrpc": "2.0", "id": 1, "method": "tools/list"}
    headers = {"accept": "application/json, text/event-stream", "mcp-protocol-version": "2025-11-25"}
    assert httpx.post(f"{proxy}/mcp", json=body, headers=headers).status_code == 401
    wrong = {**headers, "authorization": "Bearer not-a-key"}
    assert httpx.post(f"{proxy}/mcp", json=body, headers=wrong).status_code == 401
    with pytest.raises(ExceptionGroup) as failed:  # the official client fails to initialize too
        asyncio.run(Mcp(proxy, "not-a-key").run([]))
    assert failed.group_contains(MCPError)


def test_only_post_is_served(proxy: str) -> None:
    """Stateless: no server-to-client stream to hold open, no session to end."""
    headers = {"authorization": f"Bearer {ALICE}", "accept": "text/event-stream"}
    for method in ("GET", "DELETE"):
        answer = httpx.request(method, f"{proxy}/mcp", headers=headers, timeout=10)
        assert answer.status_code == 405 and answer.headers["allow"] == "POST"


def test_bad_arguments_are_tool_errors(proxy: str) -> None:
    alice = Mcp(proxy, ALICE)
    for name, arguments in [
        ("search", {}),
        ("search", {"question": ""}),
        ("search", {"question": "x", "limit": 0}),
        ("list_recent", {"limit": 51}),
        ("remember", {"text": "x" * (MAX_CHARS + 1)}),
        ("remember", {"text": "   "}),
        ("forget", {"id": "no spaces allowed"}),
        ("no_such_tool", {}),
    ]:
        result = alice.call(name, **arguments)
        assert getattr(result, "is_error", False), (name, arguments, result)


def test_malformed_json_rpc_is_an_error_not_a_500(proxy: str) -> None:
    headers = {
        "authorization": f"Bearer {ALICE}",
        "accept": "application/json, text/event-stream",
        "content-type": "application/json",
        "mcp-protocol-version": "2025-11-25",
    }
    broken = httpx.post(f"{proxy}/mcp", content=b"{not json", headers=headers)
    assert broken.status_code == 400 and broken.json()["error"]["code"] == -32700
    unknown = httpx.post(f"{proxy}/mcp", json={"jsonrpc": "2.0", "id": 7, "method": "no/such"}, headers=headers)
    assert unknown.status_code < 500 and "error" in unknown.json()


def test_results_are_bounded(proxy: str) -> None:
    alice = Mcp(proxy, ALICE)
    word = marker()
    calls = [("remember", {"text": f"{word} note {i} " + "long words " * 85}) for i in range(30)]
    assert not any(r.is_error for r in asyncio.run(alice.run(calls)))
    for found in (alice.call("search", question=word, limit=50), alice.call("list_recent", limit=50)):
        assert 0 < sum(len(n["content"]) for n in found["notes"]) <= MAX_RESULT_CHARS
        assert found["omitted"] > 0 and len(found["notes"]) + found["omitted"] >= 30
