"""Generation batches sized to GPU memory: a batch holds as many sequences as their KV cache, one step's float32
logits and the prefill's transient activations fit in 80 % of the memory free on the device (docs/performance.md,
"Memory plan for one GPU"). On a CPU the requested batch is kept: host memory is not what limits it there."""

from __future__ import annotations

import logging

import torch

log = logging.getLogger(__name__)

SHARE = 0.8  # of the free memory a generation batch may fill; the rest is slack for the allocator and kernels


def kv_bytes_per_token(config, dtype: torch.dtype) -> int:
    """Bytes of keys and values one token adds to the cache across all layers."""
    heads = config.num_attention_heads
    kv_heads = getattr(config, "num_key_value_heads", None) or heads
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // heads
    return 2 * config.num_hidden_layers * kv_heads * head_dim * dtype.itemsize


def sequence_bytes(config, dtype: torch.dtype, prompt_tokens: int, new_tokens: int) -> int:
    """Peak memory one sequence of a generation batch adds: float32 logits and scores of one step, plus the larger
    of the prefill (the prompt's KV cache and one layer's activations, hidden states and the MLP's three
    projections, per prompt token) and the last decoding step (the KV cache of prompt and new tokens)."""
    intermediate = getattr(config, "intermediate_size", 4 * config.hidden_size)
    kv = kv_bytes_per_token(config, dtype)
    prefill = prompt_tokens * (kv + (4 * config.hidden_size + 3 * intermediate) * dtype.itemsize)
    return max(prefill, (prompt_tokens + new_tokens) * kv) + 2 * 4 * config.vocab_size


def free_bytes(device: torch.device) -> int | None:
    """Memory a new allocation can use on a GPU (free on the card + cached by torch but unused); None on a CPU."""
    if device.type != "cuda":
        return None
    free, _ = torch.cuda.mem_get_info(device)
    return free + torch.cuda.memory_reserved(device) - torch.cuda.memory_allocated(device)


def generation_batch(model: torch.nn.Module, requested: int, prompt_tokens: int, new_tokens: int,
                     free: int | None = None) -> int:
    """``requested``, lowered to the number of sequences that fit in ``SHARE`` of ``free`` bytes (default: what
    the model's device has free; on a CPU ``requested`` unchanged). Never below 1."""
    embeddings = model.get_input_embeddings().weight
    free = free_bytes(embeddings.device) if free is None else free
    if free is None:
        return requested
    fits = max(1, int(SHARE * free) // sequence_bytes(model.config, embeddings.dtype, prompt_tokens, new_tokens))
    if fits < requested:
        log.info("generation batch %d -> %d: %.1f GiB free, %d + %d tokens per sequence", requested, fits,
                 free / 2**30, prompt_tokens, new_tokens)
    return min(requested, fits)
