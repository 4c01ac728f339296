"""Key guessing is slowed: per client address and key prefix, in the caller's dialect, with the right key
still working from other clients; loopback without keys is never limited."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import httpx
import pytest

from app.config import ApiKey
from app.guessing import (
    FIRST_WAIT,
    FREE_FAILURES,
    MAX_RECORDS,
    MAX_WAIT,
    PREFIX_FREE_FAILURES,
    Guesses,
    address_key,
)
from tests.inprocess import Running, make_settings, running

pytestmark = pytest.mark.timeout(60)
ADMIN = "admin-key-guess-4b1d"
PINNED = "alice-key-guess-77e0"


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_waits_double_past_the_free_failures_and_end() -> None:
    clock = Clock()
    g = Guesses(clock)
    waits = []
    for _ in range(FREE_FAILURES + 40):
        waits.append(g.wait("10.0.0.1", "wrong-key"))
        if not waits[-1]:
            g.failed("10.0.0.1", "wrong-key")
        clock.now += waits[-1]  # a patient guesser waits out each refusal
    assert waits[:FREE_FAILURES] == [0.0] * FREE_FAILURES and waits[FREE_FAILURES] == FIRST_WAIT
    refused = [w for w in waits if w]
    assert refused[0] == FIRST_WAIT and refused[1] == 2 * FIRST_WAIT and max(refused) == MAX_WAIT
    clock.now += 1000  # forgotten after its last failure
    assert g.wait("10.0.0.1", "wrong-key") == 0.0


def test_a_blocked_prefix_stops_only_clients_that_failed() -> None:
    g = Guesses(Clock())
    for n in range(PREFIX_FREE_FAILURES):
        g.failed(f"10.0.1.{n}", "admin-guess-" + str(n))  # one failure each, from many addresses
    assert g.wait("10.0.1.1", "admin-right") > 0  # failed before, guessing around the same start
    assert g.wait("10.0.9.9", "admin-right") == 0.0  # a clean client's key is checked


def test_the_tables_are_bounded_and_ipv6_counts_per_64() -> None:
    g = Guesses(Clock())
    for n in range(MAX_RECORDS + 500):
        g.failed(f"10.{n // 65536}.{n // 256 % 256}.{n % 256}", f"k{n:08d}")
    assert len(g.addresses.records) == MAX_RECORDS and len(g.prefixes.records) <= MAX_RECORDS
    assert address_key("2001:db8::1") == address_key("2001:db8::ffff:1") == "2001:db8::/64"
    assert address_key("::ffff:10.0.0.1") == "10.0.0.1"


def keyed(tmp_path: Path):  # type: ignore[no-untyped-def]
    return dataclasses.replace(make_settings(tmp_path), keys=(ApiKey(ADMIN, None, True), ApiKey(PINNED, "alice")))


def from_address(p: Running, address: str) -> httpx.AsyncClient:
    """A client whose connections come from another loopback address (all of 127/8 is loopback)."""
    transport = httpx.AsyncHTTPTransport(local_address=address)
    return httpx.AsyncClient(base_url=p.url, transport=transport, timeout=15)


@pytest.mark.parametrize("anthropic", [False, True])
async def test_wrong_api_keys_get_429_then_and_the_right_key_works_elsewhere(tmp_path: Path, anthropic: bool) -> None:
    async with running(tmp_path, settings=keyed(tmp_path)) as p, from_address(p, "127.0.0.2") as guesser:
        path = "/v1/messages/count_tokens" if anthropic else "/v1/memories"
        statuses = []
        for n in range(FREE_FAILURES + 3):
            header = {"x-api-key": f"guess-{n}"} if anthropic else {"authorization": f"Bearer guess-{n}"}
            r = await guesser.request("POST" if anthropic else "GET", path, headers=header)
            statuses.append(r.status_code)
        assert statuses == [401] * FREE_FAILURES + [429] * 3
        assert int(r.headers["retry-after"]) >= 1
        assert (r.json()["type"] == "error") if anthropic else (r.json()["error"]["type"] == "rate_limit_error")
        # The guesser's address waits whatever it sends, the right key included ...
        right = await guesser.get("/v1/memories", headers={"authorization": f"Bearer {PINNED}"})
        assert right.status_code == 429
        # ... while the right key keeps working from every other client.
        ok = await p.client.get("/v1/memories", headers={"authorization": f"Bearer {PINNED}"})
        assert ok.status_code == 200
        metrics = (await p.client.get("/metrics", headers={"authorization": f"Bearer {ADMIN}"})).text
        assert f"memory_proxy_auth_failures_total {FREE_FAILURES}.0" in metrics
        assert "memory_proxy_auth_refused_total 4.0" in metrics
        assert "memory_proxy_auth_limiter_records" in metrics


async def test_guesses_from_many_clients_around_one_prefix_slow_the_clients_that_failed(tmp_path: Path) -> None:
    async with running(tmp_path, settings=keyed(tmp_path)) as p:
        for n in range(PREFIX_FREE_FAILURES):
            async with from_address(p, f"127.0.1.{n + 1}") as c:
                r = await c.get("/v1/memories", headers={"authorization": f"Bearer {ADMIN[:8]}{n}"})
                assert r.status_code == 401
        async with from_address(p, "127.0.1.1") as again:
            assert (await again.get("/v1/memories", headers={"authorization": f"Bearer {ADMIN}x"})).status_code == 429
        async with from_address(p, "127.0.2.1") as clean:
            assert (await clean.get("/v1/memories", headers={"authorization": f"Bearer {ADMIN}"})).status_code == 200


async def test_dashboard_log_ins_are_limited_too(tmp_path: Path) -> None:
    async with running(tmp_path, settings=keyed(tmp_path)) as p, from_address(p, "127.0.0.3") as guesser:
        statuses = [
            (await guesser.post("/dashboard/login", data={"key": f"wrong-{n}"})).status_code
            for n in range(FREE_FAILURES + 2)
        ]
        assert statuses == [401] * FREE_FAILURES + [429] * 2
        assert (await guesser.post("/dashboard/login", data={"key": ADMIN})).status_code == 429
        ok = await p.client.post("/dashboard/login", data={"key": ADMIN})
        assert ok.status_code == 303 and ok.headers["location"] == "/dashboard"


async def test_loopback_without_keys_is_never_limited(tmp_path: Path) -> None:
    async with running(tmp_path) as p:
        for n in range(FREE_FAILURES * 4):
            r = await p.client.get("/v1/memories", headers={"authorization": f"Bearer anything-{n}"})
            assert r.status_code == 200
        assert p.ctx.guesses.failures == 0
