"""supervisord.conf and bin/procfile-run: the programs are the Procfile's lines, run as honcho runs them."""

from __future__ import annotations

import configparser
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.stack import ROOT

pytestmark = pytest.mark.timeout(60)


def procfile_names() -> list[str]:
    return [line.split(":", 1)[0] for line in (ROOT / "Procfile").read_text().splitlines() if ":" in line]


def programs() -> dict[str, configparser.SectionProxy]:
    conf = configparser.RawConfigParser()
    conf.read(ROOT / "supervisord.conf")
    return {s.split(":", 1)[1]: conf[s] for s in conf.sections() if s.startswith("program:")}


def test_the_programs_are_the_procfile_lines_and_run_them_by_name() -> None:
    assert sorted(programs()) == sorted(procfile_names()) == ["litellm", "memory"]
    for program in programs().values():
        # the command line lives in the Procfile only: the program names its line
        assert program["command"] == "%(here)s/bin/procfile-run %(program_name)s"
        assert program["directory"] == "%(here)s"
        assert program.getboolean("autorestart")
        assert program.getboolean("stopasgroup") and program.getboolean("killasgroup")
        assert program["stdout_logfile"].startswith("%(here)s/logs/")
        assert int(program["stdout_logfile_backups"]) > 0


def test_supervisorctl_reaches_supervisord_through_a_socket_in_the_project() -> None:
    conf = configparser.RawConfigParser()
    conf.read(ROOT / "supervisord.conf")
    assert conf["unix_http_server"]["file"] == "%(here)s/logs/supervisor.sock"
    assert conf["supervisorctl"]["serverurl"] == "unix://%(here)s/logs/supervisor.sock"
    assert conf["supervisord"]["pidfile"].startswith("%(here)s/logs/")
    ignored = subprocess.run(["git", "check-ignore", "logs/memory.log"], cwd=ROOT, capture_output=True).returncode
    assert ignored == 0
    assert (
        "logs/.gitignore"
        in subprocess.run(["git", "ls-files", "logs"], cwd=ROOT, capture_output=True, text=True).stdout
    )


def launcher_in(tmp_path: Path, procfile: str, env_file: str) -> Path:
    """A project folder with bin/procfile-run, a Procfile and a .env."""
    (tmp_path / "bin").mkdir()
    shutil.copy2(ROOT / "bin" / "procfile-run", tmp_path / "bin" / "procfile-run")
    (tmp_path / "Procfile").write_text(procfile)
    (tmp_path / ".env").write_text(env_file)
    return tmp_path / "bin" / "procfile-run"


def test_procfile_run_runs_the_named_line_with_env_beneath_the_environment(tmp_path: Path) -> None:
    launcher = launcher_in(
        tmp_path,
        'other: echo wrong\nshow: echo "port=${MEMORY_PORT:-unset} only=${ONLY_IN_FILE} dir=$(pwd)"\n',
        "MEMORY_PORT=8774\nONLY_IN_FILE=from-file\n",
    )
    env = {k: v for k, v in os.environ.items() if k not in ("MEMORY_PORT", "MEMORY_ENV_FILE")}
    env["MEMORY_PORT"] = "8790"
    done = subprocess.run([sys.executable, str(launcher), "show"], cwd="/", env=env, capture_output=True, text=True)
    assert done.stdout.strip() == f"port=8790 only=from-file dir={tmp_path}"
    del env["MEMORY_PORT"]
    done = subprocess.run([sys.executable, str(launcher), "show"], cwd="/", env=env, capture_output=True, text=True)
    assert done.stdout.strip() == f"port=8774 only=from-file dir={tmp_path}"


def test_procfile_run_replaces_itself_with_the_process(tmp_path: Path) -> None:
    launcher = launcher_in(tmp_path, "me: echo $$\n", "")
    proc = subprocess.Popen([sys.executable, str(launcher), "me"], stdout=subprocess.PIPE, text=True)
    out, _ = proc.communicate(timeout=30)
    assert int(out) == proc.pid  # no shell or launcher left between supervisord and the program


def test_procfile_run_refuses_a_name_the_procfile_lacks(tmp_path: Path) -> None:
    launcher = launcher_in(tmp_path, "litellm: true\n", "")
    done = subprocess.run([sys.executable, str(launcher), "memroy"], capture_output=True, text=True)
    assert done.returncode != 0 and "has no 'memroy:' line" in done.stderr
