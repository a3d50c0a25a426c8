"""One redaction function for every message and artifact that may carry a secret (judge replies, error text).

It removes ``Authorization: ...`` header values and ``Bearer <token>`` text, and the values of the environment
variables registered with :func:`register_secret_env` (e.g. the judge's ``judge_api_key_env``) or whose name
looks secret (``*KEY*``, ``*TOKEN*``, ``*SECRET*``, ``*PASSWORD*``). The values are read from the environment
at redaction time, never stored.

Where: the engine redacts every hook result's metric names and text artifacts before anything stores them
(checkpoint, MLflow; :func:`redact_result`), the tracker the params and the config it logs, ``harness`` every log
line (:func:`redact_logs`), and error messages are redacted where they are made or reported.
"""

from __future__ import annotations

import logging
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


def redact_name(name: str) -> str:
    """``name`` (a metric or file name) without secrets, marked in characters MLflow accepts in names."""
    return redact(name).replace(REDACTED, REDACTED.strip("[]"))


def redact_result(result) -> None:
    """Remove secrets from a hook result's metric names and its text artifacts (names and contents), in place."""
    _redact_table(result.metrics, lambda value: value)
    _redact_table(getattr(result, "artifacts", {}), redact)


def _redact_table(table: dict, value) -> None:
    redacted = {redact_name(k): value(v) for k, v in table.items()}
    table.clear()
    table.update(redacted)


class RedactingFilter(logging.Filter):
    """Redacts each record a handler emits: its message (arguments merged in), traceback and stack."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # noqa: BLE001 - a call whose arguments do not fit its format still logs, as its parts
            message = f"{record.msg} {record.args}"
        record.msg, record.args = redact(message), None
        if record.exc_info:
            record.exc_text = redact(record.exc_text or logging.Formatter().formatException(record.exc_info))
        if record.stack_info:
            record.stack_info = redact(record.stack_info)
        return True


def redact_logs() -> None:
    """Redact every line the root logger's handlers write from now on (call after configuring logging)."""
    for handler in logging.getLogger().handlers:
        if not any(isinstance(f, RedactingFilter) for f in handler.filters):
            handler.addFilter(RedactingFilter())
