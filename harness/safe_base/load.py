"""The shipped safe bases: a safety adapter (package data) merged once into its base, cached like the GGUF.

``smollm2-135m-safe`` is SmolLM2-135M-Instruct with the adapter in ``harness/safe_base/smollm2-135m-safe/``
(made by ``harness safety-tune``; recipe and measurements in that folder's README) merged in float32.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path

SAFE_BASES = {"smollm2-135m-safe": "smollm2-135m"}  # harness.models.SMOLLM2_SAFE -> SMOLLM2
"""Shipped safe base name -> the base model name its adapter was trained on."""


def adapter_dir(name: str) -> Path:
    return Path(__file__).parent / name


def merged_path(name: str) -> Path:
    """A float32 checkpoint of base + adapter under the cache dir, built on first use (keyed by the adapter's bytes)."""
    import torch
    from peft import PeftModel

    from harness.config import ModelConfig
    from harness.models import cache_dir, load_base

    adapter = adapter_dir(name) / "adapter_model.safetensors"
    if not adapter.is_file():
        from harness.models import ModelLoadError

        raise ModelLoadError(f"{name}: its adapter {adapter} is missing from the installation")
    key = hashlib.sha256(adapter.read_bytes()).hexdigest()[:12]
    target = cache_dir() / f"{name}-{key}"
    if (target / "config.json").is_file() and (target / "model.safetensors").is_file():
        return target
    model, tokenizer = load_base(ModelConfig(name=SAFE_BASES[name], device="cpu", dtype="float32"))
    merged = PeftModel.from_pretrained(model, adapter_dir(name), torch_dtype=torch.float32).merge_and_unload()
    merged.to(torch.float32)
    partial = target.with_name(f"{target.name}.partial-{os.getpid()}")  # runs starting together each write their own
    shutil.rmtree(partial, ignore_errors=True)
    merged.save_pretrained(partial)
    tokenizer.save_pretrained(partial)
    try:
        partial.rename(target)
    except OSError:  # another process finished first: its copy is the same bytes
        shutil.rmtree(partial, ignore_errors=True)
    return target


def base_prompt_set(name: str):
    """The safe base's training prompts as role ``base`` (for the overlap check of docs/data.md); None for
    other models."""
    if name not in SAFE_BASES:
        return None
    from harness.data.overlap import DIGEST_FILE, digest_file_set

    return digest_file_set("base", f"safe base {name}", adapter_dir(name) / DIGEST_FILE)
