"""app/sse.py: reassembling the assistant's reply from SSE streams and plain JSON bodies."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from app.dialects import anthropic_messages, openai_chat, openai_responses
from app.sse import ReplyAssembler, ReplyFormat, usage_tokens


def dialect(anthropic: bool | ReplyFormat) -> ReplyFormat:
    """The dialect for a stream: Anthropic or OpenAI chat by flag, or the one given."""
    if isinstance(anthropic, bool):
        return anthropic_messages if anthropic else openai_chat
    return anthropic


PIECES = ["Héllo", ", wörld", " — 漢字", " 🎉", "", " done.\nNew line"]
EXPECTED = "".join(PIECES)


def sse(data: object, event: str | None = None) -> bytes:
    payload = data if isinstance(data, str) else json.dumps(data, ensure_ascii=False)
    head = f"event: {event}\n" if event else ""
    return f"{head}data: {payload}\n\n".encode()


def openai_stream(done: bool = True) -> bytes:
    out = [b": keep-alive comment\n\n"]
    out.append(sse({"id": "c1", "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}}]}))
    for p in PIECES:
        out.append(sse({"id": "c1", "choices": [{"index": 0, "delta": {"content": p}, "finish_reason": None}]}))
    out.append(sse({"id": "c1", "choices": [{"index": 1, "delta": {"content": "OTHER CHOICE"}}]}))
    out.append(sse({"id": "c1", "choices": [{"index": 0, "delta": {"tool_calls": [{"index": 0}]}}]}))
    out.append(sse({"id": "c1", "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}))
    out.append(sse({"id": "c1", "choices": [], "usage": {"prompt_tokens": 3, "completion_tokens": 5}}))
    if done:
        out.append(b"data: [DONE]\n\n")
    return b"".join(out)


def anthropic_stream(stop: bool = True) -> bytes:
    out = [
        sse({"type": "message_start", "message": {"id": "m1", "role": "assistant", "content": []}}, "message_start"),
        sse({"type": "content_block_start", "index": 0, "content_block": {"type": "thinking"}}, "content_block_start"),
        sse(
            {"type": "content_block_delta", "index": 0, "delta": {"type": "thinking_delta", "thinking": "HIDDEN"}},
            "content_block_delta",
        ),
        sse({"type": "content_block_stop", "index": 0}, "content_block_stop"),
        sse({"type": "ping"}, "ping"),
        sse({"type": "content_block_start", "index": 1, "content_block": {"type": "text", "text": ""}}),
    ]
    for p in PIECES:
        out.append(
            sse(
                {"type": "content_block_delta", "index": 1, "delta": {"type": "text_delta", "text": p}},
                "content_block_delta",
            )
        )
    out.append(
        sse(
            {"type": "content_block_delta", "index": 2, "delta": {"type": "input_json_delta", "partial_json": '{"a"'}},
            "content_block_delta",
        )
    )
    out.append(sse({"type": "content_block_stop", "index": 1}, "content_block_stop"))
    out.append(sse({"type": "message_delta", "delta": {"stop_reason": "end_turn"}}, "message_delta"))
    if stop:
        out.append(sse({"type": "message_stop"}, "message_stop"))
    return b"".join(out)


def typed(kind: str, **data: object) -> bytes:
    """A Responses API event: its type in both the event line and the data."""
    return sse({"type": kind, **data}, kind)


def responses_stream(end: str = "response.completed") -> bytes:
    response = {"id": "resp_1", "object": "response", "status": "in_progress", "output": []}
    out = [
        typed("response.created", sequence_number=0, response=response),
        typed("response.reasoning_summary_text.delta", delta="HIDDEN"),
        typed("response.function_call_arguments.delta", delta='{"a"'),
    ]
    out += [typed("response.output_text.delta", output_index=1, delta=p) for p in PIECES]
    out.append(typed("response.output_text.done", text=EXPECTED))
    out.append(typed(end, response={**response, "status": end.removeprefix("response.")}))
    return b"".join(out)


def crlf(raw: bytes) -> bytes:
    return raw.replace(b"\n\n", b"\r\n\r\n").replace(b"\n", b"\r\n").replace(b"\r\r\n", b"\r\n")


def feed_split(asm: ReplyAssembler, raw: bytes, cuts: list[int]) -> ReplyAssembler:
    points = sorted({c for c in cuts if 0 < c < len(raw)})
    start = 0
    for p in [*points, len(raw)]:
        asm.feed(raw[start:p])
        start = p
    return asm


STREAMS = {
    "openai": (False, openai_stream()),
    "anthropic": (True, anthropic_stream()),
    "openai-crlf": (False, crlf(openai_stream())),
    "anthropic-crlf": (True, crlf(anthropic_stream())),
    "responses": (openai_responses, responses_stream()),
    "responses-crlf": (openai_responses, crlf(responses_stream())),
}


def test_crlf_helper_really_uses_crlf() -> None:
    raw = STREAMS["anthropic-crlf"][1]
    assert b"\r\n\r\n" in raw and b"\n\n" not in raw and b"\r\r" not in raw


@pytest.mark.parametrize("name", sorted(STREAMS))
def test_whole_stream(name: str) -> None:
    anthropic, raw = STREAMS[name]
    asm = ReplyAssembler(dialect(anthropic), streaming=True)
    asm.feed(raw)
    assert asm.text() == EXPECTED
    assert asm.complete and not asm.failed


@pytest.mark.parametrize("name", sorted(STREAMS))
def test_byte_by_byte(name: str) -> None:
    anthropic, raw = STREAMS[name]
    asm = feed_split(ReplyAssembler(dialect(anthropic), streaming=True), raw, list(range(len(raw))))
    assert asm.text() == EXPECTED


@settings(max_examples=150, deadline=None)
@given(name=st.sampled_from(sorted(STREAMS)), cuts=st.lists(st.integers(0, 5000), max_size=40))
def test_arbitrary_chunk_splits(name: str, cuts: list[int]) -> None:
    anthropic, raw = STREAMS[name]
    asm = feed_split(ReplyAssembler(dialect(anthropic), streaming=True), raw, [c % (len(raw) + 1) for c in cuts])
    assert asm.text() == EXPECTED


@settings(max_examples=100, deadline=None)
@given(name=st.sampled_from(sorted(STREAMS)), data=st.data())
def test_any_truncated_stream_is_not_a_reply(name: str, data: st.DataObject) -> None:
    anthropic, raw = STREAMS[name]
    end = data.draw(st.integers(0, len(raw) - 1), label="end")
    cuts = data.draw(st.lists(st.integers(0, max(end, 1)), max_size=10), label="cuts")
    asm = feed_split(ReplyAssembler(dialect(anthropic), streaming=True), raw[:end], cuts)
    assert asm.text() is None


def test_incomplete_openai_stream_without_done() -> None:
    asm = ReplyAssembler(dialect(False), streaming=True)
    asm.feed(openai_stream(done=False))
    assert asm.text() is None


def test_incomplete_anthropic_stream_without_message_stop() -> None:
    asm = ReplyAssembler(dialect(True), streaming=True)
    asm.feed(anthropic_stream(stop=False))
    assert asm.text() is None


def test_openai_error_event_mid_stream_fails_even_with_done() -> None:
    raw = openai_stream(done=False) + sse({"error": {"message": "boom", "type": "api_error"}}) + b"data: [DONE]\n\n"
    asm = ReplyAssembler(dialect(False), streaming=True)
    asm.feed(raw)
    assert asm.failed is True
    assert asm.text() is None


def test_anthropic_error_event_fails_even_with_message_stop() -> None:
    err = sse({"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}, "error")
    raw = anthropic_stream(stop=False) + err + sse({"type": "message_stop"}, "message_stop")
    asm = ReplyAssembler(dialect(True), streaming=True)
    feed_split(asm, raw, [7, 100, len(raw) - 3])
    assert asm.text() is None


def test_data_without_space_and_multiple_data_lines() -> None:
    asm = ReplyAssembler(dialect(False), streaming=True)
    asm.feed(b'data:{"choices":[{"index":0,"delta":{"content":"a"}}]}\n\n')
    asm.feed(b'data: {"choices":[{"index":0,\ndata: "delta":{"content":"b"}}]}\n\n')
    asm.feed(b"data: not json\n\n")
    asm.feed(b"data: [DONE]\n\n")
    assert asm.text() == "ab"


def test_stream_over_max_bytes_is_not_a_reply() -> None:
    asm = ReplyAssembler(dialect(False), streaming=True, max_bytes=100)
    feed_split(asm, openai_stream(), list(range(0, 2000, 37)))
    assert asm.text() is None


# --- non-streaming bodies ----------------------------------------------------------------------

OPENAI_BODY = {
    "id": "c1",
    "choices": [{"index": 0, "message": {"role": "assistant", "content": EXPECTED}, "finish_reason": "stop"}],
}
ANTHROPIC_BODY = {
    "id": "m1",
    "type": "message",
    "role": "assistant",
    "content": [
        {"type": "thinking", "thinking": "HIDDEN"},
        {"type": "text", "text": "Héllo"},
        {"type": "tool_use", "id": "t", "name": "x", "input": {}},
        {"type": "text", "text": " there"},
    ],
}


@settings(max_examples=50, deadline=None)
@given(anthropic=st.booleans(), cuts=st.lists(st.integers(0, 400), max_size=20))
def test_non_streaming_body_in_chunks(anthropic: bool, cuts: list[int]) -> None:
    raw = json.dumps(ANTHROPIC_BODY if anthropic else OPENAI_BODY, ensure_ascii=False).encode()
    asm = feed_split(ReplyAssembler(dialect(anthropic), streaming=False), raw, cuts)
    assert asm.text() == ("Héllo there" if anthropic else EXPECTED)


def test_non_streaming_truncated_body() -> None:
    raw = json.dumps(OPENAI_BODY).encode()
    asm = ReplyAssembler(dialect(False), streaming=False)
    asm.feed(raw[:-5])
    assert asm.text() is None


def test_reply_text_openai() -> None:
    assert dialect(False).reply_text(OPENAI_BODY) == EXPECTED
    parts = {"choices": [{"message": {"content": [{"type": "text", "text": "a"}, {"type": "image_url"}]}}]}
    assert dialect(False).reply_text(parts) == "a"
    # A reply that only calls tools has no text, but is a complete reply (the user's turn is kept).
    assert dialect(False).reply_text({"choices": [{"message": {"content": None, "tool_calls": []}}]}) == ""
    assert dialect(False).reply_text({"choices": []}) is None
    assert dialect(False).reply_text({"error": {"message": "x"}}) is None
    assert dialect(False).reply_text([1, 2]) is None


def test_reply_text_anthropic() -> None:
    assert dialect(True).reply_text(ANTHROPIC_BODY) == "Héllo there"
    assert dialect(True).reply_text({"type": "error", "error": {"message": "x"}}) is None
    assert dialect(True).reply_text("text") is None


# --- the Responses API ---------------------------------------------------------------------------


@pytest.mark.parametrize("end", ["response.failed", "response.incomplete"])
def test_responses_stream_that_fails_or_stops_short_is_not_a_reply(end: str) -> None:
    asm = ReplyAssembler(openai_responses, streaming=True)
    asm.feed(responses_stream(end))
    assert asm.text() is None


def test_responses_error_event_is_not_a_reply() -> None:
    asm = ReplyAssembler(openai_responses, streaming=True)
    raw = responses_stream().replace(b"event: response.completed", b"event: error")
    err = sse({"type": "error", "code": "server_error", "message": "boom", "sequence_number": 9}, "error")
    asm.feed(raw.split(b"event: error")[0] + err)
    assert asm.text() is None


def test_responses_completed_without_deltas_takes_the_output() -> None:
    output = [{"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "whole"}]}]
    asm = ReplyAssembler(openai_responses, streaming=True)
    asm.feed(sse({"type": "response.completed", "response": {"status": "completed", "output": output}}))
    assert asm.text() == "whole"


RESPONSE_BODY = {
    "id": "resp_1",
    "object": "response",
    "status": "completed",
    "output": [
        {"type": "reasoning", "id": "rs_1", "summary": [], "encrypted_content": "gAAAA"},
        {"type": "function_call", "call_id": "c1", "name": "x", "arguments": "{}"},
        {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "Héllo"}]},
        {"type": "message", "role": "assistant", "content": [{"type": "refusal", "refusal": "no"}]},
        {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": " there"}]},
    ],
}


def test_reply_text_responses() -> None:
    assert openai_responses.reply_text(RESPONSE_BODY) == "Héllo there"
    for status in ("failed", "incomplete", "queued", "in_progress", "cancelled"):
        assert openai_responses.reply_text({**RESPONSE_BODY, "status": status}) is None
    assert openai_responses.reply_text({"error": {"message": "x"}}) is None
    assert openai_responses.reply_text([1]) is None


# --- token counts for the usage log ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("obj", "expected"),
    [
        ({"usage": {"prompt_tokens": 11, "completion_tokens": 4}}, (11, 4)),  # OpenAI chat
        ({"type": "message_start", "message": {"usage": {"input_tokens": 9, "output_tokens": 1}}}, (9, 1)),
        ({"type": "message_delta", "usage": {"output_tokens": 7}}, (None, 7)),  # Anthropic's last count
        ({"type": "response.completed", "response": {"usage": {"input_tokens": 3, "output_tokens": 2}}}, (3, 2)),
        ({"usage": {"prompt_tokens": True, "completion_tokens": "5"}}, (None, None)),  # not numbers
        ({"choices": []}, (None, None)),
    ],
)
def test_usage_tokens_wherever_the_dialect_puts_them(obj: dict, expected: tuple) -> None:
    assert usage_tokens(obj) == expected


def anthropic_stream_with_usage() -> list[bytes]:
    start = {"type": "message_start", "message": {"usage": {"input_tokens": 12, "output_tokens": 1}}}
    deltas = [{"type": "content_block_delta", "delta": {"type": "text_delta", "text": p}} for p in PIECES]
    end = [{"type": "message_delta", "usage": {"output_tokens": 8}}, {"type": "message_stop"}]
    return [sse(e, e["type"]) for e in [start, *deltas, *end]]


class Counting:
    """Anthropic's reply format, counting the events it is asked to read."""

    def __init__(self) -> None:
        self.read = 0

    def stream_event(self, event: dict):  # type: ignore[no-untyped-def]
        self.read += 1
        return anthropic_messages.stream_event(event)

    def reply_text(self, body: object) -> str | None:
        return anthropic_messages.reply_text(body)


@pytest.mark.parametrize("text", [True, False])
def test_stream_token_counts_with_or_without_the_text(text: bool) -> None:
    fmt = Counting()
    asm = ReplyAssembler(fmt, streaming=True, text=text)
    for chunk in anthropic_stream_with_usage():
        asm.feed(chunk)
    assert asm.tokens() == (12, 8)
    # Only counting: the text deltas are never parsed, only the events that carry `usage`.
    assert fmt.read == (len(PIECES) + 3 if text else 2)


def test_plain_reply_tokens_are_read_once_with_the_text() -> None:
    body = {"choices": [{"message": {"content": "hi"}}], "usage": {"prompt_tokens": 5, "completion_tokens": 1}}
    asm = ReplyAssembler(openai_chat, streaming=False)
    asm.feed(json.dumps(body).encode())
    assert asm.text() == "hi" and asm.tokens() == (5, 1)
    broken = ReplyAssembler(openai_chat, streaming=False)
    broken.feed(b"{not json")
    assert broken.text() is None and broken.tokens() == (None, None)
