"""The Gemini API (`/v1beta/models/{model}:generateContent`, `:streamGenerateContent`): `contents`
of parts, the model in the path, candidate chunks, google.rpc errors.

Only text parts carry words: thoughts, function calls and responses, inline data and part kinds
this module does not know pass through untouched. LiteLLM serves the same format at
`/v1beta/models/…` for every model in its list (translating for non-Gemini providers), so
requests go there in this dialect, `/v1/…` ones included.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from typing import Any
from urllib.parse import parse_qs, quote, unquote

from app.errors import ErrorShape
from app.memory import Turn, human_text
from app.sse import StreamEvent

error_shape = ErrorShape.GEMINI
PATHS = tuple(
    f"/{version}/models/{{model}}:{method}"
    for version in ("v1beta", "v1")
    for method in ("generateContent", "streamGenerateContent")
)
_TARGET = re.compile(r"/v1(?:beta)?/models/([^/]+):(\w+)")
# A reply that ended normally; any other finishReason (SAFETY, RECITATION, …) is not a reply to keep.
_FINISHED = frozenset({"STOP", "MAX_TOKENS"})
# Gemini CLI's <session_context> part lists the workspace directories, the working directory first.
_WORKSPACE = re.compile(r"^- \*\*Workspace Directories:\*\*\n {2}- (.+)$", re.MULTILINE)


def model(body: dict[str, Any], params: Mapping[str, str]) -> object:
    """The model named in the path."""
    return params.get("model")


def set_model(body: dict[str, Any], name: str) -> bool:
    """The model travels in the path (upstream_target): the body never changes."""
    return False


def _route(target: str) -> tuple[re.Match[str], str, str]:
    """The decoded path's (model, method) match, and the raw `?` and query.

    The path is matched as the routing table saw it (decoded once: app.paths), so `%3A` for the
    colon, say, reads the same; the model is encoded again for the upstream path."""
    path, sep, query = target.partition("?")
    found = _TARGET.fullmatch(unquote(path))
    assert found is not None, "routed here only for PATHS"
    return found, sep, query


def streams(body: dict[str, Any], target: str) -> bool:
    """`:streamGenerateContent?alt=sse`; without `alt=sse` the API streams one JSON array, read whole."""
    found, _, query = _route(target)
    return found.group(2) == "streamGenerateContent" and parse_qs(query).get("alt") == ["sse"]


def upstream_target(target: str, model: str | None) -> str:
    """LiteLLM's Gemini route for the routed model: `/v1beta/models/{model}:{method}`, same query."""
    found, sep, query = _route(target)
    return f"/v1beta/models/{quote(model or found.group(1), safe='')}:{found.group(2)}{sep}{query}"


def utility_request(body: dict[str, Any]) -> bool:
    """A request for structured output (`responseMimeType: application/json`, a response schema):
    Gemini CLI's model-routing classifier, next-speaker and loop checks. Their replies are JSON
    verdicts, not conversation, and their last user content repeats the human's words."""
    config = body.get("generationConfig", body.get("generation_config"))
    if not isinstance(config, dict):
        return False
    mime = config.get("responseMimeType", config.get("response_mime_type"))
    schemas = ("responseJsonSchema", "responseSchema", "response_json_schema", "response_schema")
    return mime == "application/json" or any(config.get(k) for k in schemas)


def _parts(content: Any) -> list[Any]:
    parts = content.get("parts") if isinstance(content, dict) else None
    return parts if isinstance(parts, list) else []


def _text(part: Any) -> str | None:
    """A part's text, unless it is a thought (or carries no text)."""
    if isinstance(part, dict) and isinstance(part.get("text"), str) and not part.get("thought"):
        return part["text"]
    return None


def _contents(body: dict[str, Any]) -> list[Any]:
    contents = body.get("contents")
    return contents if isinstance(contents, list) else []


def _role(content: Any) -> str:
    role = content.get("role", "user") if isinstance(content, dict) else None
    return {"user": "user", "model": "assistant"}.get(role or "user", "")


