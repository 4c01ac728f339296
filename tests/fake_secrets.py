"""Fake credentials of each kind the proxy must never store, with random bodies made at run time.

Prefixes are split by concatenation so nothing in the repository looks like a real key."""

from __future__ import annotations

import secrets
import string

ALNUM = string.ascii_letters + string.digits
UPPER = string.ascii_uppercase + string.digits
LOWER = string.ascii_lowercase + string.digits
BASE64 = ALNUM + "+/"


def rand(n: int, chars: str = ALNUM) -> str:
    """n random characters of `chars`."""
    return "".join(secrets.choice(chars) for _ in range(n))


def credentials() -> dict[str, tuple[str, str]]:
    """Kind -> (a sentence pasting a fresh credential, the secret part that must never be stored)."""
    openai = "sk-" + "proj-" + rand(40, ALNUM + "_-")
    anthropic = "sk-" + "ant-" + "api03-" + rand(40, ALNUM + "_-")
    akid = "AK" + "IA" + rand(16, UPPER)
    aws_secret = rand(40, BASE64)
    github = "gh" + "p_" + rand(36)
    slack = "xo" + "xb-" + rand(12, string.digits) + "-" + rand(13, string.digits) + "-" + rand(24, LOWER)
    stripe = "sk" + "_live_" + rand(24)
    password = rand(18)
    body = [rand(64, BASE64) for _ in range(4)]
    pem = "-----BEGIN OPENSSH PRIVATE KEY-----\n" + "\n".join(body) + "\n-----END OPENSSH PRIVATE KEY-----"
    return {
        "openai-key": (f"my key is {openai}", openai),
        "anthropic-key": (f"use the key {anthropic}", anthropic),
        "aws-access-key": (f"the access key id is {akid}", akid),
        "aws-secret-key": (f"aws secret access key: {aws_secret}", aws_secret),
        "github-token": (f"the token is {github}", github),
        "slack-token": (f"bot token {slack}", slack),
        "stripe-key": (f"stripe key {stripe}", stripe),
        "password": (f"DATABASE_URL=postgresql://app:{password}@db.internal:5432/prod", password),
        "private-key": (f"here is my deploy key:\n{pem}\nthanks", body[1]),
    }
