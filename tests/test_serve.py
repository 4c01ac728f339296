"""app/serve.py: the port is checked and bound before uvicorn starts, and a clash says what holds it."""

from __future__ import annotations

import asyncio
import socket
from dataclasses import replace
from pathlib import Path

import pytest

from app.serve import PortTaken, bind, main, memory_proxy_at, port_taken_message
from tests.inprocess import running

pytestmark = pytest.mark.timeout(30)


def test_bind_gives_a_listening_socket_and_refuses_a_taken_port() -> None:
    first = bind("127.0.0.1", 0)
    port = first.getsockname()[1]
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=2):
            pass  # it listens
        with pytest.raises(PortTaken):
            bind("127.0.0.1", port)
    finally:
        first.close()


async def test_a_clash_with_a_memory_proxy_says_one_listens_there(tmp_path: Path) -> None:
    async with running(tmp_path) as p:
        assert await asyncio.to_thread(memory_proxy_at, "127.0.0.1", p.port)
        message = await asyncio.to_thread(port_taken_message, replace(p.settings, port=p.port))
    assert f"cannot listen on 127.0.0.1:{p.port} (MEMORY_PORT={p.port})" in message
    assert "a Memory Proxy already listens there" in message
    assert "set MEMORY_PORT" in message and ".env" in message


def test_a_clash_with_another_program_does_not_call_it_a_memory_proxy(tmp_path: Path) -> None:
    from tests.inprocess import make_settings

    with socket.socket() as other:
        other.bind(("127.0.0.1", 0))
        other.listen()
        port = other.getsockname()[1]
        message = port_taken_message(replace(make_settings(tmp_path), port=port))
    assert "another program listens there (not a Memory Proxy)" in message
    assert f"MEMORY_PORT={port}" in message


def test_a_bad_memory_port_is_refused_before_uvicorn_naming_the_variable_and_env(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("MEMORY_PORT", "abc")
    assert main() == 1
    err = capsys.readouterr().err
    assert "MEMORY_PORT='abc' is not a port number" in err and ".env" in err


def test_a_taken_port_stops_main_before_the_app_starts(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    with socket.socket() as other:
        other.bind(("127.0.0.1", 0))
        other.listen()
        monkeypatch.setenv("MEMORY_PORT", str(other.getsockname()[1]))
        monkeypatch.setenv("MEMORY_CONFIG", str(Path(__file__).resolve().parent.parent / "config.yaml"))
        assert main() == 1
    captured = capsys.readouterr()
    assert "the port is in use" in captured.err
    assert "point clients at" not in captured.out + captured.err
