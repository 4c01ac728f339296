"""app/cli.py: `python -m app memories ...` on MEMORY_DB directly, no server."""

from __future__ import annotations

import asyncio
import io
import os
import random
import subprocess
import sys
from pathlib import Path
from typing import Any

import orjson
import pytest

from app.cli import main
from app.records import iso
from app.store import NewMemory
from app.store.sqlite import SqliteDb

RECALL_FIELDS = ("recall_count", "last_recalled_at")  # the recall log's fields on every memory

ROOT = Path(__file__).resolve().parent.parent
SCOPED = ["list", "search", "get", "add", "delete", "forget", "export"]


class Run:
    """The outcome of one in-process CLI call."""

    def __init__(self, code: int, out: str, err: str) -> None:
        self.code, self.out, self.err = code, out, err

    def json(self) -> Any:
        """stdout as one JSON document."""
        return orjson.loads(self.out)

    def lines(self) -> list[dict[str, Any]]:
        """stdout as JSON Lines."""
        return [orjson.loads(line) for line in self.out.splitlines()]


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "data" / "memory.db"


@pytest.fixture
def cli(capsys: pytest.CaptureFixture[str], db: Path):  # type: ignore[no-untyped-def]
    """Run `memories ARGS --db <tmp db>` in-process."""

    def run(*args: str, database: Path | None = None) -> Run:
        code = main(["memories", *args, "--db", str(database or db)])
        out, err = capsys.readouterr()
        return Run(code, out, err)

    return run


def seed(db: Path, *items: tuple[str, str], role: str = "user", at: float = 1_700_000_000.0) -> list[str]:
    """Store (scope, content) pairs one second apart; return their ids."""
    store = SqliteDb(str(db))
    try:
        added = store.add_many([NewMemory(u, role, c, created_at=at + i) for i, (u, c) in enumerate(items)])
    finally:
        store.close()
    return [m.id for m in added]


def count(db: Path) -> dict[str, int]:
    """Memories per scope."""
    store = SqliteDb(str(db))
    try:
        return store.stats()["scopes"]
    finally:
        store.close()


def assert_one_error_line(err: str) -> None:
    assert "Traceback" not in err
    assert len(err.strip().splitlines()) == 1, err
    assert err.startswith("error: ")


# --- add / list ----------------------------------------------------------------------------------------------


def test_add_json_is_the_api_memory_shape(cli, db: Path) -> None:
    r = cli(
        "add", "  Prefers tabs over spaces  ", "--user", "alice", "--role", "user", "--metadata", '{"k": [1]}', "--json"
    )
    assert r.code == 0, r.err
    m = r.json()
    assert set(m) == {"id", "user_id", "role", "content", "created_at", "model", "metadata", *RECALL_FIELDS}
    assert (m["user_id"], m["role"], m["content"], m["metadata"]) == (
        "alice",
        "user",
        "Prefers tabs over spaces",
        {"k": [1]},
    )
    assert m["id"].startswith("mem_") and m["created_at"].endswith("Z")


def test_add_defaults_to_note_and_reports_duplicates(cli) -> None:
    first = cli("add", "the build uses uv", "--user", "alice")
    assert first.code == 0 and first.out.startswith("added mem_")
    again = cli("add", "the build uses uv", "--user", "alice")
    assert again.code == 0 and again.out == f"already stored as {first.out.split()[1]}\n"
    assert cli("list", "--user", "alice", "--json").json()["data"][0]["role"] == "note"