def _human_texts(content: Any) -> Iterator[tuple[int, str]]:
    """(part index, words) of a content's text parts, scaffolding (Gemini CLI's <session_context>) removed."""
    for i, part in enumerate(_parts(content)):
        if (text := _text(part)) is not None and (words := human_text(text)):
            yield i, words


def turns(body: dict[str, Any]) -> Iterator[Turn]:
    """User and model contents with words in them, newest first (function calls and responses,
    thoughts and Gemini CLI's session context are skipped)."""
    contents = _contents(body)
    for i in range(len(contents) - 1, -1, -1):
        role = _role(contents[i])
        if role and (text := "\n".join(words for _, words in _human_texts(contents[i]))):
            yield Turn(i, role, text)


def _system(body: dict[str, Any]) -> tuple[str, Any]:
    """The system instruction's key as the client spelled it, and its value."""
    key = "system_instruction" if "system_instruction" in body else "systemInstruction"
    return key, body.get(key)


def present_text(body: dict[str, Any]) -> str:
    """The system instruction and every content's text."""
    _, system = _system(body)
    texts = [t for p in _parts(system) if (t := _text(p)) is not None]
    texts += [t for c in _contents(body) for p in _parts(c) if (t := _text(p)) is not None]
    return "\n".join(texts)


def inject(body: dict[str, Any], block: str, mode: str) -> bool:
    """A part right before the human's words in their content (`before_last_user`), a part after
    them (`last_user_suffix`), or a part at the end of the system instruction (`system`)."""
    turn = next((t for t in turns(body) if t.role == "user"), None)
    if turn is None:
        return False
    if mode == "system":
        key, system = _system(body)
        body[key] = {**(system if isinstance(system, dict) else {}), "parts": [*_parts(system), {"text": block}]}
        return True
    contents = body["contents"]
    content = contents[turn.position]
    parts = list(_parts(content))
    # Gemini CLI sends its session context as the first part of the first user content: the notes
    # go after it, so everything before the human's words (the cached prefix) stays byte-identical.
    at = next(_human_texts(content))[0] if mode == "before_last_user" else len(parts)
    parts.insert(at, {"text": block})
    contents[turn.position] = {**content, "parts": parts}
    return True


def _read(response: Any) -> StreamEvent:
    """What one GenerateContentResponse adds: the first candidate's text, its end or its failure."""
    if not isinstance(response, dict):
        return StreamEvent(failed=True)
    feedback = response.get("promptFeedback")
    if isinstance(feedback, dict) and feedback.get("blockReason"):
        return StreamEvent(failed=True)
    candidates = response.get("candidates")
    first = candidates[0] if isinstance(candidates, list) and candidates else None
    if not isinstance(first, dict):
        return StreamEvent()
    text = "".join(t for p in _parts(first.get("content")) if (t := _text(p)) is not None)
    finish = first.get("finishReason")
    return StreamEvent(text, done=finish in _FINISHED, failed=finish is not None and finish not in _FINISHED)


def stream_event(event: dict[str, Any]) -> StreamEvent:
    """One streamed chunk; a chunk with finishReason STOP (or MAX_TOKENS) ends the reply."""
    return _read(event)


def reply_text(body: object) -> str | None:
    """The text of a finished response, or of a whole JSON-array stream; None otherwise."""
    events = [_read(chunk) for chunk in (body if isinstance(body, list) else [body])]
    if any(e.failed for e in events) or not any(e.done for e in events):
        return None
    return "".join(e.text for e in events)


def working_directory(body: dict[str, Any]) -> str | None:
    """The client's working directory, from Gemini CLI's session context (the first workspace
    directory it lists); None when the request has none."""
    for content in _contents(body):
        for part in _parts(content):
            text = _text(part)
            if text is not None and "<session_context>" in text and (found := _WORKSPACE.search(text)):
                return found.group(1).strip()
    return None
