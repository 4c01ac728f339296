"""Operator command line: `python -m app memories ...` on MEMORY_DB (SQLite path or PostgreSQL URL), no server."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import os
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NoReturn, TextIO

import orjson

from app.projects import split_scope
from app.records import MAX_LIMIT, memory_json, parse_lines, parse_record
from app.redact_stored import redact_stored
from app.redaction import redact_memories
from app.store import InvalidCursor, Memory, MemoryStore, is_postgres_url, open_store
from app.store.moves import move_scope
from app.store.sqlite import sqlite3

EXIT_OK, EXIT_NOT_FOUND, EXIT_USAGE, EXIT_STORE = 0, 1, 2, 3
SNIPPET_CHARS = 80
NEEDS_EXISTING_DB = frozenset({"list", "search", "get", "delete", "forget", "export", "stats", "usage"})


class CliError(Exception):
    """An error reported as one stderr line with its exit code."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code


def _usage(message: str) -> CliError:
    """A usage/input error (exit 2)."""
    return CliError(EXIT_USAGE, message)


class _Parser(argparse.ArgumentParser):
    """argparse that reports a usage error as one line and never exits the interpreter itself."""

    def error(self, message: str) -> NoReturn:
        """Raise a usage CliError instead of printing the usage block."""
        raise _usage(f"{self.prog}: {message} (see --help)")

    def exit(self, status: int = 0, message: str | None = None) -> NoReturn:
        """Raise SystemExit for --help, after printing any message."""
        if message:
            sys.stderr.write(message)
        raise SystemExit(status)


def _limit(raw: str) -> int:
    """An argparse type: a whole number from 1 to MAX_LIMIT."""
    if not raw.isdigit() or not 1 <= int(raw) <= MAX_LIMIT:
        raise argparse.ArgumentTypeError(f"must be a whole number from 1 to {MAX_LIMIT}")
    return int(raw)


def build_parser() -> argparse.ArgumentParser:
    """The `python -m app` argument parser."""
    common = _Parser(add_help=False)
    common.add_argument(
        "--db", metavar="PATH|URL", help="SQLite file or postgresql:// URL (default: MEMORY_DB, else ./data/memory.db)"
    )
    common.add_argument("--json", action="store_true", help="machine-readable output")
    scoped = _Parser(add_help=False, parents=[common])
    scoped.add_argument("--user", metavar="SCOPE", required=True, help="the memory scope (user_id)")

    parser = _Parser(prog="python -m app", description="Memory Proxy operator tools.")
    groups = parser.add_subparsers(dest="group", required=True, metavar="{memories,usage}", parser_class=_Parser)
    memories = groups.add_parser("memories", help="inspect and manage stored memories")
    actions = memories.add_subparsers(dest="action", required=True, parser_class=_Parser)

    p = actions.add_parser("list", parents=[scoped], help="newest memories of a scope")
    p.add_argument("--limit", type=_limit, default=20)
    p.add_argument("--cursor", help="next_cursor of a previous page")

    p = actions.add_parser("search", parents=[scoped], help="full-text search within a scope")
    p.add_argument("query", metavar="QUERY")
    p.add_argument("--limit", type=_limit, default=10)

    p = actions.add_parser("get", parents=[scoped], help="show one memory")
    p.add_argument("id", metavar="ID")

    p = actions.add_parser("add", parents=[scoped], help="store a memory")
    p.add_argument("content", metavar="CONTENT")
    p.add_argument("--role", default="note", help="user, assistant, note or system (default: note)")
    p.add_argument("--metadata", metavar="JSON", help="a JSON object stored with the memory")

    p = actions.add_parser("delete", parents=[scoped], help="delete one memory")
    p.add_argument("id", metavar="ID")

    p = actions.add_parser("forget", parents=[scoped], help="delete every memory of a scope")
    p.add_argument("--yes", action="store_true", help="do not ask for confirmation")

    p = actions.add_parser("export", parents=[scoped], help="JSON Lines, oldest first")
    p.add_argument("--out", metavar="FILE", help="write to FILE instead of stdout")

    p = actions.add_parser("import", parents=[common], help="JSON Lines from FILE or - (stdin)")
    p.add_argument("file", metavar="FILE")
    p.add_argument("--user", metavar="SCOPE", help="scope for lines without a user_id")

    p = actions.add_parser("move", parents=[scoped], help="move every memory of --user into --to")
    p.add_argument("--to", metavar="SCOPE", required=True, help="the scope that receives them")

    actions.add_parser("stats", parents=[common], help="memories per scope (owner, project) and database size")

    p = actions.add_parser("redact", parents=[common], help="replace credentials already stored, in place")
    p.add_argument("--user", metavar="SCOPE", help="one scope (default: every scope)")

    from app.usage import GROUP_BYS

    p = groups.add_parser("usage", parents=[common], help="requests, tokens and memory flow (as GET /v1/usage)")
    p.add_argument("--user", metavar="SCOPE", help="one scope (default: every scope)")
    p.add_argument("--since", metavar="TIME", help="ISO-8601 date or time, or Unix seconds")
    p.add_argument("--until", metavar="TIME", help="ISO-8601 date or time, or Unix seconds (exclusive)")
    p.add_argument("--group-by", choices=GROUP_BYS, default="day", help="default: day")
    p.set_defaults(action="usage")
    return parser