def test_list_json_newest_first_with_cursor_pages(cli, db: Path) -> None:
    ids = seed(db, *[("alice", f"memory number {i}") for i in range(5)])
    seen, cursor = [], None
    while True:
        args = ["list", "--user", "alice", "--limit", "2", "--json"] + (["--cursor", cursor] if cursor else [])
        page = cli(*args).json()
        assert set(page) == {"data", "next_cursor"}
        seen += [m["id"] for m in page["data"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == ids[::-1]


def test_list_table_is_readable(cli, db: Path) -> None:
    [mid] = seed(db, ("alice", "word " * 40))
    r = cli("list", "--user", "alice")
    header, row = r.out.splitlines()
    assert header.split() == ["ID", "DATE", "(UTC)", "ROLE", "CONTENT"]
    assert row.startswith(mid) and "2023-11-14 22:13" in row and " user " in row
    snippet = row.split(" user  ")[1]
    assert len(snippet) == 80 and snippet.endswith("…")
    assert cli("list", "--user", "bob").out == "no memories in scope 'bob'\n"


def test_list_table_shows_next_cursor(cli, db: Path) -> None:
    seed(db, ("alice", "one"), ("alice", "two"))
    assert "more: --cursor " in cli("list", "--user", "alice", "--limit", "1").out


# --- search / get / delete -----------------------------------------------------------------------------------


def test_search_json_and_table(cli, db: Path) -> None:
    seed(db, ("alice", "the deploy target is fly.io"), ("alice", "lunch was pasta"))
    r = cli("search", "where do we deploy", "--user", "alice", "--json")
    assert r.code == 0
    hits = r.json()["data"]
    assert hits[0]["content"] == "the deploy target is fly.io" and hits[0]["score"] > 0
    fields = {"id", "user_id", "role", "content", "created_at", "model", "metadata", "score", *RECALL_FIELDS}
    assert all(set(h) == fields for h in hits)
    table = cli("search", "deploy", "--user", "alice").out.splitlines()
    assert table[0].split()[:2] == ["SCORE", "ID"] and "fly.io" in table[1]
    assert cli("search", "nothing matches zzz", "--user", "alice").out == "no matches in scope 'alice'\n"
    assert cli("search", "  ", "--user", "alice").code == 2


def test_get_delete_and_missing_ids(cli, db: Path) -> None:
    [mid] = seed(db, ("alice", "keep me"))
    assert cli("get", mid, "--user", "alice", "--json").json()["content"] == "keep me"
    assert "content:    keep me" in cli("get", mid, "--user", "alice").out
    assert cli("delete", mid, "--user", "alice", "--json").json() == {"deleted": 1}
    for action in ("delete", "get"):
        r = cli(action, mid, "--user", "alice")
        assert r.code == 1 and r.out == ""
        assert_one_error_line(r.err)


# --- forget --------------------------------------------------------------------------------------------------


def test_forget_needs_yes(cli, db: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    seed(db, ("alice", "a"), ("alice", "b"), ("bob", "c"))
    monkeypatch.setattr(sys, "stdin", io.StringIO(""))  # not a terminal
    r = cli("forget", "--user", "alice")
    assert r.code == 2 and "--yes" in r.err
    assert count(db) == {"alice": 2, "bob": 1}
    r = cli("forget", "--user", "alice", "--yes")
    assert r.code == 0 and r.out == "deleted 2 memories of 'alice'\n"
    assert count(db) == {"bob": 1}
    assert cli("forget", "--user", "bob", "--yes", "--json").json() == {"deleted": 1}


class FakeTty(io.StringIO):
    """A stdin that claims to be a terminal."""

    def isatty(self) -> bool:
        return True


@pytest.mark.parametrize(("answer", "code", "left"), [("y\n", 0, {}), ("n\n", 2, {"alice": 1}), ("", 2, {"alice": 1})])
def test_forget_asks_on_a_terminal(cli, db, monkeypatch, answer: str, code: int, left: dict[str, int]) -> None:
    seed(db, ("alice", "a"))
    monkeypatch.setattr(sys, "stdin", FakeTty(answer))
    r = cli("forget", "--user", "alice")
    assert r.code == code and "[y/N]" in r.err
    assert count(db) == left


# --- export / import -----------------------------------------------------------------------------------------


def without_id(lines: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Memories without their ids (which import does not keep)."""
    return [{k: v for k, v in m.items() if k != "id"} for m in lines]


def test_export_import_round_trip(cli, db: Path, tmp_path: Path) -> None:
    rng = random.Random(7)
    store = SqliteDb(str(db))
    store.add_many(
        [
            NewMemory(
                "alice",
                rng.choice(["user", "assistant", "note", "system"]),
                f"memory {i} ünïcode ✓\nsecond line",
                created_at=rng.uniform(1.5e9, 1.9e9),  # arbitrary sub-millisecond times
                model=rng.choice([None, "gpt-x"]),
                metadata=rng.choice([{}, {"i": i, "nested": {"a": [1, "b"]}}]),
            )
            for i in range(300)
        ]
        + [NewMemory("bob", "user", "bob's memory")]
    )
    store.close()
    out = tmp_path / "alice.jsonl"
    assert cli("export", "--user", "alice", "--out", str(out)).out == f"exported 300 memories to {out}\n"
    exported = [orjson.loads(line) for line in out.read_bytes().splitlines()]
    assert exported == cli("export", "--user", "alice").lines()  # stdout and --out agree
    assert [m["created_at"] for m in exported] == sorted(m["created_at"] for m in exported)  # oldest first

    other = tmp_path / "other" / "memory.db"
    r = cli("import", str(out), "--json", database=other)
    assert r.code == 0 and r.json() == {"imported": 300, "skipped": 0}
    again = cli("export", "--user", "alice", database=other).lines()
    assert without_id(again) == without_id(exported)  # content, role, created_at, model, metadata
    assert count(other) == {"alice": 300}
    assert cli("import", str(out), database=other).out == "imported 0, skipped 300 (already stored)\n"


def test_import_scopes_and_created_at_forms(cli, db: Path, tmp_path: Path) -> None:
    src = tmp_path / "in.jsonl"
    src.write_text(
        "\n".join(
            [
                '{"content": "mine"}',
                '{"content": "carol\'s", "user_id": "carol", "role": "assistant", "created_at": 1700000000.25}',
                "",
                '{"content": "dated", "created_at": "2024-05-01T10:00:00.662Z", "metadata": {"src": "x"}}',
                '{"content": "naive", "created_at": "2024-05-01T10:00:00"}',
            ]
        )
        + "\n"
    )
    assert cli("import", str(src), "--user", "dave").out == "imported 4, skipped 0 (already stored)\n"
    assert count(db) == {"dave": 3, "carol": 1}
    dave = {m["content"]: m for m in cli("export", "--user", "dave").lines()}
    assert dave["dated"]["created_at"] == iso(1_714_557_600.662) and dave["dated"]["metadata"] == {"src": "x"}
    assert dave["naive"]["created_at"] == iso(1_714_557_600.0)
    assert dave["mine"]["role"] == "user"
    [carol] = cli("export", "--user", "carol").lines()
    assert (carol["role"], carol["created_at"]) == ("assistant", iso(1_700_000_000.25))


def test_import_in_batches(cli, db: Path, tmp_path: Path) -> None:
    src = tmp_path / "big.jsonl"
    src.write_text("".join(f'{{"content": "item {i}"}}\n' for i in range(1234)))
    assert cli("import", str(src), "--user", "bulk", "--json").json() == {"imported": 1234, "skipped": 0}
    assert count(db) == {"bulk": 1234}


@pytest.mark.parametrize(
    ("bad", "reason"),
    [
        ("{not json", "not valid JSON"),
        ("[1, 2]", "expected a JSON object"),
        ('{"content": ""}', "content must be a non-empty string"),
        ('{"content": "x", "role": "boss"}', "role must be one of"),
        ('{"content": "x", "user_id": "no spaces allowed"}', "invalid scope name"),
        ('{"content": "x", "user_id": 5}', "user_id must be a string"),
        ('{"content": "x", "metadata": [1]}', "metadata must be a JSON object"),
        ('{"content": "x", "created_at": "yesterday"}', "is not an ISO-8601 time"),
        ('{"content": "x", "created_at": true}', "created_at must be"),
    ],
)
def test_import_bad_line_writes_nothing(cli, db: Path, tmp_path: Path, bad: str, reason: str) -> None:
    seed(db, ("alice", "already here"))
    src = tmp_path / "in.jsonl"
    src.write_text('{"content": "good one"}\n\n' + bad + '\n{"content": "good two"}\n')
    r = cli("import", str(src), "--user", "alice")
    assert r.code == 2 and r.out == ""
    assert_one_error_line(r.err)
    assert r.err.startswith("error: line 3: ") and reason in r.err
    assert count(db) == {"alice": 1}


def test_import_needs_a_scope_and_a_readable_file(cli, db: Path, tmp_path: Path) -> None:
    src = tmp_path / "in.jsonl"
    src.write_text('{"content": "x", "user_id": "a"}\n{"content": "y"}\n')
    r = cli("import", str(src))
    assert r.code == 2 and "line 2: no user_id, and no --user given" in r.err
    assert not db.exists()  # validation happens before the database is even opened
    r = cli("import", str(tmp_path / "missing.jsonl"), "--user", "a")
    assert r.code == 2 and "cannot read" in r.err


# --- scopes, isolation, stats --------------------------------------------------------------------------------


@pytest.mark.parametrize("action", SCOPED)
def test_invalid_scope_is_a_usage_error(cli, db: Path, action: str) -> None:
    seed(db, ("alice", "x"))
    extra = {"search": ["q"], "get": ["mem_x"], "add": ["text"], "delete": ["mem_x"], "forget": ["--yes"]}
    r = cli(action, *extra.get(action, []), "--user", "bad scope!")
    assert r.code == 2 and "invalid scope name" in r.err
    assert_one_error_line(r.err)
    assert count(db) == {"alice": 1}


@pytest.mark.parametrize("action", SCOPED)
def test_user_is_required(cli, action: str) -> None:
    extra = {"search": ["q"], "get": ["mem_x"], "add": ["text"], "delete": ["mem_x"]}
    r = cli(action, *extra.get(action, []))
    assert r.code == 2 and "--user" in r.err
    assert_one_error_line(r.err)


def test_scope_isolation(cli, db: Path) -> None:
    alice_id, bob_id = seed(db, ("alice", "shared secret word zebra"), ("bob", "shared secret word zebra too"))
    for user, own, other in (("alice", alice_id, bob_id), ("bob", bob_id, alice_id)):
        assert [m["id"] for m in cli("list", "--user", user, "--json").json()["data"]] == [own]
        assert [m["id"] for m in cli("search", "zebra secret", "--user", user, "--json").json()["data"]] == [own]
        assert [m["id"] for m in cli("export", "--user", user).lines()] == [own]
        assert other not in cli("list", "--user", user).out
        assert cli("get", other, "--user", user).code == 1
        assert cli("delete", other, "--user", user).code == 1
    assert cli("forget", "--user", "alice", "--yes").out == "deleted 1 memories of 'alice'\n"
    assert count(db) == {"bob": 1}


def test_stats(cli, db: Path) -> None:
    seed(db, ("alice", "a"), ("alice", "b"), ("bob", "c"))
    stats = cli("stats", "--json").json()
    assert stats["scopes"] == {"alice": 2, "bob": 1} and stats["memories"] == 3
    assert stats["bytes"] > 0 and stats["path"] == str(db)
    text = cli("stats").out
    assert "memories: 3 in 2 scopes" in text and f"database: {db}" in text
    assert any(line.split() == ["alice", "-", "-", "-", "2"] for line in text.splitlines())


# --- usage and store errors ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "args",
    [
        ["list", "--user", "a", "--limit", "0"],
        ["list", "--user", "a", "--limit", "x"],
        ["list", "--user", "a", "--cursor", "garbage"],
        ["add", "x", "--user", "a", "--metadata", "{bad"],
        ["add", "x", "--user", "a", "--metadata", "[1]"],
        ["add", "x", "--user", "a", "--role", "boss"],
        ["add", "   ", "--user", "a"],
        ["frobnicate"],
        ["export", "--user", "a", "--out", "/nonexistent-dir/x.jsonl"],
    ],
)
def test_usage_errors_exit_2(cli, db: Path, args: list[str]) -> None:
    seed(db, ("a", "x"))
    r = cli(*args)
    assert r.code == 2, r.err
    assert_one_error_line(r.err)


def test_store_errors_exit_3(cli, tmp_path: Path) -> None:
    garbage = tmp_path / "garbage.db"
    garbage.write_bytes(b"this is not a sqlite database" * 100)
    for args, database in (
        (["list", "--user", "a"], garbage),
        (["add", "x", "--user", "a"], garbage),
        (["stats"], garbage),
        (["add", "x", "--user", "a"], tmp_path),  # a directory
        (["list", "--user", "a"], tmp_path / "missing.db"),  # reads never create a database
    ):
        r = cli(*args, database=database)
        assert r.code == 3, (args, r.err)
        assert_one_error_line(r.err)
    assert not (tmp_path / "missing.db").exists()


# --- as a real process: `python -m app`, MEMORY_DB from the environment -------------------------------------


def run_cli(*args: str, env_db: Path, stdin: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
    env = {**os.environ, "MEMORY_DB": str(env_db), "MEMORY_ENV_FILE": ""}
    env.pop("MEMORY_CONFIG", None)
    return subprocess.run(
        [sys.executable, "-m", "app", "memories", *args],
        cwd=ROOT,
        env=env,
        input=stdin,
        capture_output=True,
        timeout=30,
    )


def test_subprocess_uses_memory_db_and_stdin_import(tmp_path: Path) -> None:
    db = tmp_path / "env" / "memory.db"
    lines = b'{"content": "from stdin", "role": "assistant"}\n{"content": "and again", "user_id": "other"}\n'
    p = run_cli("import", "-", "--user", "alice", "--json", env_db=db, stdin=lines)
    assert p.returncode == 0, p.stderr
    assert orjson.loads(p.stdout) == {"imported": 2, "skipped": 0}
    assert count(db) == {"alice": 1, "other": 1}
    p = run_cli("list", "--user", "alice", "--json", env_db=db)
    assert [m["content"] for m in orjson.loads(p.stdout)["data"]] == ["from stdin"]


def test_subprocess_errors_are_one_line(tmp_path: Path) -> None:
    db = tmp_path / "memory.db"
    seed(db, ("alice", "x"))
    p = run_cli("import", "-", "--user", "alice", env_db=db, stdin=b'{"content": "ok"}\n{oops\n')
    assert p.returncode == 2 and p.stderr == b"error: line 2: not valid JSON\n" and p.stdout == b""
    p = run_cli("delete", "mem_missing", "--user", "alice", env_db=db)
    assert p.returncode == 1 and p.stderr.count(b"\n") == 1
    p = run_cli("forget", "--user", "alice", env_db=db, stdin=b"")
    assert p.returncode == 2 and b"--yes" in p.stderr
    assert count(db) == {"alice": 1}


def test_created_at_out_of_range_is_a_clear_error(cli, tmp_path: Path) -> None:
    src = tmp_path / "in.jsonl"
    src.write_text('{"content": "x", "user_id": "a", "created_at": 1e20}\n')
    r = cli("import", str(src))
    assert r.code == 2 and "out of range" in r.err


def test_every_command_works_on_a_postgresql_url(cli, pg_database: str, tmp_path: Path) -> None:
    from tests.backends import reset_schema

    asyncio.run(reset_schema(pg_database))
    url = pg_database.replace("postgresql://postgres@", "postgresql://postgres:cli-secret@")
    added = cli("add", "--user", "pg", "the kiwi deploy runs on fridays", "--json", database=url)
    assert added.code == 0, added.err
    memory_id = added.json()["id"]
    assert cli("add", "--user", "pg", "another note", database=url).code == 0
    found = cli("search", "--user", "pg", "kiwi", "--json", database=url).json()["data"]
    assert found[0]["id"] == memory_id  # (the next note matches too, by its context: the turn before it)
    assert cli("get", "--user", "pg", memory_id, "--json", database=url).json()["content"].startswith("the kiwi")
    backup = tmp_path / "pg.jsonl"
    assert cli("export", "--user", "pg", "--out", str(backup), database=url).code == 0
    stats = cli("stats", "--json", database=url)
    assert stats.json()["scopes"] == {"pg": 2} and "cli-secret" not in stats.out
    assert cli("forget", "--user", "pg", "--yes", "--json", database=url).json() == {"deleted": 2}
    assert cli("import", str(backup), "--json", database=url).json() == {"imported": 2, "skipped": 0}
    assert cli("delete", "--user", "pg", memory_id, database=url).code == 0
    assert cli("list", "--user", "pg", "--json", database=url).json()["data"][0]["content"] == "another note"


def test_an_unreachable_postgresql_url_is_one_line_without_the_password(cli) -> None:
    from tests.inprocess import closed_port

    r = cli("stats", database=f"postgresql://u:hunter2-pw@127.0.0.1:{closed_port()}/none")
    assert r.code == 3
    assert_one_error_line(r.err)
    assert "hunter2-pw" not in r.err


def test_the_cli_reads_the_project_settings_from_any_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import app.cli

    project = tmp_path / "project"
    project.mkdir()
    (project / "config.yaml").write_text("memory: {enabled: true}\n")
    (project / ".env").write_text("MEMORY_DB=./data/from-env.db\n")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.setattr(app.cli, "PROJECT_ROOT", project)
    monkeypatch.delenv("MEMORY_DB")
    monkeypatch.setenv("MEMORY_ENV_FILE", ".env")
    monkeypatch.chdir(elsewhere)
    assert main(["memories", "add", "--user", "alice", "from anywhere"]) == 0
    assert main(["memories", "list", "--user", "alice"]) == 0
    assert "from anywhere" in capsys.readouterr().out
    assert (project / "data" / "from-env.db").exists()
    assert not (elsewhere / "data").exists()
    assert Path.cwd() == elsewhere  # the caller's directory is left as it was


def test_move_a_scope_and_stats_show_owner_and_project(cli, db: Path) -> None:
    seed(db, ("claude-cli", "the port is 5433"), ("codex-cli", "other"))
    store = SqliteDb(str(db))
    try:
        store.note_project("local:alpha-3f2a9c", "/src/alpha")
    finally:
        store.close()
    assert cli("move", "--user", "claude-cli", "--to", "local:alpha-3f2a9c", "--json").json() == {
        "moved": 1,
        "already": 0,
    }
    assert count(db) == {"local:alpha-3f2a9c": 1, "codex-cli": 1}
    text = cli("stats").out
    rows = [line.split() for line in text.splitlines()]
    assert ["local:alpha-3f2a9c", "local", "alpha-3f2a9c", "/src/alpha", "1"] in rows
    assert ["codex-cli", "-", "-", "-", "1"] in rows
    refused = cli("move", "--user", "codex-cli", "--to", "bad name")
    assert refused.code == 2 and count(db)["codex-cli"] == 1
