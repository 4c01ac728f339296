"""End-to-end: the real LiteLLM binary and memory proxy, driven by the official SDKs."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys

import anthropic
import httpx
import openai
import pytest

from app.bodies import FORM
from tests.e2e import anth, marker, oai, provider_calls
from tests.inprocess import raw_request
from tests.stack import ROOT, stack_config, start_keyed_memory, start_memory

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(900)]


def test_openai_chat_non_streaming(stack):
    m = marker()
    raw = oai(stack.memory_url).chat.completions.with_raw_response.create(
        model="fake-model", messages=[{"role": "user", "content": f"hello {m}"}]
    )
    reply = raw.parse()
    assert reply.choices[0].message.content == f"Fake reply to: hello {m}"
    assert raw.headers["x-memory-user-id"] == "openai-sdk"  # the OpenAI Python SDK's User-Agent pattern
    assert raw.headers["x-memory-injected"] == "0"
    assert len(provider_calls(stack, m)) == 1


def test_openai_chat_streaming_is_one_provider_call(stack):
    m = marker()
    chunks = oai(stack.memory_url).chat.completions.create(
        model="fake-model", messages=[{"role": "user", "content": f"stream please {m}"}], stream=True
    )
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == f"Fake reply to: stream please {m}"
    assert len(provider_calls(stack, m)) == 1


def test_the_stack_log_says_where_to_point_clients(stack):
    honcho_log = stack.procs[-1].log.read_text(errors="replace")
    assert f"point clients at {stack.memory_url} (OpenAI SDKs: {stack.memory_url}/v1)" in honcho_log


def test_models_are_listed(stack):
    ids = {model.id for model in oai(stack.memory_url).models.list()}
    assert {"demo", "fake-model", "claude-fake"} <= ids


def test_demo_model_answers_without_provider_key(stack):
    r = httpx.post(
        f"{stack.memory_url}/v1/chat/completions",
        json={"model": "demo", "messages": [{"role": "user", "content": "hi"}]},
        timeout=30,
    )
    assert r.status_code == 200, r.text
    assert "demo model" in r.json()["choices"][0]["message"]["content"]


def test_anthropic_messages_non_streaming(stack):
    m = marker()
    raw = anth(stack.memory_url).messages.with_raw_response.create(
        model="claude-fake", max_tokens=50, messages=[{"role": "user", "content": f"hi claude {m}"}]
    )
    msg = raw.parse()
    assert msg.content[0].text == f"Fake reply to: hi claude {m}"
    assert raw.headers["x-memory-user-id"] == "anthropic-sdk"
    assert len(provider_calls(stack, m)) == 1


def test_async_sdk_clients_get_the_sync_clients_scopes(stack):
    """AsyncOpenAI and AsyncAnthropic announce themselves in their own User-Agent; the shipped patterns match both."""
    m = marker()

    async def ask() -> tuple[str, str]:
        async with openai.AsyncOpenAI(base_url=f"{stack.memory_url}/v1", api_key="anything", max_retries=0) as oa:
            chat = await oa.chat.completions.with_raw_response.create(
                model="fake-model", messages=[{"role": "user", "content": f"async openai {m}"}]
            )
        async with anthropic.AsyncAnthropic(base_url=stack.memory_url, api_key="anything", max_retries=0) as an:
            message = await an.messages.with_raw_response.create(
                model="claude-fake", max_tokens=50, messages=[{"role": "user", "content": f"async claude {m}"}]
            )
        assert chat.http_request.headers["user-agent"].startswith("AsyncOpenAI/Python")
        assert message.http_request.headers["user-agent"].startswith("AsyncAnthropic/Python")
        return chat.headers["x-memory-user-id"], message.headers["x-memory-user-id"]

    assert asyncio.run(ask()) == ("openai-sdk", "anthropic-sdk")


def test_anthropic_messages_streaming(stack):
    m = marker()
    with anth(stack.memory_url).messages.stream(
        model="claude-fake", max_tokens=50, messages=[{"role": "user", "content": f"stream claude {m}"}]
    ) as s:
        text = "".join(s.text_stream)
    assert text == f"Fake reply to: stream claude {m}"
    assert len(provider_calls(stack, m)) == 1


def test_routing_info_for_pycharm(stack):
    r = httpx.get(f"{stack.memory_url}/memory-routing/info", headers={"User-Agent": "OpenAIClientImpl/Java unknown"})
    assert r.json() == {
        "user_id": "pycharm-ai",
        "matched_pattern": "user-agent: ^OpenAIClientImpl/Java",
        "custom_header_present": False,
        "is_default": False,
        "projects_mode": "shared",
        "owner": None,  # no project: owner, project, directory and their signal are null
        "project": None,
        "directory": None,
        "project_signal": None,
        "mode": "on",  # the scope's stored memory mode
    }
    r = httpx.get(f"{stack.memory_url}/memory-routing/info", headers={"x-memory-user-id": "proj-a", "User-Agent": "x"})
    assert r.json()["user_id"] == "proj-a" and r.json()["custom_header_present"] is True


def test_invalid_scope_header_is_400_in_dialect(stack):
    with pytest.raises(openai.BadRequestError) as err:
        oai(stack.memory_url, **{"x-memory-user-id": "bad scope!"}).chat.completions.create(
            model="fake-model", messages=[{"role": "user", "content": "x"}]
        )
    assert "invalid scope" in err.value.body["message"]
    with pytest.raises(anthropic.BadRequestError) as aerr:
        anth(stack.memory_url, **{"x-memory-user-id": "x" * 129}).messages.create(
            model="claude-fake", max_tokens=5, messages=[{"role": "user", "content": "x"}]
        )
    assert aerr.value.body["type"] == "error"


def test_supermemory_headers_reach_the_provider(stack):
    m = marker()
    oai(stack.memory_url, **{"x-memory-user-id": "sm-scope"}).chat.completions.create(
        model="sm-model", messages=[{"role": "user", "content": f"supermemory {m}"}]
    )
    (call,) = provider_calls(stack, m)
    headers = {k.lower(): v for k, v in call["headers"].items()}
    assert call["path"].startswith("/supermemory.ai/")
    assert headers["x-sm-user-id"] == "sm-scope"
    assert "x-memory-user-id" not in headers  # the scope reaches Supermemory only where it is meant to
    assert headers["x-supermemory-api-key"] == stack.env["SUPERMEMORY_API_KEY"]


def test_beta_suffix_and_dated_model_names(stack):
    m = marker()
    anth(stack.memory_url).messages.create(
        model="claude-dated-20250514,beta-one,beta-two",
        max_tokens=5,
        messages=[{"role": "user", "content": f"betas {m}"}],
    )
    (call,) = provider_calls(stack, m)
    headers = {k.lower(): v for k, v in call["headers"].items()}
    assert call["body"]["model"] == "claude-dated"
    assert "beta-one" in headers["anthropic-beta"] and "beta-two" in headers["anthropic-beta"]


@pytest.fixture(scope="module")
def keyed_proxy(stack, tmp_path_factory):
    proc, url = start_keyed_memory(
        stack, tmp_path_factory.mktemp("keyed"), "keyed", "pycharm-secret-key-1", "admin-secret-key-1"
    )
    yield url
    proc.stop()


def test_keys_required_when_configured(keyed_proxy):
    with pytest.raises(openai.AuthenticationError) as err:
        oai(keyed_proxy, key="wrong").chat.completions.create(
            model="fake-model", messages=[{"role": "user", "content": "x"}]
        )
    assert err.value.status_code == 401
    with pytest.raises(anthropic.AuthenticationError) as aerr:
        anth(keyed_proxy, key="wrong").messages.create(
            model="claude-fake", max_tokens=5, messages=[{"role": "user", "content": "x"}]
        )
    assert aerr.value.body["error"]["type"] == "authentication_error"
    assert httpx.get(f"{keyed_proxy}/v1/models").status_code == 401


def test_pinned_key_works_and_cannot_be_steered(keyed_proxy, stack):
    m = marker()
    steered = httpx.post(
        f"{keyed_proxy}/v1/chat/completions",
        headers={"Authorization": "Bearer pycharm-secret-key-1", "x-memory-user-id": "someone-else"},
        json={"model": "fake-model", "messages": [{"role": "user", "content": f"steered {m}"}]},
        timeout=30,
    )
    assert steered.status_code == 403 and steered.json()["error"]["message"]  # another person's scope
    assert not provider_calls(stack, f"steered {m}")
    raw = oai(keyed_proxy, key="pycharm-secret-key-1", **{"x-memory-user-id": "pycharm-ai:alpha-3f2a9c"})
    own = raw.chat.completions.with_raw_response.create(
        model="fake-model", messages=[{"role": "user", "content": f"own project {m}"}]
    )
    assert own.headers["x-memory-user-id"] == "pycharm-ai:alpha-3f2a9c"  # its own project scope
    raw = oai(keyed_proxy, key="pycharm-secret-key-1")
    resp = raw.chat.completions.with_raw_response.create(
        model="fake-model", messages=[{"role": "user", "content": f"pinned {m}"}]
    )
    assert resp.headers["x-memory-user-id"] == "pycharm-ai"
    (call,) = provider_calls(stack, f"pinned {m}")
    assert "pycharm-secret-key-1" not in str(call["headers"])  # the client's key never goes upstream
    # Anthropic clients authenticate with x-api-key.
    msg = anth(keyed_proxy, key="pycharm-secret-key-1").messages.create(
        model="claude-fake", max_tokens=5, messages=[{"role": "user", "content": "hi"}]
    )
    assert msg.content[0].text.startswith("Fake reply")


def test_litellm_internals_reach_the_admin_key_only(keyed_proxy):
    body = {"model": "fake-model", "messages": [{"role": "user", "content": "hygiene"}]}
    pinned = httpx.post(
        f"{keyed_proxy}/v1/chat/completions", json=body, headers={"authorization": "Bearer pycharm-secret-key-1"}
    )
    admin = httpx.post(
        f"{keyed_proxy}/v1/chat/completions", json=body, headers={"authorization": "Bearer admin-secret-key-1"}
    )
    assert pinned.status_code == admin.status_code == 200
    assert "x-litellm-model-api-base" in admin.headers  # the real LiteLLM sends it
    assert not [
        h for h in pinned.headers if h in ("x-litellm-model-api-base", "x-litellm-key-spend", "x-litellm-version")
    ]
    assert set(httpx.get(f"{keyed_proxy}/health").json()) == {"status"}


def test_traversal_with_a_pinned_key_never_reaches_litellm_admin_routes(keyed_proxy):
    port = int(keyed_proxy.rsplit(":", 1)[1])
    auth = {"authorization": "Bearer pycharm-secret-key-1"}
    for target in (b"/v1/models/../../model/info", b"/v1/models/%2e%2e/%2e%2e/model/info", b"/models/../routes"):
        status, _, _ = asyncio.run(raw_request(port, "GET", target, auth))
        assert status == 400, target


def test_litellm_down_is_502(stack, tmp_path_factory):
    from tests.stack import free_port

    closed = free_port()
    config = stack_config(int(stack.provider_url.rsplit(":", 1)[1]))
    proc, url = start_memory(tmp_path_factory.mktemp("down"), "down", config, closed)
    try:
        with pytest.raises(openai.APIStatusError) as err:
            oai(url).chat.completions.create(model="fake-model", messages=[{"role": "user", "content": "x"}])
        assert err.value.status_code == 502
        assert err.value.body["type"] == "api_error"
        health = httpx.get(f"{url}/health").json()
        assert health["status"] == "degraded" and health["litellm"]["status"] == "unreachable"
        assert httpx.get(f"{url}/health/readiness").status_code == 503
    finally:
        proc.stop()


def test_health_reports_both_sides(stack):
    body = httpx.get(f"{stack.memory_url}/health").json()
    assert body["status"] == "healthy"
    assert body["litellm"]["status"] == "reachable"
    assert body["memory_store"]["status"] == "ok"


def test_app_never_imports_litellm():
    code = (
        "import sys, pkgutil, importlib, app\n"
        "for m in pkgutil.iter_modules(app.__path__):\n"
        "    if m.name != '__main__': importlib.import_module('app.' + m.name)\n"
        "assert 'litellm' not in sys.modules, 'app imported litellm'\n"
    )
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True)
    requirements = (ROOT / "requirements.txt").read_text().lower()
    assert not any(line.strip().startswith("litellm") for line in requirements.splitlines())
    procfile = (ROOT / "Procfile").read_text()
    assert [line.split(":")[0] for line in procfile.splitlines() if line.strip()] == ["litellm", "memory"]
    assert procfile.startswith("litellm: bin/litellm-proxy ")
    assert "litellm[proxy]==$LITELLM_VERSION" in (ROOT / "bin" / "litellm-proxy").read_text()


def test_client_cannot_steer_provider_routing(stack):
    """api_base/api_key in a body would make LiteLLM call another host (CVE-2024-6587)."""
    from tests.stack import free_port

    trap = f"http://127.0.0.1:{free_port()}/v1"  # closed: reaching it would fail the request
    m = marker()
    client = oai(stack.memory_url)
    reply = client.chat.completions.create(
        model="fake-model",
        messages=[{"role": "user", "content": f"route me {m}"}],
        extra_body={"api_base": trap, "api_key": "stolen", "metadata": {"base_url": trap}},
    )
    assert reply.choices[0].message.content == f"Fake reply to: route me {m}"
    (call,) = provider_calls(stack, m)
    assert "stolen" not in str(call) and trap not in str(call)
    emb = client.embeddings.create(model="fake-embed", input=f"embed {m}", extra_body={"api_base": trap})
    assert len(emb.data) == 1
    (ecall,) = provider_calls(stack, f"embed {m}")
    assert trap not in str(ecall)


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/v1/chat/completions", {"model": "fake-model", "messages": [{"role": "user", "content": "curl -d {m}"}]}),
        (
            "/v1/messages",
            {"model": "claude-fake", "max_tokens": 50, "messages": [{"role": "user", "content": "curl -d {m}"}]},
        ),
        ("/v1/responses", {"model": "fake-model", "input": "curl -d {m}"}),
    ],
)
def test_a_json_chat_sent_the_way_curl_d_sends_it_works(stack, path, body):
    """No `-H content-type`: curl labels the JSON a form, which LiteLLM would read as form fields."""
    m = marker()
    sent = json.dumps(body).replace("{m}", m)
    r = httpx.post(f"{stack.memory_url}{path}", content=sent, headers={"content-type": FORM}, timeout=30)
    assert r.status_code == 200, r.text
    assert f"Fake reply to: curl -d {m}" in r.text
    assert len(provider_calls(stack, m)) == 1


def test_a_pass_through_json_body_is_read_as_json_whatever_its_label(stack):
    """LiteLLM parses every body but a form's as JSON, so routing fields go whatever the label says."""
    from tests.stack import free_port

    trap = f"http://127.0.0.1:{free_port()}/v1"
    for label in (FORM, "text/plain", None):
        m = marker()
        sent = json.dumps({"model": "fake-embed", "input": f"embed {m}", "api_base": trap})
        headers = {"content-type": label} if label else {}
        r = httpx.post(f"{stack.memory_url}/v1/embeddings", content=sent, headers=headers, timeout=30)
        assert r.status_code == 200, (label, r.text)
        assert len(r.json()["data"]) == 1
        (call,) = provider_calls(stack, f"embed {m}")
        assert trap not in str(call)
