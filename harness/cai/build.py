"""Batched, resumable, cached CAI data build: three turns per red-teaming prompt with the current model.

A build lives in ``out_root/<key>/`` where the key hashes the model's weights (and adapter,
unless the pretrained base is used), the prompts, the constitution and the generation
settings. Records are appended chunk by chunk to ``cai.jsonl.partial``; a rerun resumes
after the last finished chunk, and a finished build is returned without generating.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Sequence
from contextlib import nullcontext
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from harness.cai.constitution import Principle
from harness.cai.dataset import META_FILE, RECORDS_FILE, CaiDataset, CaiRecord, read_records, record_line
from harness.cai.turns import critique_turn, principle_for, red_turn, revision_turn
from harness.model_handle import GlobalModel

PARTIAL_FILE = RECORDS_FILE + ".partial"
GENERATION_MAX_LENGTH = 1024  # prompt tokens allowed while generating (turn 3 carries turns 1-2)


@dataclass(frozen=True)
class BuildSettings:
    """How the three turns are generated (part of the cache key)."""

    max_new_tokens: int = 64
    batch_size: int = 8
    base_only: bool = False  # generate with the pretrained base instead of base + current adapter

    def __post_init__(self):
        if self.max_new_tokens < 1 or self.batch_size < 1:
            raise ValueError(f"max_new_tokens and batch_size must be >= 1, got {self.max_new_tokens}, {self.batch_size}")


def model_fingerprint(model: GlobalModel, base_only: bool) -> str:
    """Hash of the model's name, input embeddings and (unless ``base_only``) the current adapter."""
    h = hashlib.sha256(str(getattr(model.model.config, "_name_or_path", "")).encode())
    h.update(model.model.get_input_embeddings().weight.detach().cpu().float().numpy().tobytes())
    if not base_only:
        for name, tensor in model.adapter_state().items():
            h.update(name.encode())
            h.update(tensor.float().numpy().tobytes())
    return h.hexdigest()


def build_key(model: GlobalModel, prompts: Sequence[str], principles: Sequence[Principle], settings: BuildSettings) -> str:
    payload = {
        "model": model_fingerprint(model, settings.base_only),
        "prompts": list(prompts),
        "constitution": [asdict(p) for p in principles],
        "max_new_tokens": settings.max_new_tokens,
        "base_only": settings.base_only,
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:16]


def build_cai_dataset(
    model: GlobalModel,
    prompts: Sequence[str],
    principles: Sequence[Principle],
    out_root: str | Path,
    settings: BuildSettings = BuildSettings(),
    on_chunk: Callable[[int, int], None] | None = None,
) -> CaiDataset:
    """Run (or resume, or reuse) the build; ``on_chunk(done, total)`` reports progress."""
    if not prompts:
        raise ValueError("the CAI build needs at least one red-teaming prompt")
    if not principles:
        raise ValueError("the CAI build needs at least one constitution principle")
    out = Path(out_root) / build_key(model, prompts, principles, settings)
    if (out / RECORDS_FILE).is_file():
        return CaiDataset.load(out)
    out.mkdir(parents=True, exist_ok=True)
    partial = out / PARTIAL_FILE
    done = read_records(partial, strict=False) if partial.is_file() else []
    with partial.open("w", encoding="utf-8") as fh:  # rewrite without a torn last line, then append
        fh.writelines(record_line(r) for r in done)
    generator = GlobalModel(model.model, model.tokenizer, max(model.max_length, GENERATION_MAX_LENGTH))
    for start in range(len(done), len(prompts), settings.batch_size):
        chunk = [(i, prompts[i]) for i in range(start, min(start + settings.batch_size, len(prompts)))]
        records = _three_turns(generator, chunk, principles, settings)
        with partial.open("a", encoding="utf-8") as fh:
            fh.writelines(record_line(r) for r in records)
            fh.flush()
            os.fsync(fh.fileno())
        if on_chunk is not None:
            on_chunk(start + len(chunk), len(prompts))
    meta = {"prompts": len(prompts), "principles": len(principles), **asdict(settings)}
    (out / META_FILE).write_text(json.dumps(meta, indent=2))
    os.replace(partial, out / RECORDS_FILE)
    return CaiDataset.load(out)


def _three_turns(
    model: GlobalModel, chunk: list[tuple[int, str]], principles: Sequence[Principle], settings: BuildSettings
) -> list[CaiRecord]:
    chat, n, bs = model.chat_prompt, settings.max_new_tokens, settings.batch_size
    chosen = [principle_for(i, principles) for i, _ in chunk]
    prompts = [p for _, p in chunk]
    with model.base_only() if settings.base_only else nullcontext(), torch.no_grad():
        reds = model.generate([red_turn(chat, p) for p in prompts], n, bs)
        critiques = model.generate([critique_turn(chat, p, r, c) for p, r, c in zip(prompts, reds, chosen)], n, bs)
        revisions = model.generate(
            [revision_turn(chat, p, r, c, k) for p, r, c, k in zip(prompts, reds, chosen, critiques)], n, bs
        )
    return [
        CaiRecord(p, c.id, r.strip(), k.strip(), v.strip())
        for p, c, r, k, v in zip(prompts, chosen, reds, critiques, revisions)
    ]
