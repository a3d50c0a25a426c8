"""The shipped safe bases: a safety adapter (package data) per base, and the prompts it was trained on.

``smollm2-135m-safe`` is SmolLM2-135M-Instruct with the adapter in ``harness/safe_base/smollm2-135m-safe/``
(made by ``harness safety-tune``; recipe and measurements in docs/safe-base.md), merged in float32 by
:func:`harness.models.merged_safe_base`.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

SAFE_BASES = {"smollm2-135m-safe": "smollm2-135m"}  # harness.models.SMOLLM2_SAFE -> SMOLLM2
"""Shipped safe base name -> the base model name its adapter was trained on."""


def adapter_dir(name: str) -> Path:
    return Path(__file__).parent / name


def adapter_digest(name: str) -> str | None:
    """The first 12 hex digits of the sha256 of a shipped safe base's adapter weights (which safety tuning the
    name stands for: a re-tuned adapter ships under the same name); None for other models or a missing adapter."""
    adapter = adapter_dir(name) / "adapter_model.safetensors"
    if name not in SAFE_BASES or not adapter.is_file():
        return None
    return hashlib.sha256(adapter.read_bytes()).hexdigest()[:12]


def base_prompt_set(name: str):
    """The safe base's training prompts as role ``base`` (for the overlap check of docs/data.md); None for
    other models."""
    if name not in SAFE_BASES:
        return None
    from harness.data.overlap import DIGEST_FILE, digest_file_set

    return digest_file_set("base", f"safe base {name}", adapter_dir(name) / DIGEST_FILE)
