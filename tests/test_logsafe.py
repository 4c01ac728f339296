"""app/logsafe.py: no client text starts a new log line or hides in control characters."""

from __future__ import annotations

import logging

import pytest

from app import logsafe
from tests.inprocess import chat_body, running

pytestmark = pytest.mark.timeout(30)
FORGED = "m\n2099-01-01 00:00:00 INFO memory_proxy.access: DELETE /v1/memories scope=bob\r\x1b[2K\u2028x"


def test_escaped_writes_every_control_character_as_an_escape() -> None:
    out = logsafe.escaped(FORGED + "\\n")
    assert "\n" not in out and "\r" not in out and "\x1b" not in out and "\u2028" not in out
    assert "\\n2099" in out and "\\x1b" in out and out.endswith("\\\\n")


def test_a_record_with_client_fields_and_a_traceback_formats_to_one_line(caplog: pytest.LogCaptureFixture) -> None:
    log = logsafe.logger("memory_proxy.test")
    with caplog.at_level(logging.INFO, "memory_proxy.test"):
        log.info("scope %s model=%s", "al\nice", FORGED)
        try:
            raise ValueError(FORGED)
        except ValueError:
            log.exception("failed %s", "x")
    lines = logging.Formatter("%(message)s").format(caplog.records[0]).splitlines()
    assert lines == ["scope al\\nice model=" + logsafe.escaped(FORGED)]
    text = logging.Formatter("%(message)s").format(caplog.records[1])
    assert len(text.splitlines()) == 2 and "ValueError" in text  # the message, then the traceback on one line


async def test_the_access_log_line_escapes_a_forged_model_name(tmp_path, caplog: pytest.LogCaptureFixture) -> None:
    async with running(tmp_path) as p:
        with caplog.at_level(logging.INFO, "memory_proxy.access"):
            await p.client.post("/v1/chat/completions", json={**chat_body("hello"), "model": FORGED})
    access = [r for r in caplog.records if r.name == "memory_proxy.access"]
    assert access
    for record in access:
        assert len(logging.Formatter("%(message)s").format(record).splitlines()) == 1
