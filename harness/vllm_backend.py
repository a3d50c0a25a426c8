"""vLLM generation backend (``model.generation_backend: vllm``, extra ``[vllm]``, CUDA GPU).

Greedy completions from a vLLM engine over the same base weights, with the current LoRA adapter passed per
call as a ``LoRARequest``: the adapter is saved with peft's ``save_pretrained`` (what vLLM loads) under a new
id each call, so an adapter changed by training or aggregation is never served from vLLM's LoRA cache.
"""

from __future__ import annotations

import importlib.util
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path

import torch

from harness.config import ModelConfig

LORA_RANKS = (8, 16, 32, 64, 128, 256, 320, 512)
"""The ``max_lora_rank`` values vLLM accepts; the adapter's rank is rounded up to one (smaller ranks fit)."""
MAX_MODEL_LEN = 4096
"""vLLM's context (prompt + completion): prompts are cut from the left to fit it, as the HF path cuts them."""


class VllmUnavailableError(RuntimeError):
    """``generation_backend: vllm`` was asked for where vLLM or a GPU is missing, or the model cannot be served."""


def check_available() -> None:
    """Raise :class:`VllmUnavailableError` where vLLM or a CUDA GPU is missing (checked when the model loads)."""
    if importlib.util.find_spec("vllm") is None:
        raise VllmUnavailableError("model.generation_backend=vllm needs vLLM: pip install 'fedllm-harness[vllm]'")
    if not torch.cuda.is_available():
        raise VllmUnavailableError("model.generation_backend=vllm needs a CUDA GPU; torch sees none (use hf)")


class VllmGenerator:
    """One vLLM engine for a run's base model (LoRA enabled, rank ``cfg.lora_r``)."""

    def __init__(self, cfg: ModelConfig, base_location: str, dtype: torch.dtype):
        check_available()
        from vllm import LLM

        rank = next(r for r in LORA_RANKS if r >= cfg.lora_r)
        self.llm = LLM(model=base_location, dtype=str(dtype).removeprefix("torch."), enable_lora=True,
                       max_lora_rank=rank, max_loras=1, max_model_len=MAX_MODEL_LEN, seed=0,
                       gpu_memory_utilization=cfg.vllm_gpu_memory, trust_remote_code=cfg.trust_remote_code)
        self.workdir = Path(tempfile.mkdtemp(prefix="harness-vllm-"))
        self.calls = 0

    def generate(self, peft_model, tokenizer, prompts: Sequence[str], max_new_tokens: int, max_prompt_length: int,
                 with_adapter: bool = True) -> list[str]:
        """Greedy completions of templated ``prompts`` (the adapter's unless ``with_adapter`` is False)."""
        from vllm import SamplingParams
        from vllm.lora.request import LoRARequest

        self.calls += 1
        request = None
        if with_adapter:
            path = self.workdir / f"adapter-{self.calls}"
            peft_model.save_pretrained(str(path), safe_serialization=True)
            request = LoRARequest(f"adapter-{self.calls}", self.calls, str(path))
        limit = min(max_prompt_length, MAX_MODEL_LEN - max_new_tokens)
        side = tokenizer.truncation_side
        tokenizer.truncation_side = "left"
        try:
            ids = tokenizer(list(prompts), add_special_tokens=False, truncation=True, max_length=limit)["input_ids"]
        finally:
            tokenizer.truncation_side = side
        params = SamplingParams(temperature=0.0, max_tokens=max_new_tokens, skip_special_tokens=True)
        outputs = self.llm.generate([{"prompt_token_ids": row} for row in ids], params, lora_request=request,
                                    use_tqdm=False)
        if with_adapter:
            shutil.rmtree(path, ignore_errors=True)  # vLLM has loaded it
        return [out.outputs[0].text for out in outputs]
