"""Credential redaction: finds secrets in a memory's text and replaces each with a marker naming its kind.

Known token formats, keywords and quoted high-entropy strings come from Yelp's detect-secrets plugins
(their `analyze_string`, run on the whole text: no files, no network verification); the formats it
misses (Anthropic and OpenAI project keys, AWS secret keys in prose, PEM blocks whole, GitHub
fine-grained tokens, connection-string passwords) are patterns here."""

from __future__ import annotations

import asyncio
import dataclasses
import re
from collections.abc import Iterable
from dataclasses import dataclass

from detect_secrets.plugins.aws import AWSKeyDetector
from detect_secrets.plugins.base import BasePlugin
from detect_secrets.plugins.basic_auth import BasicAuthDetector
from detect_secrets.plugins.github_token import GitHubTokenDetector
from detect_secrets.plugins.gitlab_token import GitLabTokenDetector
from detect_secrets.plugins.high_entropy_strings import Base64HighEntropyString
from detect_secrets.plugins.jwt import JwtTokenDetector
from detect_secrets.plugins.keyword import KeywordDetector
from detect_secrets.plugins.openai import OpenAIDetector
from detect_secrets.plugins.pypi_token import PypiTokenDetector
from detect_secrets.plugins.sendgrid import SendGridDetector
from detect_secrets.plugins.slack import SlackDetector
from detect_secrets.plugins.stripe import StripeDetector
from detect_secrets.plugins.twilio import TwilioKeyDetector

from app.store import NewMemory

# Checked before detect-secrets, so a key it also half-matches (its Stripe pattern stops at 24
# characters, its OpenAI one needs the legacy infix) is named and removed whole.
OWN_PATTERNS: tuple[tuple[str, re.Pattern[str]], ...] = (
    (
        "private-key",
        re.compile(
            r"-----BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY(?: BLOCK)?-----.*?"
            r"(?:-----END (?:[A-Z0-9]+ )*PRIVATE KEY(?: BLOCK)?-----|\Z)",  # an unended block: to the end
            re.DOTALL,
        ),
    ),
    ("anthropic-key", re.compile(r"\bsk-ant-[A-Za-z0-9_-]{20,}")),
    ("openai-key", re.compile(r"\bsk-(?:proj|svcacct|admin)-[A-Za-z0-9_-]{20,}")),
    ("openai-key", re.compile(r"\bsk-[A-Za-z0-9]{32,}\b")),
    ("github-token", re.compile(r"\bgithub_pat_[A-Za-z0-9_]{22,}")),
    # detect-secrets' npm pattern (`//.+/:_authToken=`) takes quadratic time on text with many `//`.
    ("npm-token", re.compile(r"\bnpm_[A-Za-z0-9]{36}\b")),
    ("stripe-key", re.compile(r"\b[rs]k_live_[A-Za-z0-9]{24,}")),
    # An AWS secret key is 40 base64 characters with nothing to mark it but the words before it.
    (
        "aws-secret-key",
        re.compile(
            r"(?i:(?:aws.{0,30}?secret|secret.{0,20}?key).{0,20}?)[\s:=\"']+"
            r"(?<![A-Za-z0-9/+])([A-Za-z0-9/+]{40})(?![A-Za-z0-9/+=])"
        ),
    ),
    # The password of user:password@host in any scheme's URL (postgresql://, redis://, amqp:// …).
    # The scheme is bounded and starts a word, so a long run of letters is not re-scanned from each one.
    ("password", re.compile(r"(?<![a-z0-9+.-])[a-z][a-z0-9+.-]{0,31}://[^\s:/@]+:([^\s@/]+)@", re.IGNORECASE)),
)

PLUGIN_KINDS: tuple[tuple[str, BasePlugin], ...] = (
    ("aws-access-key", AWSKeyDetector()),
    ("github-token", GitHubTokenDetector()),
    ("gitlab-token", GitLabTokenDetector()),
    ("slack-token", SlackDetector()),
    ("stripe-key", StripeDetector()),
    ("openai-key", OpenAIDetector()),
    ("pypi-token", PypiTokenDetector()),
    ("sendgrid-key", SendGridDetector()),
    ("twilio-key", TwilioKeyDetector()),
    ("jwt", JwtTokenDetector()),
    ("password", BasicAuthDetector()),
    ("secret", KeywordDetector()),
)
# Quoted strings only (the plugin's default), base64 charset only, above the plugin's default limit:
# hex strings (git SHAs, checksums) and unquoted words are never high-entropy secrets here.
HIGH_ENTROPY = Base64HighEntropyString(limit=4.5)
HIGH_ENTROPY_MIN_CHARS = 20
QUOTED_KINDS = frozenset({"secret", "high-entropy-string"})
TOKEN_CHARS = re.compile(r"[A-Za-z0-9_-]*")
WINDOW_CHARS = 1000  # the longest stretch of one line a plugin is given
WINDOW_OVERLAP = 300
KEYWORD_WINDOW_CHARS = 240
KEYWORD_WINDOW_OVERLAP = 160


