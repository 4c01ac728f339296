"""In-process tests of the slow-client deadlines: dribbled headers and bodies are cut off."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from tests.inprocess import running

pytestmark = pytest.mark.timeout(30)


async def dribble(port: int, pieces: list[bytes], gap: float) -> float:
    """Send `pieces` with `gap` seconds between them; the seconds until the server closed the connection."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    started = time.monotonic()
    try:
        for piece in pieces:
            writer.write(piece)
            await writer.drain()
            try:
                if await asyncio.wait_for(reader.read(65536), gap) == b"":
                    return time.monotonic() - started
            except TimeoutError:
                continue
        await asyncio.wait_for(reader.read(), 10)
        return time.monotonic() - started
    except ConnectionError:
        return time.monotonic() - started
    finally:
        writer.close()


async def test_a_client_dribbling_headers_is_closed(tmp_path: Path) -> None:
    async with running(tmp_path, header_timeout=1.0) as p:
        pieces = [b"GET /health HTTP/1.1\r\n"] + [f"x-pad-{i}: {i}\r\n".encode() for i in range(40)]
        closed_after = await dribble(p.port, pieces, 0.25)
        assert closed_after < 3.0  # 40 headers at 4/s would take 10 s
        assert (await p.client.get("/health")).status_code == 200  # the server itself is fine


async def test_a_silent_connection_is_closed(tmp_path: Path) -> None:
    async with running(tmp_path, header_timeout=1.0) as p:
        reader, writer = await asyncio.open_connection("127.0.0.1", p.port)
        started = time.monotonic()
        assert await asyncio.wait_for(reader.read(), 5) == b""
        assert time.monotonic() - started < 3.0
        writer.close()


async def test_a_client_dribbling_its_body_is_closed(tmp_path: Path) -> None:
    async with running(tmp_path, body_timeout=1.0) as p:
        head = (
            b"POST /v1/chat/completions HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: application/json\r\n"
            b"content-length: 1000\r\n\r\n"
        )
        closed_after = await dribble(p.port, [head] + [b" " * 10] * 40, 0.25)
        assert closed_after < 3.0


async def test_prompt_clients_are_not_affected(tmp_path: Path) -> None:
    async with running(tmp_path, header_timeout=0.5, body_timeout=0.5) as p:
        for _ in range(3):  # one kept-alive connection, several requests, pauses between them
            assert (await p.client.get("/health")).status_code == 200
            await asyncio.sleep(0.7)
