"""What the JSON nesting check (app.bodies.parse_json) adds to parsing a request body.

Bodies: a typical chat (a short system prompt and a dozen turns), a Codex-sized Responses body
(tools with JSON schemas, 200 input items), and a 1 MB chat. Prints per-body medians of orjson.loads
alone and of parse_json (loads + the depth check), in microseconds.

    python bench/json_depth.py [--rounds 2000]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from app.bodies import parse_json


def chat(turns: int, words: int) -> bytes:
    text = " ".join(["memory"] * words)
    messages = [{"role": "system", "content": "You are a helpful assistant."}]
    messages += [{"role": "user" if i % 2 == 0 else "assistant", "content": text} for i in range(turns)]
    return orjson.dumps({"model": "fake-model", "messages": messages, "stream": True})


def responses_body() -> bytes:
    schema = {"type": "object", "properties": {"path": {"type": "string"}, "lines": {"type": "array", "items": {}}}}
    tools = [{"type": "function", "name": f"tool{i}", "parameters": schema} for i in range(20)]
    part = [{"type": "input_text", "text": "some words of a turn " * 5}]
    items = [{"type": "message", "role": "user", "content": part} for _ in range(200)]
    return orjson.dumps({"model": "fake-model", "tools": tools, "input": items, "stream": True})


def median_us(fn, raw: bytes, rounds: int) -> float:  # type: ignore[no-untyped-def]
    times = []
    for _ in range(rounds):
        started = time.perf_counter()
        fn(raw)
        times.append(time.perf_counter() - started)
    return statistics.median(times) * 1e6


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=2000)
    args = parser.parse_args()
    bodies = {
        "chat, 12 turns": chat(12, 40),
        "responses, 200 items + 20 tools": responses_body(),
        "chat, 1 MB": chat(400, 400),
    }
    print(f"{'body':34} {'bytes':>9} {'loads µs':>9} {'parse_json µs':>14} {'added µs':>9}")
    for name, raw in bodies.items():
        rounds = args.rounds if len(raw) < 100_000 else max(50, args.rounds // 20)
        plain = median_us(orjson.loads, raw, rounds)
        checked = median_us(parse_json, raw, rounds)
        print(f"{name:34} {len(raw):>9} {plain:>9.1f} {checked:>14.1f} {checked - plain:>9.1f}")


if __name__ == "__main__":
    main()