def marker(kind: str) -> str:
    """What replaces a secret of `kind`."""
    return f"[redacted: {kind}]"


@dataclass(frozen=True)
class Redacted:
    """A text with its secrets replaced, and how many were."""

    text: str
    count: int


def _own_spans(text: str) -> Iterable[tuple[int, int, str]]:
    for kind, pattern in OWN_PATTERNS:
        for match in pattern.finditer(text):
            group = 1 if pattern.groups else 0
            yield match.start(group), match.end(group), kind


def _value_spans(text: str, value: str, kind: str) -> Iterable[tuple[int, int, str]]:
    """Every place a value a plugin found stands in the text (plugins return values, not offsets).

    A keyword's or high-entropy value was found in quotes: only its quoted places are taken, so a
    short value (`password = "summer"`) does not take the same word out of the prose around it."""
    start = text.find(value)
    while start >= 0 and value:
        end = start + len(value)
        if kind not in QUOTED_KINDS or (0 < start and end < len(text) and text[start - 1] == text[end] in "\"'"):
            yield start, end, kind
        start = text.find(value, end)


def windows(text: str, size: int, overlap: int) -> list[str]:
    """The text as the line-based plugins can take it: its lines, a long one in overlapping windows.

    Some of detect-secrets' patterns take quadratic time or worse on one long line (its keyword
    pattern on `secretsecret…`), so no plugin sees more than `size` characters at once; a secret
    shorter than `overlap` that one window cuts is whole in the next."""
    out: list[str] = []
    for line in text.splitlines():
        if len(line) <= size:
            out.append(line)
            continue
        out += [line[start : start + size] for start in range(0, len(line) - overlap, size - overlap)]
    return out


def _plugin_spans(text: str) -> Iterable[tuple[int, int, str]]:
    parts = windows(text, WINDOW_CHARS, WINDOW_OVERLAP)
    # The keyword pattern is the slowest on a long line: it reads `key = "value"` in short windows.
    # It only finds an assignment (`=`, `:`), so a window without one is not given to it.
    short = [w for w in windows(text, KEYWORD_WINDOW_CHARS, KEYWORD_WINDOW_OVERLAP) if "=" in w or ":" in w]
    for kind, plugin in PLUGIN_KINDS:
        scanned = short if isinstance(plugin, KeywordDetector) else parts
        for value in {v for part in scanned for v in plugin.analyze_string(part)}:
            for start, end, _ in _value_spans(text, value, kind):
                # A token format matched by its prefix keeps its tail otherwise: take the whole token.
                yield start, end + TOKEN_CHARS.match(text, end).end() - end, kind  # type: ignore[union-attr]
    for value in {v for part in parts for v in HIGH_ENTROPY.analyze_string(part)}:
        if len(value) >= HIGH_ENTROPY_MIN_CHARS and HIGH_ENTROPY.calculate_shannon_entropy(value) > 4.5:
            yield from _value_spans(text, value, "high-entropy-string")


def redact(text: str) -> Redacted:
    """`text` with every credential found replaced by its marker; the words around it are kept."""
    spans = sorted([*_own_spans(text), *_plugin_spans(text)], key=lambda s: (s[0], -s[1]))
    if not spans:
        return Redacted(text, 0)
    out: list[str] = []
    at = count = 0
    for start, end, kind in spans:
        if start < at:  # inside a secret already replaced
            continue
        out += [text[at:start], marker(kind)]
        at = end
        count += 1
    out.append(text[at:])
    return Redacted("".join(out), count)


def redact_memories(items: list[NewMemory]) -> tuple[list[NewMemory], int, int]:
    """The items with their secrets replaced, how many secrets, and how many items were dropped for an error."""
    out = []
    secrets = failed = 0
    for item in items:
        try:
            found = redact(item.content)
        except Exception:  # never store what could not be checked, never fail the caller
            failed += 1
            continue
        secrets += found.count
        out.append(dataclasses.replace(item, content=found.text) if found.count else item)
    return out, secrets, failed


@dataclass
class Redactor:
    """Owns the redaction switch and its counters: secrets replaced, and memories not stored for an error."""

    enabled: bool = True
    redacted: int = 0
    failures: int = 0

    async def memories(self, items: list[NewMemory]) -> list[NewMemory]:
        """The items to store, redacted off the event loop (a chat never waits for it)."""
        if not self.enabled or not items:
            return items
        out, secrets, failed = await asyncio.to_thread(redact_memories, items)
        self.redacted += secrets  # counted on the loop: callers in several threads never race
        self.failures += failed
        return out
