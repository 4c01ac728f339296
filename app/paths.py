"""Request paths in one canonical form, decided on once and forwarded exactly as decided."""

from __future__ import annotations

import re
from urllib.parse import unquote

_SLASHES = re.compile(rb"/{2,}")
_CONTROL = re.compile(r"[\x00-\x1f\x7f\\]")


class BadPath(ValueError):
    """A path the proxy refuses to interpret (the caller answers 400)."""


def canonical_path(raw_path: bytes) -> tuple[str, bytes]:
    """(decoded path, raw path to forward) with repeated slashes collapsed.

    The decoded path is what LiteLLM's server routes on (it percent-decodes once), so every
    access decision is made on it. Paths that a server or HTTP client might rewrite into another
    path are refused rather than repaired: dot segments in any encoding (`..`, `%2e%2e`, `..%2f`),
    slashes or backslashes hidden by percent-encoding that would create empty segments, control
    characters, and anything still percent-encoded after one decoding (double encoding).
    """
    if not raw_path.startswith(b"/"):
        raise BadPath("the request target must be an absolute path")
    raw = _SLASHES.sub(b"/", raw_path)
    try:
        decoded = unquote(raw.decode("ascii"), errors="strict")
    except (UnicodeDecodeError, UnicodeEncodeError):
        raise BadPath("the path is not valid percent-encoded UTF-8") from None
    segments = decoded.split("/")
    if any(s in (".", "..") for s in segments):
        raise BadPath("the path contains dot segments ('.' or '..')")
    if "//" in decoded or _CONTROL.search(decoded):
        raise BadPath("the path contains encoded slashes, backslashes or control characters")
    if "%" in decoded:
        raise BadPath("the path is percent-encoded twice")
    return decoded, raw
