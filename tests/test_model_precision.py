"""Base precision and k-bit loading: dtype choice, quantisation errors, adapters the same across settings."""

from __future__ import annotations

import importlib.util
import json

import pytest
import torch
from peft import PeftModel
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM

from harness.adapters import trainable_params
from harness.config import ModelConfig
from harness.models import ModelLoadError, attach_lora, load_base, resolve_dtype, tiny_random_model, tiny_tokenizer

HAS_BNB_GPU = importlib.util.find_spec("bitsandbytes") is not None and torch.cuda.is_available()


@pytest.fixture(scope="module")
def saved_base(tmp_path_factory):
    """tiny-random saved as a local checkpoint, so it loads by path like a hub model."""
    path = tmp_path_factory.mktemp("base") / "tiny-llama"
    tokenizer = tiny_tokenizer()
    tiny_random_model(len(tokenizer)).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return str(path)


def test_auto_dtype_is_bf16_where_the_hardware_computes_it(monkeypatch):
    from harness import models

    monkeypatch.setattr(models, "cpu_has_native_bf16", lambda: True)  # AVX512-BF16 / AMX: bf16 is faster
    assert resolve_dtype("auto", torch.device("cpu"), "smollm2-135m") == torch.bfloat16
    assert resolve_dtype("auto", torch.device("cpu"), "tiny-random") == torch.float32  # slower in bf16
    monkeypatch.setattr(models, "cpu_has_native_bf16", lambda: False)  # AVX2: bf16 is many times slower
    assert resolve_dtype("auto", torch.device("cpu"), "smollm2-135m") == torch.float32
    assert resolve_dtype("float16", torch.device("cpu")) == torch.float16
    if torch.cuda.is_available():
        expected = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float32
        assert resolve_dtype("auto", torch.device("cuda")) == expected


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_the_lm_head_gets_a_contiguous_input_when_only_the_last_logits_are_kept(dtype):
    """``logits_to_keep`` slices the hidden states; on a CPU a non-contiguous slice runs the head as a batched
    matmul that copies the head's weight once per row (pytorch/pytorch#151934), so load_base hands it a copy."""
    model, _ = load_base(ModelConfig(name="tiny-random", dtype=dtype))
    seen: list[bool] = []
    model.get_output_embeddings().register_forward_hook(lambda _m, args, _out: seen.append(args[0].is_contiguous()))
    ids = torch.randint(0, 100, (3, 7))
    with torch.no_grad():
        kept = model(input_ids=ids, logits_to_keep=2).logits
        full = model(input_ids=ids).logits[:, -2:]
    assert seen == [True, True]
    torch.testing.assert_close(kept, full)


@pytest.mark.parametrize("setting", [{"dtype": "bfloat16"}, {"dtype": "float16"}, {"gradient_checkpointing": True},
                                     pytest.param({"quantization": "4bit"}, marks=pytest.mark.skipif(
                                         not HAS_BNB_GPU, reason="4-bit loading needs bitsandbytes and a CUDA GPU"))])
def test_adapters_are_the_same_across_settings_and_load_with_plain_peft(saved_base, tmp_path, setting):
    reference = attach_lora(load_base(ModelConfig(name=saved_base, device="cpu"))[0], ModelConfig(name=saved_base), 0)
    cfg = ModelConfig(name=saved_base, **setting)
    model = attach_lora(load_base(cfg)[0], cfg, 0)
    ref_params, params = trainable_params(reference), trainable_params(model)
    assert {k: (p.shape, p.dtype) for k, p in params.items()} == {k: (p.shape, p.dtype) for k, p in ref_params.items()}
    assert {p.dtype for p in params.values()} == {torch.float32}
    for p in params.values():
        p.data.add_(0.01)  # a trained adapter (B starts at zero)
    model.save_pretrained(tmp_path / "adapter")
    assert json.loads((tmp_path / "adapter" / "adapter_config.json").read_text())["base_model_name_or_path"] == saved_base
    saved = load_file(tmp_path / "adapter" / "adapter_model.safetensors")
    plain = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(saved_base), tmp_path / "adapter")
    loaded = {k: p for k, p in plain.named_parameters() if "lora_" in k}
    assert len(loaded) == len(saved) == len(params)
    for key, value in saved.items():
        assert torch.equal(loaded[key.replace(".weight", ".default.weight")].detach(), value)


@pytest.mark.skipif(HAS_BNB_GPU, reason="checks the error where bitsandbytes or the GPU is missing")
@pytest.mark.parametrize("bits", ["8bit", "4bit"])
def test_quantization_without_its_hardware_says_what_is_missing(saved_base, bits):
    with pytest.raises(ModelLoadError, match=f"model.quantization={bits} needs (bitsandbytes|a CUDA GPU)"):
        load_base(ModelConfig(name=saved_base, quantization=bits))


@pytest.mark.skipif(not HAS_BNB_GPU, reason="4-bit loading needs bitsandbytes and a CUDA GPU")
def test_4bit_base_is_quantised_and_trains(saved_base):
    from harness.training import local_train, tokenize_samples
    from harness.data.demo import demo_samples

    cfg = ModelConfig(name=saved_base, quantization="4bit", gradient_checkpointing=True)
    base, tok = load_base(cfg)
    assert base.is_loaded_in_4bit
    model = attach_lora(base, cfg, 0)
    params = trainable_params(model)
    ok, red = demo_samples(6, 2, seed=0)
    data = tokenize_samples(tok, ok + red, 128)
    losses: list[float] = []
    local_train(model, params, data, list(range(8)), 0, 10, 8, 1e-2, "adamw", tok.pad_token_id, on_step=losses.append)
    assert losses[-1] < losses[0]
