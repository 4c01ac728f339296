"""Redaction cost on the capture path, and its false positives on a real conversation.

Times `app.redaction.redact` per captured turn for typical sizes (a short chat turn, a paragraph,
a code reply, a long paste, each with and without a credential in it) and over every turn of the
LoCoMo dev conversations, reporting p50/p95 in ms; then counts LoCoMo turns redaction changed
(ordinary prose: should be 0). Runs in-process, one core; redaction runs in the writer, off the
event loop, so these are costs the writer pays, not a chat's latency.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from app.redaction import redact  # noqa: E402
from tests.fake_secrets import credentials  # noqa: E402

PROSE = (
    "We moved the deploy to Thursday because the staging cluster was busy; Melanie will check the "
    "migration plan and I'll update the runbook with the new rollback steps. "
)
CODE = (
    "def connect(url: str, retries: int = 3) -> Connection:\n"
    "    for attempt in range(retries):\n"
    "        try:\n            return pool.acquire(url, timeout=5)\n"
    "        except TimeoutError:\n            log.warning('retry %d', attempt)\n"
    "    raise RuntimeError('no connection')\n"
)


def timed(text: str, repeat: int) -> list[float]:
    out = []
    for _ in range(repeat):
        started = time.perf_counter()
        redact(text)
        out.append((time.perf_counter() - started) * 1000)
    return out


def pct(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100)[int(q) - 1] if len(values) > 1 else values[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(ROOT / "bench/data/locomo-dev/locomo-dev.json"))
    parser.add_argument("--repeat", type=int, default=200)
    args = parser.parse_args()
    sentence = credentials()["github-token"][0]
    cases = {
        "chat turn (~150 chars)": PROSE,
        "paragraph (~1 KB)": PROSE * 7,
        "code reply (~3.4 KB)": (PROSE + CODE) * 8,
        "long paste (~27 KB)": (PROSE + CODE) * 64,
    }
    print(f"{'turn':32} {'chars':>7} {'p50 ms':>8} {'p95 ms':>8} {'+key p50':>9}")
    for name, text in cases.items():
        plain = timed(text, args.repeat)
        keyed = timed(text + " " + sentence, args.repeat)
        print(f"{name:32} {len(text):7} {pct(plain, 50):8.3f} {pct(plain, 95):8.3f} {pct(keyed, 50):9.3f}")
    turns = [
        t["text"]
        for item in json.loads(Path(args.data).read_text())
        for key, session in item["conversation"].items()
        if key.startswith("session_") and isinstance(session, list)
        for t in session
    ]
    costs = [timed(t, 1)[0] for t in turns]
    changed = [t for t in turns if redact(t).count]
    print(f"LoCoMo dev: {len(turns)} turns, p50 {pct(costs, 50):.3f} ms, p95 {pct(costs, 95):.3f} ms")
    print(f"LoCoMo turns changed by redaction: {len(changed)}")
    for t in changed[:5]:
        print("  ", t[:160])


if __name__ == "__main__":
    main()
