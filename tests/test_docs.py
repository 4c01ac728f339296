"""The reference under docs/ stays true: every setting, env var and route is documented, and the
repository never points outside itself."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from typing import Any

import pytest

from app import config
from app.main import routing_table

ROOT = Path(__file__).resolve().parent.parent
CONFIG_DOC = (ROOT / "docs" / "configuration.md").read_text()
API_DOC = (ROOT / "docs" / "http-api.md").read_text()

FULL_CONFIG = """
user_id_mappings:
  custom_header: x-memory-user-id
  header_patterns: [{header: user-agent, pattern: x, user_id: a}]
  default_user_id: default-dev
memory:
  enabled: true
  retrieval: {}
  capture: {enabled: true}
auth:
  keys: [{key: os.environ/K, user_id: a, admin: false}]
proxy: {}
"""


class RecordingEnv(dict):
    """An environment that remembers every name asked for."""

    asked: set[str]

    def get(self, key: str, default: Any = None) -> Any:
        self.asked.add(key)
        return super().get(key, default)


def read_settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[set[str], set[str]]:
    """(config key paths the parser reads, env vars it reads) for a config that uses every section."""
    path = tmp_path / "config.yaml"
    path.write_text(FULL_CONFIG)
    keys: set[str] = set()
    original = config._Doc.check_unknown

    def record(doc: config._Doc) -> None:
        for at in doc.read:
            if at and at[0] in config.OUR_SECTIONS:
                keys.add(".".join("[]" if isinstance(p, int) else str(p) for p in at).replace(".[]", "[]"))
        original(doc)

    monkeypatch.setattr(config._Doc, "check_unknown", record)
    env = RecordingEnv(MEMORY_CONFIG=str(path), K="value")
    env.asked = set()
    config.load_settings(env)
    return keys, env.asked


def test_every_config_key_is_documented(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    keys, _ = read_settings(tmp_path, monkeypatch)
    leaves = {k for k in keys if not any(other.startswith(k + ".") or other.startswith(k + "[]") for other in keys)}
    assert leaves, "the recorder saw nothing"
    missing = sorted(k for k in leaves if f"`{k}`" not in CONFIG_DOC)
    assert not missing, f"docs/configuration.md lacks {missing}"


def test_every_environment_variable_is_documented(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _, names = read_settings(tmp_path, monkeypatch)
    assert "MEMORY_DB" in names
    missing = sorted(n for n in names if n != "K" and f"`{n}`" not in CONFIG_DOC)
    assert not missing, f"docs/configuration.md lacks {missing}"


def test_every_route_is_documented() -> None:
    table = routing_table()
    for route in table.routes:
        shown = route.path.replace("{memory_id}", "{id}")
        assert shown in API_DOC, f"docs/http-api.md does not mention {route.path}"


def test_the_repository_points_nowhere_outside_itself() -> None:
    files = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout.split()
    # Spelled in pieces so that this file does not match its own rule.
    outside = re.compile("|".join(re.escape(a + b) for a, b in (("../", "shared"), ("SPEC", " §"), ("SPEC", ".md"))))
    offenders = [f for f in files if (ROOT / f).is_file() and outside.search((ROOT / f).read_text(errors="ignore"))]
    assert not offenders, offenders


def test_no_setting_is_listed_twice_in_the_configuration_tables() -> None:
    named = re.findall(r"^\| `([^`]+)` \|", CONFIG_DOC, flags=re.MULTILINE)
    assert len(named) > 40, "the tables' first column was not read"
    twice = sorted({name for name in named if named.count(name) > 1})
    assert not twice, f"docs/configuration.md lists {twice} more than once"
