"""The pinned agent CLIs from npm, installed on first use into `.clients/` (ignored, like `.litellm/`)."""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CLIENTS_DIR = ROOT / ".clients"


@dataclass(frozen=True)
class NpmClient:
    """One pinned npm package and how to start its CLI from an install prefix."""

    package: str
    version: str
    command: tuple[str, ...]  # relative to the prefix; a leading "node" runs node itself

    def prefix(self) -> Path:
        """Where this version is (or will be) installed."""
        return CLIENTS_DIR / f"{self.package.replace('/', '+')}@{self.version}"

    def argv(self) -> list[str]:
        """The command line that starts the CLI, installing the package first if needed."""
        prefix = self.prefix()
        entry = prefix / self.command[-1]
        if not entry.exists():
            install(self.package, self.version, prefix)
        head = [node()] if self.command[0] == "node" else []
        return [*head, str(entry)]


# Claude Code ships its native binary in a per-platform package; cli-wrapper.cjs finds and runs
# it without the postinstall step (npm 11 no longer runs install scripts unless approved).
CLAUDE_CODE = NpmClient(
    "@anthropic-ai/claude-code", "2.1.332", ("node", "node_modules/@anthropic-ai/claude-code/cli-wrapper.cjs")
)
CODEX = NpmClient("@openai/codex", "0.171.0", ("node_modules/.bin/codex",))
GEMINI_CLI = NpmClient("@google/gemini-cli", "0.61.0", ("node", "node_modules/@google/gemini-cli/bundle/gemini.js"))


def node() -> str:
    """The node binary."""
    found = shutil.which("node")
    if found is None:
        raise FileNotFoundError("node is not installed")
    return found


def missing_tools() -> list[str]:
    """Which of node and npm are not on PATH."""
    return [tool for tool in ("node", "npm") if shutil.which(tool) is None]


def install(package: str, version: str, prefix: Path) -> None:
    """npm install package@version into prefix (no audit, no funding notice, no update check)."""
    prefix.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        [
            "npm",
            "install",
            "--prefix",
            str(prefix),
            "--no-audit",
            "--no-fund",
            "--no-update-notifier",
            f"{package}@{version}",
        ],
        check=True,
        stdout=subprocess.DEVNULL,
        timeout=600,
    )
