"""End-to-end: a second copy of the stack on taken ports, and a bad MEMORY_PORT, through `honcho start`."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.stack import ROOT, base_env, free_port, stack_config, start_memory, write_env_file

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]


def honcho_memory(env_file: Path, workdir: Path) -> subprocess.CompletedProcess[str]:
    """Run the Procfile's memory: line through honcho until it exits."""
    return subprocess.run(
        ["honcho", "start", "-e", str(env_file), "memory"],
        cwd=ROOT,
        env=base_env(workdir),
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_a_second_memory_proxy_on_a_taken_port_explains_and_never_says_ready(tmp_path: Path) -> None:
    config = stack_config(free_port())
    first, url = start_memory(tmp_path, "first", config, free_port())
    try:
        env_file = tmp_path / "first.env"  # the same settings, as a second `honcho start` reads them
        done = honcho_memory(env_file, tmp_path)
    finally:
        first.stop()
    port = url.rsplit(":", 1)[1]
    assert f"cannot listen on 127.0.0.1:{port} (MEMORY_PORT={port})" in done.stdout
    assert "a Memory Proxy already listens there" in done.stdout
    assert "point clients at" not in done.stdout  # the "ready" line
    assert "point clients at" in first.log.read_text()  # the first one did say it


def test_a_memory_port_that_is_not_a_number_names_the_variable_and_env(tmp_path: Path) -> None:
    config_path = tmp_path / "config.yaml"
    config_path.write_text((ROOT / "config.yaml").read_text())
    env_file = write_env_file(
        tmp_path / "bad.env",
        {"MEMORY_PORT": "abc", "MEMORY_CONFIG": str(config_path), "MEMORY_DB": str(tmp_path / "m.db")},
    )
    done = honcho_memory(env_file, tmp_path)
    assert "MEMORY_PORT='abc' is not a port number (1-65535): set it in .env or the environment" in done.stdout
    assert "Invalid value" not in done.stdout and "point clients at" not in done.stdout
