"""#38 item 3: the memory plan's measurements (tests/perf/memory_plan.py): exact 8B parameter count on the meta
device, and saved-activation bytes linear in batch and in sequence length (the extrapolation's premise)."""

from __future__ import annotations

import torch

from tests.perf import memory_plan as mp
from tests.perf.model_configs import LLAMA_31_8B

SMALL = {"hidden_size": 256, "intermediate_size": 896, "num_attention_heads": 2, "num_key_value_heads": 1,
         "num_hidden_layers": 2, "vocab_size": 4096}


def test_meta_parameter_count_of_the_8b_config():
    split = mp.weight_split(mp.llama(LLAMA_31_8B))
    assert split["total"] == 8_030_261_248
    assert split["lora"] == 32 * 16 * ((4096 + 4096) + (4096 + 1024))  # r16 on q_proj (4096->4096), v_proj (->1024)
    assert mp.weight_bytes(split, "bf16", training=False) == 2 * 8_030_261_248
    assert abs(mp.NF4_BYTES * 8 - 4.127) < 1e-3  # QLoRA: 4 + 8/64 + 32/(64*256) bits


def test_saved_activations_scale_linearly_with_batch_and_sequence():
    torch.manual_seed(0)
    model = mp.lora_model(LLAMA_31_8B, **SMALL)
    s = {(b, n): mp.saved_bytes(model, b, n) for b, n in ((1, 32), (2, 32), (3, 32), (1, 64), (1, 96), (4, 64))}
    # affine in batch and in sequence: equal steps (the extrapolation uses the per-token slope)
    assert s[(2, 32)] - s[(1, 32)] == s[(3, 32)] - s[(2, 32)] > 0
    assert s[(1, 64)] - s[(1, 32)] == s[(1, 96)] - s[(1, 64)] > 0
    # what does not scale with batch x sequence (RoPE cos/sin: one row per position, shared by the batch) is < 2 %
    assert abs(s[(4, 64)] - 8 * s[(1, 32)]) < 0.02 * s[(4, 64)]
    three = mp.lora_model(LLAMA_31_8B, **{**SMALL, "num_hidden_layers": 3})
    four = mp.lora_model(LLAMA_31_8B, **{**SMALL, "num_hidden_layers": 4})
    assert mp.saved_bytes(four, 1, 32) - mp.saved_bytes(three, 1, 32) == mp.saved_bytes(three, 1, 32) - s[(1, 32)]
