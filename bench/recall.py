"""Retrieval benchmark: recall@5/@10 of the memory search on LoCoMo conversations, vs plain BM25.

Run by hand from the repository root:

    python bench/recall.py [--db postgresql://…] [--data bench/data/locomo-dev/locomo-dev.json]

It starts the memory proxy (uvicorn app.main:app) on a free loopback port with a throw-away
SQLite database, or on `--db` (a SQLite path or PostgreSQL URL; the bench scopes are forgotten
first), loads every conversation into its own scope through POST /v1/memories/import (one memory
per turn, `dia_id` in the metadata, created_at = the session's date), asks each question of
categories 1-4 through GET /v1/memories/search (limit 10) and counts the fraction of the question's
evidence turns in the top 5 and top 10. The baseline is plain BM25 over the same turn texts in an
in-memory SQLite FTS5 table (porter stemming, question words OR-ed, bm25 order). The data set is
in bench/data/locomo-dev/ (see its README for the licence: non-commercial evaluation only).

Then what reaches the model: the proxy's upstream is an echo provider (bench/prompt_check.py) and
each question is asked through POST /v1/chat/completions (`x-memory-mode: read`). *Evidence in
prompt* is the share of a question's evidence turns among the notes the provider received, asked in
its own conversation's scope; *false injection* is the share of questions that got any note when
asked in the next conversation's scope (where nothing is relevant); plus the mean characters of
notes injected per question in each case.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import httpx
from prompt_check import EchoUpstream, ask

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_DATA = ROOT / "bench" / "data" / "locomo-dev" / "locomo-dev.json"
CATEGORIES = {1, 2, 3, 4}
K = (5, 10)
_WORD = re.compile(r"\w+", re.UNICODE)


@dataclass
class Turn:
    dia_id: str
    speaker: str
    content: str
    created_at: datetime


@dataclass
class Question:
    text: str
    evidence: list[str]
    category: int


@dataclass
class Prompted:
    """What the chat endpoint sent the provider, over questions asked in their own or a foreign scope."""

    evidence: list[float] = field(default_factory=list)
    own_chars: list[int] = field(default_factory=list)
    foreign_any: list[bool] = field(default_factory=list)
    foreign_chars: list[int] = field(default_factory=list)

    def extend(self, other: Prompted) -> None:
        self.evidence += other.evidence
        self.own_chars += other.own_chars
        self.foreign_any += other.foreign_any
        self.foreign_chars += other.foreign_chars

    def line(self) -> str:
        return (
            f"{100 * statistics.fmean(self.evidence):>10.1f}{statistics.fmean(self.own_chars):>10.0f}"
            f"{100 * statistics.fmean(self.foreign_any):>10.1f}{statistics.fmean(self.foreign_chars):>10.0f}"
        )


def prompted(client: httpx.Client, echo: EchoUpstream, conv: Conversation, own: str, foreign: str) -> Prompted:
    """Ask every question of `conv` through the chat endpoint in its `own` scope and in a `foreign` one."""
    ids: dict[str, set[str]] = {}
    for t in conv.turns:
        ids.setdefault(t.content, set()).add(t.dia_id)
    out = Prompted()
    for q in conv.questions:
        _, notes = ask(client, echo, own, q.text)
        got = set().union(*(ids.get(n, set()) for n in notes))
        out.evidence.append(len(got & set(q.evidence)) / len(set(q.evidence)))
        out.own_chars.append(sum(map(len, notes)))
        injected, notes = ask(client, echo, foreign, q.text)
        out.foreign_any.append(injected > 0)
        out.foreign_chars.append(sum(map(len, notes)))
    return out


@dataclass
class Conversation:
    name: str
    speaker_a: str
    turns: list[Turn]
    questions: list[Question]


@dataclass
class Score:
    hits: dict[int, list[float]] = field(default_factory=lambda: {k: [] for k in K})

    def add(self, ranked: list[str], evidence: list[str]) -> None:
        wanted = set(evidence)
        for k in K:
            self.hits[k].append(len(wanted & set(ranked[:k])) / len(wanted))

    def extend(self, other: Score) -> None:
        for k in K:
            self.hits[k].extend(other.hits[k])

    def recall(self, k: int) -> float:
        return 100 * statistics.fmean(self.hits[k]) if self.hits[k] else 0.0


def session_date(raw: str) -> datetime:
    """`1:56 pm on 8 May, 2023` as a UTC datetime."""
    return datetime.strptime(raw.strip(), "%I:%M %p on %d %B, %Y").replace(tzinfo=UTC)


def load(path: Path) -> list[Conversation]:
    out = []
    for number, item in enumerate(json.loads(path.read_text()), start=1):
        conv = item["conversation"]
        sessions = sorted(
            (int(key.split("_")[1]) for key in conv if re.fullmatch(r"session_\d+", key)),
        )
        turns = []
        for s in sessions:
            when = session_date(conv[f"session_{s}_date_time"])
            for t in conv[f"session_{s}"]:
                text = t["text"].strip()
                if t.get("blip_caption"):
                    text += f" [shares image: {t['blip_caption']}]"
                turns.append(Turn(t["dia_id"], t["speaker"], text, when))
        questions = [
            # LoCoMo sometimes lists two turns in one evidence entry ("D8:6; D9:17"): count each.
            Question(q["question"], [e.strip() for entry in q["evidence"] for e in entry.split(";")], q["category"])
            for q in item["qa"]
            if q["category"] in CATEGORIES and q.get("evidence")
        ]
        name = item.get("sample_id") or f"conv-{number}"
        out.append(Conversation(str(name), conv["speaker_a"], turns, questions))
    return out


# --- the baseline: plain BM25 ---------------------------------------------------------------------


class Baseline:
    """SQLite FTS5 with porter stemming over the turn texts alone; question words OR-ed."""

    def __init__(self, conv: Conversation) -> None:
        self.db = sqlite3.connect(":memory:")
        self.db.execute("CREATE VIRTUAL TABLE t USING fts5(content, dia_id UNINDEXED, tokenize = 'porter unicode61')")
        self.db.executemany(
            "INSERT INTO t (content, dia_id) VALUES (?, ?)", ((t.content, t.dia_id) for t in conv.turns)
        )

    def search(self, question: str, limit: int) -> list[str]:
        words = dict.fromkeys(w.lower() for w in _WORD.findall(question))
        if not words:
            return []
        expr = " OR ".join(f'"{w}"' for w in words)
        rows = self.db.execute("SELECT dia_id FROM t WHERE t MATCH ? ORDER BY bm25(t) LIMIT ?", (expr, limit))
        return [r[0] for r in rows]


# --- the memory proxy -----------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_proxy(tmp: str, db: str | None, upstream: str) -> tuple[subprocess.Popen[bytes], str]:
    return spawn_proxy(ROOT, tmp, {"MEMORY_DB": db or os.path.join(tmp, "memory.db"), "LITELLM_BASE_URL": upstream})


def spawn_proxy(
    root: Path, tmp: str, settings: dict[str, str], wait: float = 30
) -> tuple[subprocess.Popen[bytes], str]:
    """The memory proxy of checkout `root` on a free loopback port with `settings`, once it answers /health."""
    port = free_port()
    env = {
        **os.environ,
        "MEMORY_CONFIG": str(root / "config.yaml"),
        "MEMORY_ENV_FILE": "",
        "MEMORY_HOST": "127.0.0.1",
        "MEMORY_PORT": str(port),
        **settings,
    }
    cmd = [sys.executable, "-m", "uvicorn", "app.main:app", "--host", "127.0.0.1", "--port", str(port)]
    with open(os.path.join(tmp, "proxy.log"), "wb") as log:  # the child keeps its own descriptor
        proc = subprocess.Popen([*cmd, "--no-access-log"], cwd=root, env=env, stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"the memory proxy exited early; see {tmp}/proxy.log")
        try:
            if httpx.get(f"{base}/health", timeout=1).status_code == 200:
                return proc, base
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    proc.terminate()
    raise SystemExit(f"the memory proxy did not come up within {wait:.0f} s")


def import_lines(client: httpx.Client, lines: list[bytes]) -> tuple[int, float]:
    """POST JSON Lines to the import endpoint; (imported, seconds)."""
    t0 = time.perf_counter()
    r = client.post("/v1/memories/import", content=b"\n".join(lines), headers={"content-type": "application/x-ndjson"})
    elapsed = time.perf_counter() - t0
    r.raise_for_status()
    return r.json()["imported"], elapsed


def memory_lines(scope: str, conv: Conversation) -> list[bytes]:
    return [
        json.dumps(
            {
                "user_id": scope,
                "role": "user" if t.speaker == conv.speaker_a else "assistant",
                "content": t.content,
                "created_at": t.created_at.isoformat(),
                "metadata": {"dia_id": t.dia_id, "speaker": t.speaker},
            }
        ).encode()
        for t in conv.turns
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="LoCoMo-format JSON (default: %(default)s)")
    parser.add_argument("--db", help="store URL or path (default: a throw-away SQLite file)")
    parser.add_argument(
        "--bulk", type=int, default=20000, help="lines for the import throughput check (0 to skip; default %(default)s)"
    )
    args = parser.parse_args()
    convs = load(args.data.resolve())

    with tempfile.TemporaryDirectory(prefix="recall-bench-") as tmp, EchoUpstream() as echo:
        proc, base = start_proxy(tmp, args.db, echo.url)
        try:
            with httpx.Client(base_url=base, timeout=60) as client:
                rows, latencies, ours_all, base_all = [], [], Score(), Score()
                turns_total = imported_total = 0
                import_seconds = 0.0
                for i, conv in enumerate(convs):
                    scope = f"locomo-{i}"
                    client.delete("/v1/memories", params={"user_id": scope}).raise_for_status()
                    imported, secs = import_lines(client, memory_lines(scope, conv))
                    turns_total += len(conv.turns)
                    imported_total += imported
                    import_seconds += secs
                    baseline = Baseline(conv)
                    ours, plain = Score(), Score()
                    for q in conv.questions:
                        t0 = time.perf_counter()
                        r = client.get("/v1/memories/search", params={"q": q.text, "user_id": scope, "limit": 10})
                        latencies.append((time.perf_counter() - t0) * 1000)
                        r.raise_for_status()
                        ranked = [m["metadata"].get("dia_id") for m in r.json()["data"]]
                        ours.add(ranked, q.evidence)
                        plain.add(baseline.search(q.text, 10), q.evidence)
                    rows.append((conv.name, len(conv.turns), imported, len(conv.questions), ours, plain))
                    ours_all.extend(ours)
                    base_all.extend(plain)
                prompt_rows, prompt_all = [], Prompted()
                for i, conv in enumerate(convs):
                    p = prompted(client, echo, conv, f"locomo-{i}", f"locomo-{(i + 1) % len(convs)}")
                    prompt_rows.append((conv.name, len(conv.questions), p))
                    prompt_all.extend(p)

                bulk = None
                if args.bulk:
                    pool = [t for c in convs for t in c.turns]
                    lines = [
                        json.dumps(
                            {
                                "user_id": "bulk",
                                "role": "user",
                                "content": f"{pool[n % len(pool)].content} #{n}",
                                "created_at": pool[n % len(pool)].created_at.isoformat(),
                                "metadata": {"n": n},
                            }
                        ).encode()
                        for n in range(args.bulk)
                    ]
                    client.delete("/v1/memories", params={"user_id": "bulk"}).raise_for_status()
                    bulk = import_lines(client, lines)
        finally:
            proc.terminate()
            proc.wait(10)

    header = f"{'conversation':<14}{'turns':>7}{'stored':>8}{'qs':>6}  {'ours@5':>7}{'ours@10':>8}"
    header += f"  {'bm25@5':>7}{'bm25@10':>8}"
    print(header)
    print("-" * len(header))
    for name, turns, stored, qs, ours, plain in rows:
        print(
            f"{name:<14}{turns:>7}{stored:>8}{qs:>6}  {ours.recall(5):>7.1f}{ours.recall(10):>8.1f}"
            f"  {plain.recall(5):>7.1f}{plain.recall(10):>8.1f}"
        )
    print("-" * len(header))
    print(
        f"{'overall':<14}{turns_total:>7}{imported_total:>8}{len(ours_all.hits[5]):>6}  {ours_all.recall(5):>7.1f}"
        f"{ours_all.recall(10):>8.1f}  {base_all.recall(5):>7.1f}{base_all.recall(10):>8.1f}"
    )
    print(
        f"\nrecall@10 gain over BM25: {ours_all.recall(10) - base_all.recall(10):+.1f} points; "
        f"recall@5: {ours_all.recall(5) - base_all.recall(5):+.1f}"
    )
    header = f"\n{'through the chat endpoint':<26}{'qs':>6}{'evidence%':>10}{'chars':>10}{'false%':>10}{'chars':>10}"
    print(header)
    print("-" * len(header))
    for name, qs, p in prompt_rows:
        print(f"{name:<26}{qs:>6}{p.line()}")
    print("-" * len(header))
    print(f"{'overall':<26}{len(prompt_all.evidence):>6}{prompt_all.line()}")
    print("(evidence% and its chars: in the question's own scope; false% and its chars: in the next conversation's)")
    lat = sorted(latencies)
    p95 = lat[min(len(lat) - 1, round(0.95 * (len(lat) - 1)))]
    print(f"search latency over HTTP (client): median {statistics.median(lat):.2f} ms, p95 {p95:.2f} ms, n={len(lat)}")
    print(f"import: {turns_total} turns in {import_seconds:.2f} s = {turns_total / import_seconds:,.0f} turns/s")
    if bulk is not None:
        print(f"bulk import: {bulk[0]} lines in {bulk[1]:.2f} s = {bulk[0] / bulk[1]:,.0f} turns/s (one request)")


if __name__ == "__main__":
    main()
