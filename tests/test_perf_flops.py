"""The LoRA training FLOP counter against a hand count, and the profile grouping on the tiny model."""

import pytest
from transformers import LlamaConfig

from tests.perf.flops import SMOLLM2_135M, Arch, batch_flops, forward_flops, lora_step_flops
from tests.perf.profile import GROUPS, profiled
from harness.training import local_train, tokenize_samples

TINY = Arch(hidden=8, intermediate=16, layers=2, heads=2, kv_heads=1, vocab=10, head_dim=4)


def test_hand_count_on_a_tiny_config():
    """One sequence of 3 tokens, 2 of them labelled, LoRA r=1 on q_proj and v_proj."""
    t = 3
    # projections (in, out): q 8x8, k 8x4, v 8x4, o 8x8, gate 8x16, up 8x16, down 16x8
    linear = 2 * t * (64 + 32 + 32 + 64 + 128 + 128 + 128)  # 3456 per layer
    scores = 2 * 6 * 8  # causal pairs 3*4/2 = 6, width heads*head_dim = 8: Q K^T (and P V is as large)
    lora_q = (2 * t * 8 * 1, 2 * t * 1 * 8)  # x A^T, then (x A^T) B^T
    lora_v = (2 * t * 8 * 1, 2 * t * 1 * 4)
    head = 2 * 2 * 8 * 10  # only the 2 labelled positions
    forward = 2 * (linear + 2 * scores + sum(lora_q) + sum(lora_v)) + head
    # backward, layer 0: q/k/v read the frozen embeddings (no input gradient), the rest input gradients only;
    # attention needs dP, dQ, dV (no dK: k_proj has no adapter); adapters: dA (no dx), dB and dz.
    layer0 = 2 * t * (64 + 128 + 128 + 128) + 3 * scores + (lora_q[0] + 2 * lora_q[1]) + (lora_v[0] + 2 * lora_v[1])
    # layer 1: every input gradient, the four attention products, adapters with dx as well.
    layer1 = linear + 4 * scores + 2 * sum(lora_q) + 2 * sum(lora_v)
    backward = layer0 + layer1 + head
    counted = lora_step_flops(TINY, [t], supervised_tokens=2, lora_r=1)
    assert sum(counted.forward.values()) == forward == 7952
    assert sum(counted.backward.values()) == backward == 7712
    assert counted.total == 15664
    assert forward_flops(TINY, [t], logit_tokens=2) == forward - 2 * (sum(lora_q) + sum(lora_v))


def test_frozen_base_makes_training_about_twice_the_forward_pass():
    """Full fine-tuning would be ~3x the forward pass (dW and dx); LoRA is ~2x (dx only)."""
    flops = lora_step_flops(SMOLLM2_135M, [70, 64, 80, 58], supervised_tokens=4 * 70, lora_r=16)
    ratio = flops.total / sum(flops.forward.values())
    assert 1.9 < ratio < 2.05
    assert flops.by_part()["mlp"] > flops.by_part()["attention"] > flops.by_part()["lora"]


def test_arch_from_a_transformers_config():
    config = LlamaConfig(vocab_size=49152, hidden_size=576, intermediate_size=1536, num_hidden_layers=30,
                         num_attention_heads=9, num_key_value_heads=3, head_dim=64)
    assert Arch.from_config(config) == SMOLLM2_135M


def test_batch_flops_counts_real_and_labelled_tokens(tiny_model):
    from harness.data.demo import demo_samples

    ok, _ = demo_samples(3, 0)
    data = tokenize_samples(tiny_model.tokenizer, ok, 64)
    arch = Arch.from_config(tiny_model.model.get_base_model().config)
    lens = [len(x) for x in data.input_ids]
    labelled = sum(int((y[1:] != -100).sum()) for y in data.labels)
    assert batch_flops(arch, data.input_ids, data.labels, [0, 1, 2], 4).total == \
        lora_step_flops(arch, lens, labelled, 4).total


def test_profile_groups_cover_the_step(tiny_model):
    from harness.data.demo import demo_samples

    ok, _ = demo_samples(8, 0)
    data = tokenize_samples(tiny_model.tokenizer, ok, 64)
    start = tiny_model.adapter_state()
    with profiled(tiny_model.model) as groups:
        local_train(tiny_model.model, tiny_model.params, data, list(range(8)), 0, 2, 4, 1e-3, "adamw",
                    tiny_model.tokenizer.pad_token_id)
    tiny_model.load_adapter_state(start)
    assert set(groups) == set(GROUPS)
    for group in ("attention", "mlp", "lm_head+loss", "optimizer", "data"):
        assert groups[group] > 0, groups
    assert groups["other"] < sum(groups.values())


@pytest.mark.parametrize("n", [1, 7])
def test_attention_pairs_are_causal(n):
    one = lora_step_flops(TINY, [n], 0, 1)
    linear_only = sum(2.0 * n * a * b for a, b in map(TINY.projection_shape, ("q_proj", "k_proj", "v_proj", "o_proj")))
    assert one.forward["attention"] == TINY.layers * (linear_only + 4 * (n * (n + 1) // 2) * 8)
