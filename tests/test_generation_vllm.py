"""The vLLM generation backend against HF ``generate``: greedy outputs on a fixed prompt set, with a LoRA adapter.

Tolerance (both in bfloat16): each completion's tokens agree with HF's for the first ``PREFIX`` tokens (or all
of the shorter one), and most completions agree exactly. vLLM's kernels sum in another order than HF's, so a
near-tie between the top two tokens can flip a greedy choice; after it the texts diverge.
"""

from __future__ import annotations

import importlib.util

import pytest
import torch

from harness.config import ModelConfig
from harness.model_handle import GlobalModel
from harness.models import SMOLLM2, ModelLoadError, attach_lora, load_base

PROMPTS = ["Name three primary colours.", "What is the capital of France?", "Write a haiku about rain.",
           "Explain photosynthesis in one sentence.", "How do I boil an egg?", "Count from one to ten.",
           "Give me a synonym for happy.", "What does a compiler do?"]
PREFIX = 16
NEEDS = "vLLM backend needs vllm and a CUDA GPU"


@pytest.mark.skipif(importlib.util.find_spec("vllm") is None or not torch.cuda.is_available(), reason=NEEDS)
def test_vllm_greedy_outputs_agree_with_hf_generate():
    cfg = ModelConfig(name=SMOLLM2, dtype="bfloat16", lora_r=8, lora_alpha=16, generation_backend="vllm")
    try:
        base, tok = load_base(cfg)
    except ModelLoadError as exc:
        pytest.skip(f"SmolLM2 is not available here: {exc}")
    model = attach_lora(base, cfg, seed=0)
    torch.manual_seed(0)
    for name, p in model.named_parameters():
        if "lora_B" in name:
            p.data.normal_(0, 0.02)  # an adapter that changes the outputs
    handle = GlobalModel(model, tok, 512)
    prompts = [handle.chat_prompt(p) for p in PROMPTS]
    fast = handle.generate(prompts, max_new_tokens=48)
    with handle.base_only():
        fast_base = handle.generate(prompts, max_new_tokens=48)
    model.harness_model_config = ModelConfig(name=SMOLLM2)  # the same handle on the HF path
    slow = handle.generate(prompts, max_new_tokens=48)
    assert fast != fast_base  # the adapter was applied
    exact = 0
    for a, b in zip(fast, slow):
        x, y = tok(a, add_special_tokens=False)["input_ids"], tok(b, add_special_tokens=False)["input_ids"]
        n = min(PREFIX, len(x), len(y))
        assert x[:n] == y[:n], (a, b)
        exact += a == b
    assert exact >= 0.75 * len(PROMPTS), list(zip(fast, slow))


def test_vllm_backend_without_its_hardware_fails_when_the_model_loads():
    if importlib.util.find_spec("vllm") is not None and torch.cuda.is_available():
        pytest.skip("checks the error where vLLM or the GPU is missing")
    with pytest.raises(ModelLoadError, match="generation_backend=vllm needs (vLLM|a CUDA GPU)"):
        load_base(ModelConfig(name=SMOLLM2, generation_backend="vllm"))
