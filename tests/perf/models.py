"""Models for the benchmarks: the embedded ones, plus ``smollm2-arch`` (SmolLM2-135M's shapes, random
weights) for machines without the converted checkpoint; and the device the benchmarks run on."""

from __future__ import annotations

import os
from pathlib import Path

import torch
from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

from harness.config import ModelConfig
from harness.models import cache_dir, load_base, prepare_tokenizer, tiny_tokenizer

SMOLLM2_ARCH = "smollm2-arch"
ENV_MODEL = "HARNESS_BENCH_MODEL"
ENV_TOKENIZER = "HARNESS_BENCH_TOKENIZER"


def bench_model(default: str) -> str:
    """``$HARNESS_BENCH_MODEL`` if set (tiny-random, smollm2-135m, smollm2-arch, a path), else ``default``."""
    return os.environ.get(ENV_MODEL) or default


def bench_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def smollm2_config() -> LlamaConfig:
    """SmolLM2-135M(-Instruct)'s architecture."""
    return LlamaConfig(
        vocab_size=49152, hidden_size=576, intermediate_size=1536, num_hidden_layers=30,
        num_attention_heads=9, num_key_value_heads=3, head_dim=64, max_position_embeddings=8192,
        rms_norm_eps=1e-5, rope_theta=100000.0, tie_word_embeddings=True,
        bos_token_id=1, eos_token_id=2, pad_token_id=2,
    )


def smollm2_tokenizer():
    """SmolLM2's tokenizer where one is on disk ($HARNESS_BENCH_TOKENIZER or the converted cache), else the
    byte-level test tokenizer (sequences then run about 4x longer in tokens)."""
    for place in (os.environ.get(ENV_TOKENIZER), cache_dir() / "smollm2-135m-instruct"):
        if place and (Path(place) / "tokenizer.json").is_file():
            tok = AutoTokenizer.from_pretrained(str(place))
            break
    else:
        tok = tiny_tokenizer()
    return prepare_tokenizer(tok)


def load_bench_base(cfg: ModelConfig, device: torch.device | None = None):
    """Like :func:`harness.models.load_base` (float32, eval mode), plus ``smollm2-arch``; on ``device``."""
    if cfg.name == SMOLLM2_ARCH:
        state = torch.random.get_rng_state()
        torch.manual_seed(0)
        model = LlamaForCausalLM(smollm2_config())
        torch.random.set_rng_state(state)
        model.config.use_cache = False
        model.eval()
        tok = smollm2_tokenizer()
    else:
        model, tok = load_base(cfg)
    return model.to(device or bench_device()), tok
