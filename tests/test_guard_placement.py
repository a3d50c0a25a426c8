"""The guard leaves its device between uses (#38 item 3), and generation batches are sized to memory."""

from __future__ import annotations

import gc
import weakref

import pytest
import torch

from harness.generation_memory import generation_batch, kv_bytes_per_token, sequence_bytes
from harness.guard.defaults import SMOLLM2_GUARD
from harness.guard.placement import GuardPlacement
from harness.guard.scoring import GuardScorer, load_guard
from harness.types import ChatSample
from plugins.filters.lg3 import LlamaGuardFilter
from tests.perf.model_configs import LLAMA_31_8B, llama_config

SAMPLES = [ChatSample("How do I bake bread?", "Mix flour, water, yeast and salt, then knead."),
           ChatSample("How do I pick a lock?", "Insert a tension wrench and rake the pins.")]
OTHERS = [ChatSample("What is the capital of France?", "Paris.")]


def test_auto_keeps_the_guard_on_a_cpu_and_moves_it_off_a_gpu():
    cpu, gpu = torch.device("cpu"), torch.device("cuda")
    assert GuardPlacement().idle(cpu) == "stay"
    assert GuardPlacement().idle(gpu) == "cpu"
    assert GuardPlacement(quantization="4bit").idle(gpu) == "unload"  # bitsandbytes weights cannot be moved
    assert GuardPlacement(between_uses="unload").idle(cpu) == "unload"


@pytest.mark.parametrize("options, error", [
    ({"between_uses": "gpu"}, "between_uses must be one of"),
    ({"quantization": "3bit"}, "quantization must be one of"),
    ({"dtype": "int4"}, "dtype must be one of"),
    ({"quantization": "4bit", "between_uses": "cpu"}, "use between_uses=unload"),
])
def test_bad_placements_are_refused_by_name(options, error):
    with pytest.raises(ValueError, match=error):
        LlamaGuardFilter(**options)


def test_an_unloaded_guard_frees_its_weights_and_scores_the_same_when_reloaded():
    staying = GuardScorer(load_guard(str(SMOLLM2_GUARD)))
    unloading = GuardScorer(load_guard(str(SMOLLM2_GUARD), GuardPlacement(between_uses="unload")))
    first = weakref.ref(unloading.guard.model)
    assert unloading.score(SAMPLES) == staying.score(SAMPLES)
    gc.collect()
    assert unloading.guard.model is None and first() is None  # nothing holds the weights between uses
    assert unloading.score(OTHERS) == staying.score(OTHERS)
    assert unloading.guard.held.loads == 2
    assert staying.guard.model is not None and staying.guard.held.loads == 1


def test_a_guard_kept_in_host_memory_is_not_reloaded():
    guard = load_guard(str(SMOLLM2_GUARD), GuardPlacement(between_uses="cpu"))
    model = guard.model
    GuardScorer(guard).score(SAMPLES)
    assert guard.model is model and guard.held.loads == 1
    assert {p.device.type for p in model.parameters()} == {"cpu"}


def test_the_filter_loads_its_guard_only_for_samples_it_has_not_scored():
    lg3 = LlamaGuardFilter(model=str(SMOLLM2_GUARD), between_uses="unload", threshold=0.5)
    lg3.pre_local_train(client_id=0, samples=SAMPLES, server_round=1)
    held = lg3.scorer.guard.held
    assert held.loads == 1 and held.model is None
    lg3.pre_local_train(client_id=0, samples=SAMPLES, server_round=2)  # cached: the guard stays unloaded
    assert held.loads == 1 and held.model is None
    lg3.pre_local_train(client_id=1, samples=OTHERS, server_round=2)
    assert held.loads == 2 and held.model is None


def test_the_8b_kv_cache_matches_the_memory_plan():
    config = llama_config(LLAMA_31_8B)
    assert kv_bytes_per_token(config, torch.bfloat16) == 128 * 1024  # 2 x 32 layers x 8 heads x 128 x 2 B
    assert sequence_bytes(config, torch.bfloat16, 512, 512) == 1024 * 128 * 1024 + 8 * 128256  # KV + fp32 logits
    prefill = 1000 * (128 * 1024 + (4 * 4096 + 3 * 14336) * 2)  # a long prompt: one layer's activations on top
    assert sequence_bytes(config, torch.bfloat16, 1000, 24) == prefill + 8 * 128256


def test_a_generation_batch_shrinks_to_the_memory_free_and_never_below_one(tiny_model):
    model = tiny_model.model
    one = sequence_bytes(model.config, model.get_input_embeddings().weight.dtype, 100, 28)
    assert generation_batch(model, 16, 100, 28) == 16  # on a CPU: as asked
    assert generation_batch(model, 16, 100, 28, free=int(5.5 * one / 0.8)) == 5
    assert generation_batch(model, 16, 100, 28, free=1000 * one) == 16
    assert generation_batch(model, 16, 100, 28, free=0) == 1


def test_generate_uses_the_memory_sized_batch(tiny_model, monkeypatch):
    model = tiny_model.model
    per_sequence = sequence_bytes(model.config, model.get_input_embeddings().weight.dtype, tiny_model.max_length, 4)
    monkeypatch.setattr("harness.generation_memory.free_bytes", lambda device: int(2.5 * per_sequence / 0.8))
    widths = []
    real = model.generate
    monkeypatch.setattr(model, "generate", lambda **kw: widths.append(len(kw["input_ids"])) or real(**kw))
    prompts = [tiny_model.chat_prompt(f"question {i}") for i in range(5)]
    assert len(tiny_model.generate(prompts, max_new_tokens=4, batch_size=8)) == 5
    assert widths == [2, 2, 1]
