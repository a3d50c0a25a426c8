"""LLM judges for MT-Bench: any OpenAI-compatible endpoint (vLLM, hosted APIs) or a local HF model.

A judge answers a batch of (system prompt, user prompt) requests with one text each, or with
the exception that request ended in; the caller counts failures instead of dropping them.
API keys are read from an environment variable at call time and never stored or logged; every error message
built here goes through :func:`harness.redaction.redact` (a server may echo the Authorization header back).
"""

from __future__ import annotations

import json
import os
import re
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Protocol

from harness.redaction import redact, register_secret_env

JudgeRequest = tuple[str, str]  # (system prompt, user prompt)

# FastChat's llm_judge/common.py: "[[rating]]", falling back to "[rating]".
_RATING = re.compile(r"\[\[(\d+\.?\d*)\]\]")
_RATING_BACKUP = re.compile(r"\[(\d+\.?\d*)\]")
RATING_RANGE = (1.0, 10.0)


class JudgeError(RuntimeError):
    """The judge cannot be used (bad URL, rejected key, unknown model); the message says which (redacted)."""

    def __init__(self, message: str):
        super().__init__(redact(message))


@dataclass(frozen=True)
class Rating:
    """A parsed judgment: ``value`` is None when no rating was found or it lies outside 1..10."""

    value: float | None
    status: str  # "ok" | "unparseable" | "out_of_range"


def parse_rating(judgment: str) -> Rating:
    """The ``[[rating]]`` of a FastChat single-answer judgment, checked against the 1-10 scale."""
    match = _RATING.search(judgment) or _RATING_BACKUP.search(judgment)
    if match is None:
        return Rating(None, "unparseable")
    value = float(match.group(1))
    low, high = RATING_RANGE
    if not low <= value <= high:
        return Rating(None, "out_of_range")
    return Rating(value, "ok")


class Judge(Protocol):
    def judge(self, requests: Sequence[JudgeRequest]) -> list[str | Exception]: ...


class OpenAIJudge:
    """Chat completions at ``url`` (``http://host:8000/v1`` or the full ``.../chat/completions``)."""

    def __init__(self, url: str, model: str, api_key_env: str | None = None, max_tokens: int = 2048,
                 workers: int = 8, timeout: float = 120.0, retries: int = 3):
        if not url.startswith(("http://", "https://")):
            raise ValueError(f"judge_url must start with http:// or https://, got {url!r}")
        if not model:
            raise ValueError("an OpenAI-compatible judge needs judge_model (the model name the endpoint serves)")
        if api_key_env is not None and not os.environ.get(api_key_env):
            raise ValueError(f"judge_api_key_env names {api_key_env}, but that environment variable is not set")
        if api_key_env is not None:
            register_secret_env(api_key_env)  # its value is redacted from every error message and artifact
        url = url.rstrip("/")
        self.endpoint = url if url.endswith("/chat/completions") else f"{url}/chat/completions"
        self.model, self.api_key_env = model, api_key_env
        self.max_tokens, self.workers, self.timeout, self.retries = max_tokens, workers, timeout, retries

    def __repr__(self) -> str:
        return f"OpenAIJudge({self.endpoint!r}, model={self.model!r}, key_env={self.api_key_env!r})"

    def judge(self, requests: Sequence[JudgeRequest]) -> list[str | Exception]:
        with ThreadPoolExecutor(max_workers=self.workers) as pool:
            return list(pool.map(self._safe_complete, requests))

    def _safe_complete(self, request: JudgeRequest) -> str | Exception:
        try:
            return self.complete(*request)
        except JudgeError:
            raise
        except Exception as exc:  # noqa: BLE001 - a transient failure of one request is reported, not fatal
            text = str(exc)
            return exc if redact(text) == text else RuntimeError(f"{type(exc).__name__}: {redact(text)}")

    def complete(self, system: str, user: str) -> str:
        body = json.dumps({
            "model": self.model,
            "messages": [{"role": "system", "content": system}, {"role": "user", "content": user}],
            "temperature": 0,
            "max_tokens": self.max_tokens,
        }).encode()
        headers = {"Content-Type": "application/json"}
        if self.api_key_env is not None:
            headers["Authorization"] = f"Bearer {os.environ[self.api_key_env]}"
        for attempt in range(self.retries):
            try:
                req = urllib.request.Request(self.endpoint, data=body, headers=headers, method="POST")
                with urllib.request.urlopen(req, timeout=self.timeout) as resp:
                    payload = json.loads(resp.read())
                return payload["choices"][0]["message"]["content"]
            except urllib.error.HTTPError as exc:
                if 400 <= exc.code < 500 and exc.code != 429:
                    detail = exc.read().decode(errors="replace")[:300]
                    raise JudgeError(f"judge {self.endpoint} rejected the request (HTTP {exc.code}): {detail}") from exc
                error: Exception = exc
            except (urllib.error.URLError, TimeoutError, ConnectionError) as exc:
                error = exc
            except (KeyError, IndexError, TypeError, json.JSONDecodeError) as exc:
                raise JudgeError(f"judge {self.endpoint} did not answer in the chat-completions format: {exc!r}") from exc
            time.sleep(min(2**attempt, 10) * 0.5)
        raise RuntimeError(redact(f"judge {self.endpoint} failed {self.retries} times: {error}"))


class HFJudge:
    """A local causal LM (hub id, path, smollm2-135m or tiny-random) judging with greedy decoding."""

    def __init__(self, model_name: str, max_tokens: int = 512, max_prompt_length: int = 4096, batch_size: int = 4):
        from harness.config import ModelConfig
        from harness.model_handle import GlobalModel
        from harness.models import load_base

        model, tokenizer = load_base(ModelConfig(name=model_name, max_length=max_prompt_length))
        self.name = model_name
        self.handle = GlobalModel(model, tokenizer, max_prompt_length)  # no adapter: every weight is "current"
        self.max_tokens, self.batch_size = max_tokens, batch_size

    def __repr__(self) -> str:
        return f"HFJudge({self.name!r})"

    def judge(self, requests: Sequence[JudgeRequest]) -> list[str | Exception]:
        tok = self.handle.tokenizer
        prompts = [
            tok.apply_chat_template(
                [{"role": "system", "content": system}, {"role": "user", "content": user}],
                tokenize=False, add_generation_prompt=True,
            )
            for system, user in requests
        ]
        return list(self.handle.generate(prompts, max_new_tokens=self.max_tokens, batch_size=self.batch_size))
