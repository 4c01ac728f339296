"""Packaging: pyproject's ranges and the pinned requirements files describe the same dependencies."""

from __future__ import annotations

import json
import subprocess
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parent.parent


def pinned(name: str) -> dict[str, Requirement]:
    """The requirements a pinned file lists (`-r` includes and comments skipped), by normalised name."""
    out = {}
    for line in (ROOT / name).read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line and not line.startswith("-r"):
            req = Requirement(line)
            out[req.name.lower()] = req
    return out


def ranges(extra: str | None) -> dict[str, Requirement]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    listed = project["dependencies"] if extra is None else project["optional-dependencies"][extra]
    return {(r := Requirement(item)).name.lower(): r for item in listed}


@pytest.mark.parametrize(
    ("file", "extra"),
    [("requirements.txt", None), ("requirements-test.txt", "test"), ("bench/requirements.txt", "bench")],
)
def test_pins_and_ranges_name_the_same_packages_and_agree(file: str, extra: str | None) -> None:
    pins, declared = pinned(file), ranges(extra)
    assert set(pins) == set(declared), f"{file} and pyproject.toml ({extra or 'dependencies'}) differ"
    for name, pin in pins.items():
        (spec,) = pin.specifier  # exactly one ==
        assert spec.operator == "==", f"{file}: {name} is not pinned"
        assert declared[name].specifier.contains(spec.version), f"{name}=={spec.version} is outside {declared[name]}"
        assert pin.extras == declared[name].extras and pin.marker == declared[name].marker


def test_the_test_requirements_include_the_runtime() -> None:
    assert "-r requirements.txt" in (ROOT / "requirements-test.txt").read_text().splitlines()


def test_the_platform_procfile_runs_the_same_two_processes() -> None:
    def lines(name: str) -> dict[str, str]:
        return dict(line.split(": ", 1) for line in (ROOT / name).read_text().splitlines() if ": " in line)

    local, platform = lines("Procfile"), lines("Procfile.platform")
    assert set(local) == {"litellm", "memory"}
    assert {k: platform[k] for k in local} == local
    assert platform["web"] == "bin/web"


def test_the_benchmark_data_ships_with_its_licence() -> None:
    tracked = subprocess.run(["git", "ls-files", "bench/data"], cwd=ROOT, capture_output=True, text=True).stdout
    assert "bench/data/locomo-dev/locomo-dev.json" in tracked.split()
    assert "CC BY-NC 4.0" in (ROOT / "bench" / "data" / "locomo-dev" / "README.md").read_text()
    conversations = json.loads((ROOT / "bench" / "data" / "locomo-dev" / "locomo-dev.json").read_text())
    assert conversations and all("qa" in c and "conversation" in c for c in conversations)
