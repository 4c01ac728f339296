"""Log lines a client cannot forge: every field is escaped before it reaches a handler."""

from __future__ import annotations

import logging
import re
import traceback
from typing import Any

# C0 and C1 controls, DEL, and the Unicode line and paragraph separators: each could start a new
# line (or hide text) in a terminal or a log viewer.
_UNSAFE = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029\\]")


def _escape_char(match: re.Match[str]) -> str:
    char = match.group()
    return {"\n": "\\n", "\r": "\\r", "\t": "\\t", "\\": "\\\\"}.get(char) or f"\\x{ord(char):02x}"


def escaped(text: str) -> str:
    """`text` with backslashes, newlines and every other control character written as escapes."""
    return _UNSAFE.sub(_escape_char, text)


def _safe(value: Any) -> Any:
    if isinstance(value, int | float | bool | type(None)):
        return value
    return escaped(value if isinstance(value, str) else str(value))


class EscapeFields(logging.Filter):
    """Escapes a record's message, its arguments and its traceback, so each record is one line."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.msg, str):
            record.msg = escaped(record.msg)
        if isinstance(record.args, dict):
            record.args = {k: _safe(v) for k, v in record.args.items()}
        elif record.args:
            record.args = tuple(_safe(a) for a in record.args)
        if record.exc_info and record.exc_info[1] is not None:
            # Formatters print a set exc_text instead of formatting exc_info again.
            record.exc_text = escaped("".join(traceback.format_exception(*record.exc_info)).rstrip())
        return True


_FILTER = EscapeFields()


def logger(name: str) -> logging.Logger:
    """The named logger with EscapeFields on it (use it for every logger of the memory proxy)."""
    log = logging.getLogger(name)
    if _FILTER not in log.filters:
        log.addFilter(_FILTER)
    return log
