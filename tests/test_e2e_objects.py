"""End-to-end through the real LiteLLM: stored responses stay their maker's; a key cannot add retries."""

from __future__ import annotations

import httpx
import openai
import pytest

from tests.e2e import marker, oai, provider_calls
from tests.stack import stack_config, start_memory

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(600)]
ALICE_KEY = "alice-key-" + "e2e-objects"
BOB_KEY = "bob-key-" + "e2e-objects"
ADMIN_KEY = "admin-key-" + "e2e-objects"


@pytest.fixture(scope="module")
def keyed(stack, tmp_path_factory):  # type: ignore[no-untyped-def]
    config = stack_config(int(stack.provider_url.rsplit(":", 1)[1]))
    config["auth"] = {
        "keys": [
            {"key": "os.environ/ALICE_PROXY_KEY", "user_id": "alice"},
            {"key": "os.environ/BOB_PROXY_KEY", "user_id": "bob"},
            {"key": "os.environ/ADMIN_PROXY_KEY", "admin": True},
        ]
    }
    litellm_port = int(stack.litellm_url.rsplit(":", 1)[1])
    proc, url = start_memory(
        tmp_path_factory.mktemp("objects"),
        "objects",
        config,
        litellm_port,
        ALICE_PROXY_KEY=ALICE_KEY,
        BOB_PROXY_KEY=BOB_KEY,
        ADMIN_PROXY_KEY=ADMIN_KEY,
    )
    yield url
    proc.stop()


@pytest.mark.parametrize("stream", [False, True])
def test_bob_cannot_read_continue_or_delete_alices_response(keyed: str, stream: bool) -> None:
    alice, bob = oai(keyed, ALICE_KEY), oai(keyed, BOB_KEY)
    words = f"alice private {marker()}: my bank PIN is 8831"
    if stream:
        with alice.responses.stream(model="fake-model", input=words, store=True) as events:
            rid = events.get_final_response().id
    else:
        rid = alice.responses.create(model="fake-model", input=words, store=True).id
    for attempt in (
        lambda: bob.responses.retrieve(rid),
        lambda: bob.responses.input_items.list(rid),
        lambda: bob.responses.create(model="fake-model", input="go on", previous_response_id=rid),
        lambda: bob.responses.cancel(rid),
        lambda: bob.responses.delete(rid),
    ):
        with pytest.raises(openai.NotFoundError):
            attempt()
    again = alice.responses.retrieve(rid)  # LiteLLM encodes the id afresh: the new one is alice's too
    assert again.status == "completed" and alice.responses.retrieve(again.id).status == "completed"
    with pytest.raises(openai.NotFoundError):
        bob.responses.retrieve(again.id)
    assert "8831" in str(alice.responses.input_items.list(rid).data)
    follow = alice.responses.create(model="fake-model", input="what was my PIN?", previous_response_id=rid)
    assert follow.id != rid
    alice.responses.delete(rid)
    with pytest.raises(openai.NotFoundError):
        alice.responses.retrieve(rid)


def failing_chat_calls(url: str, key: str, *, header: bool = False, body: bool = False) -> int:
    needle = marker()
    request = {"model": "fake-model", "messages": [{"role": "user", "content": f"{needle} FAULT:status=503"}]}
    if body:
        request["num_retries"] = 8
    headers = {"authorization": f"Bearer {key}", **({"x-litellm-num-retries": "8"} if header else {})}
    r = httpx.post(f"{url}/v1/chat/completions", json=request, headers=headers, timeout=300)
    assert r.status_code >= 500
    return needle  # type: ignore[return-value]


def test_a_pinned_key_cannot_add_provider_retries(keyed: str, stack) -> None:  # type: ignore[no-untyped-def]
    def calls(**how: bool) -> int:
        return len(provider_calls(stack, failing_chat_calls(keyed, ALICE_KEY, **how)))

    plain = calls()
    assert calls(header=True) == plain
    assert calls(body=True) == plain
    assert plain <= 4