# --- parsing memories (the HTTP API's rules, without its Request-bound scope resolution) ---------------------


def _records(run: Callable[[Callable[[str | None], str]], Any], default_user: str | None) -> Any:
    """Run a records parser with the CLI's scope rule (the line's user_id, else --user)."""
    from app.records import RecordError
    from app.scopes import InvalidScope, validate_scope

    def scope_for(user_id: str | None) -> str:
        chosen = user_id if user_id is not None else default_user
        if chosen is None:
            raise RecordError("no user_id, and no --user given")
        return validate_scope(chosen)

    try:
        return run(scope_for)
    except (RecordError, InvalidScope) as exc:
        raise _usage(str(exc)) from None


# --- output -------------------------------------------------------------------------------------------------


def _dump(data: Any) -> str:
    """Compact JSON text."""
    return orjson.dumps(data).decode()


def _snippet(text: str) -> str:
    """The first ~80 characters of a memory, on one line."""
    flat = " ".join(text.split())
    return flat if len(flat) <= SNIPPET_CHARS else flat[: SNIPPET_CHARS - 1] + "…"


def _table(out: TextIO, headers: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
    """Aligned columns; the last column is not padded."""
    widths = [max([len(h), *(len(r[i]) for r in rows)]) for i, h in enumerate(headers[:-1])]
    for row in (headers, *rows):
        cells = [c.ljust(w) for c, w in zip(row[:-1], widths, strict=True)]
        out.write("  ".join([*cells, row[-1]]).rstrip() + "\n")


def _memory_rows(items: Sequence[Memory]) -> list[list[str]]:
    """Table rows: id, UTC date, role, snippet."""
    return [
        [m.id, time.strftime("%Y-%m-%d %H:%M", time.gmtime(m.created_at)), m.role, _snippet(m.content)] for m in items
    ]


def _size(n: int) -> str:
    """A byte count for people."""
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024  # type: ignore[assignment]
    return str(n)  # pragma: no cover


# --- commands -----------------------------------------------------------------------------------------------


PROJECT_ROOT = Path(__file__).resolve().parent.parent


def _db_path(args: argparse.Namespace) -> str:
    """`--db`, else the MEMORY_DB the server would use, from any directory.

    The server runs from the project root (honcho), so `.env`, `config.yaml` and a relative
    MEMORY_DB are read as it reads them: relative to the project root, not the caller's directory.
    """
    if args.db:
        return str(args.db)
    from app.config import ConfigError, load_settings

    with contextlib.chdir(PROJECT_ROOT):
        try:
            path = load_settings().db_path
        except ConfigError as exc:
            raise _usage(f"{exc} (pass --db PATH to bypass the configuration)") from None
    if is_postgres_url(path) or path == ":memory:":
        return path
    return str(PROJECT_ROOT / path)


def _check_exists(args: argparse.Namespace, path: str) -> None:
    """Only `add` and `import` may create a missing SQLite database."""
    local = not is_postgres_url(path) and path != ":memory:"
    if args.action in NEEDS_EXISTING_DB and local and not Path(path).exists():
        raise CliError(EXIT_STORE, f"no memory database at {path} (set MEMORY_DB or pass --db)")


async def _open(path: str) -> MemoryStore:
    """Open the store at `path`, reporting a failure as one line without the URL's credentials."""
    from app.proxy import redact_url

    try:
        return await open_store(path)
    except Exception as exc:  # any driver's error: one line, without the URL's credentials
        detail = str(exc).replace(path, redact_url(path))
        raise CliError(EXIT_STORE, f"cannot open the memory database {redact_url(path)}: {detail}") from None


def _scope(args: argparse.Namespace) -> str | None:
    """The validated `--user`, if given."""
    from app.scopes import InvalidScope, validate_scope

    if args.user is None:
        return None
    try:
        return validate_scope(args.user)
    except InvalidScope as exc:
        raise _usage(f"--user: {exc}") from None


def _target(name: str) -> str:
    from app.scopes import InvalidScope, validate_scope

    try:
        return validate_scope(name)
    except InvalidScope as exc:
        raise _usage(f"--to: {exc}") from None


def _confirm(scope: str, count: int) -> bool:
    """Ask on a terminal; refuse (usage error) when stdin is not one."""
    if not sys.stdin or not sys.stdin.isatty():
        raise _usage(f"forget deletes all {count} memories of scope {scope!r}: pass --yes to confirm")
    sys.stderr.write(f"Delete all {count} memories of scope {scope!r}? This cannot be undone. [y/N] ")
    sys.stderr.flush()
    return sys.stdin.readline().strip().lower() in ("y", "yes")


def _read_input(name: str) -> bytes:
    """The bytes of FILE, or of stdin for `-`."""
    if name == "-":
        return sys.stdin.buffer.read()
    try:
        return Path(name).read_bytes()
    except OSError as exc:
        raise _usage(f"cannot read {name}: {exc.strerror or exc}") from None


def run(args: argparse.Namespace, out: TextIO) -> int:
    """Carry out one parsed `memories` command."""
    action = args.action
    scope = _scope(args) if hasattr(args, "user") else None
    extra: Any = None
    if action == "add":
        metadata: Any = {}
        if args.metadata is not None:
            try:
                metadata = orjson.loads(args.metadata)
            except orjson.JSONDecodeError:
                raise _usage("--metadata is not valid JSON") from None
            if not isinstance(metadata, dict):
                raise _usage("--metadata must be a JSON object")
        record = {"content": args.content, "role": args.role, "metadata": metadata}
        extra = _records(lambda scope_for: parse_record(record, "add", "note", scope_for), scope)
    elif action == "import":
        data = _read_input(args.file)
        extra = _records(lambda scope_for: parse_lines(data, scope_for), scope)
    elif action == "search" and not args.query.strip():
        raise _usage("QUERY must not be empty")
    elif action == "move":
        extra = _target(args.to)
    elif action == "usage":
        extra = _usage_filter(args, scope)

    path = _db_path(args)
    _check_exists(args, path)
    return asyncio.run(_session(args, path, scope, extra, out))


async def _session(args: argparse.Namespace, path: str, scope: Any, extra: Any, out: TextIO) -> int:
    """Open the store, run the command, close the store."""
    store = await _open(path)
    try:
        return await _dispatch(store, args, scope, extra, out)
    finally:
        await store.close()


async def _dispatch(store: MemoryStore, args: argparse.Namespace, scope: Any, extra: Any, out: TextIO) -> int:
    """Run one validated command against an open store."""
    action = args.action
    if action == "usage":
        await _usage_table(store, args, extra, out)
    elif action == "list":
        try:
            items, cursor = await store.list(scope, args.limit, args.cursor)
        except InvalidCursor as exc:
            raise _usage(f"--cursor: {exc}") from None
        if args.json:
            out.write(_dump({"data": [memory_json(m) for m in items], "next_cursor": cursor}) + "\n")
        elif not items:
            out.write(f"no memories in scope {scope!r}\n")
        else:
            _table(out, ["ID", "DATE (UTC)", "ROLE", "CONTENT"], _memory_rows(items))
            if cursor:
                out.write(f"more: --cursor {cursor}\n")
    elif action == "search":
        found = await store.search(scope, args.query, args.limit)
        if args.json:
            out.write(_dump({"data": [{**memory_json(m), "score": score} for m, score in found]}) + "\n")
        elif not found:
            out.write(f"no matches in scope {scope!r}\n")
        else:
            scores = [f"{score:.3g}" for _, score in found]
            rows = [[s, *row] for s, row in zip(scores, _memory_rows([m for m, _ in found]), strict=True)]
            _table(out, ["SCORE", "ID", "DATE (UTC)", "ROLE", "CONTENT"], rows)
    elif action == "get":
        memory = await store.get(scope, args.id)
        if memory is None:
            raise CliError(EXIT_NOT_FOUND, f"no memory {args.id!r} in scope {scope!r}")
        if args.json:
            out.write(_dump(memory_json(memory)) + "\n")
        else:
            for key, value in memory_json(memory).items():
                shown = _dump(value) if key == "metadata" else value
                out.write(f"{key + ':':12}{shown if shown is not None else '-'}\n")
    elif action == "add":
        extra = redact_memories([extra])[0][0]
        added = await store.add_many([extra])
        memory = added[0] if added else await store.find_duplicate(extra)
        if memory is None:  # pragma: no cover - a duplicate that vanished between the two calls
            raise CliError(EXIT_STORE, "the memory was neither stored nor found")
        if args.json:
            out.write(_dump(memory_json(memory)) + "\n")
        else:
            out.write(f"{'added' if added else 'already stored as'} {memory.id}\n")
    elif action == "delete":
        if not await store.delete(scope, args.id):
            raise CliError(EXIT_NOT_FOUND, f"no memory {args.id!r} in scope {scope!r}")
        out.write(_dump({"deleted": 1}) + "\n" if args.json else f"deleted {args.id}\n")
    elif action == "forget":
        if not args.yes:
            count = (await store.stats())["scopes"].get(scope, 0)
            if not _confirm(scope, count):
                raise _usage("not confirmed; nothing was deleted")
        deleted = await store.forget(scope)
        out.write(_dump({"deleted": deleted}) + "\n" if args.json else f"deleted {deleted} memories of {scope!r}\n")
    elif action == "export":
        await _export(store, args, scope, out)
    elif action == "move":
        done = await move_scope(store, scope, extra)
        out.write(
            _dump({"moved": done.moved, "already": done.already}) + "\n"
            if args.json
            else f"moved {done.moved} memories from {scope!r} to {extra!r} ({done.already} were already there)\n"
        )
    elif action == "import":
        from app import imports

        size = imports.BATCH_RECORDS
        parts = [extra[start : start + size] for start in range(0, len(extra), size)]
        imported = await imports.write_all(store, parts, lambda part: redact_memories(list(part))[0])
        skipped = len(extra) - imported
        out.write(
            _dump({"imported": imported, "skipped": skipped}) + "\n"
            if args.json
            else f"imported {imported}, skipped {skipped} (already stored)\n"
        )
    elif action == "redact":
        await _redact(store, args, scope, out)
    elif action == "stats":
        stats = await store.stats()
        if args.json:
            out.write(_dump(stats) + "\n")
        else:
            out.write(f"database: {stats['path']} ({_size(stats['bytes'])})\n")
            out.write(f"memories: {stats['memories']} in {len(stats['scopes'])} scopes\n")
            if stats["scopes"]:
                where = await store.project_directories()
                rows = [
                    [s, *(part or "-" for part in split_scope(s)), where.get(s, "-"), str(n)]
                    for s, n in stats["scopes"].items()
                ]
                _table(out, ["SCOPE", "OWNER", "PROJECT", "DIRECTORY", "MEMORIES"], rows)
    return EXIT_OK


def _usage_filter(args: argparse.Namespace, scope: str | None) -> Any:
    """The scope and time window `usage` asks for."""
    from app.records import RecordError
    from app.store.usage import UsageFilter
    from app.usage import parse_when

    try:
        since = parse_when(args.since, "--since") if args.since else None
        until = parse_when(args.until, "--until") if args.until else None
    except RecordError as exc:
        raise _usage(str(exc)) from None
    return UsageFilter(scope, since, until)


async def _usage_table(store: MemoryStore, args: argparse.Namespace, f: Any, out: TextIO) -> None:
    """The figures of GET /v1/usage, as a table or JSON."""
    from app.usage import FIGURES, summarise, table_rows

    rows = summarise(await store.usage(f), args.group_by)
    if args.json:
        out.write(_dump({"data": rows}) + "\n")
    elif rows:
        _table(out, [args.group_by.upper(), *(f.upper() for f in FIGURES)], table_rows(rows, args.group_by))
    else:
        out.write("no requests recorded\n")


async def _redact(store: MemoryStore, args: argparse.Namespace, scope: str | None, out: TextIO) -> None:
    scopes = [scope] if scope is not None else sorted((await store.stats())["scopes"])
    report = await redact_stored(store, scopes)
    if args.json:
        out.write(_dump(dataclasses.asdict(report)) + "\n")
        return
    out.write(f"scanned {report.scanned} memories in {len(scopes)} scopes: ")
    out.write(f"replaced {report.secrets} credentials in {report.memories} memories\n")
    if report.scopes:
        _table(out, ["SCOPE", "MEMORIES REDACTED"], [[s, str(n)] for s, n in report.scopes.items()])


async def _export(store: MemoryStore, args: argparse.Namespace, scope: str, out: TextIO) -> None:
    """JSON Lines to stdout, or atomically to `--out`."""
    if args.out is None:
        async for memory in store.export(scope):
            out.write(_dump(memory_json(memory)) + "\n")
        return
    target = Path(args.out)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    count = 0
    try:
        with tmp.open("wb") as fh:
            async for memory in store.export(scope):
                fh.write(orjson.dumps(memory_json(memory)) + b"\n")
                count += 1
        os.replace(tmp, target)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise _usage(f"cannot write {args.out}: {exc.strerror or exc}") from None
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    msg = _dump({"exported": count, "path": str(target)}) if args.json else f"exported {count} memories to {target}"
    out.write(msg + "\n")


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; return the exit code (errors are one stderr line, never a traceback)."""
    try:
        args = build_parser().parse_args(argv)
        return run(args, sys.stdout)
    except SystemExit as exc:  # --help
        return exc.code if isinstance(exc.code, int) else EXIT_OK
    except CliError as exc:
        sys.stderr.write(f"error: {exc}\n")
        return exc.code
    except sqlite3.Error as exc:
        sys.stderr.write(f"error: memory database: {exc}\n")
        return EXIT_STORE
    except KeyboardInterrupt:
        sys.stderr.write("interrupted\n")
        return 130
    except BrokenPipeError:  # e.g. `export | head`
        sys.stdout = open(os.devnull, "w")  # silence the flush at exit
        return EXIT_OK
    except Exception as exc:  # never a traceback for an operator
        sys.stderr.write(f"error: {type(exc).__name__}: {exc}\n")
        return EXIT_STORE
