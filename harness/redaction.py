"""One redaction function for every message and artifact that may carry a secret (judge replies, error text).

It removes ``Authorization: ...`` header values and ``Bearer <token>`` text, and the values of the environment
variables registered with :func:`register_secret_env` (e.g. the judge's ``judge_api_key_env``) or whose name
looks secret (``*KEY*``, ``*TOKEN*``, ``*SECRET*``, ``*PASSWORD*``). The values are read from the environment
at redaction time, never stored.
"""

from __future__ import annotations

import os
import re

REDACTED = "[REDACTED]"
MIN_SECRET_LENGTH = 6  # shorter values ("1", "true") would blank out ordinary text
_SECRET_NAME = re.compile(r"KEY|TOKEN|SECRET|PASSWORD|PASSWD|CREDENTIAL", re.IGNORECASE)
_AUTH_HEADER = re.compile(r"(authorization[\"']?\s*[:=]\s*[\"']?)(?:(?:bearer|basic|token)\s+)?[^\s\"',}]+", re.IGNORECASE)
_BEARER = re.compile(r"\b(bearer\s+)[A-Za-z0-9._~+/=-]+", re.IGNORECASE)
_registered: set[str] = set()


def register_secret_env(name: str) -> None:
    """Redact the value of environment variable ``name`` (wherever it appears) from now on."""
    _registered.add(name)


def _secret_values() -> list[str]:
    names = _registered | {n for n in os.environ if _SECRET_NAME.search(n)}
    values = {os.environ.get(n, "") for n in names}
    return sorted((v for v in values if len(v) >= MIN_SECRET_LENGTH), key=len, reverse=True)


def redact(text: str) -> str:
    """``text`` without secrets: known secret values, Authorization header values and bearer tokens."""
    if not text:
        return text
    for value in _secret_values():
        text = text.replace(value, REDACTED)
    text = _AUTH_HEADER.sub(lambda m: m.group(1) + REDACTED, text)
    return _BEARER.sub(lambda m: m.group(1) + REDACTED, text)
