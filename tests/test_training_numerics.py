"""Local training numerics: bf16 bases, gradient checkpointing, gradient accumulation, gradient clipping."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file

from harness.adapters import snapshot, trainable_params
from harness.config import ConfigError, ModelConfig, load_config
from harness.data.demo import demo_refusals, demo_samples
from harness.models import attach_lora, load_base
from harness.training import IGNORE, causal_lm_loss, collate, local_train, tokenize_samples
from helpers import run_tracked, smoke_config


def lora(dtype: str = "float32", dropout: float = 0.0, checkpointing: bool = False):
    cfg = ModelConfig(name="tiny-random", lora_r=4, lora_alpha=8, lora_dropout=dropout, dtype=dtype,
                      gradient_checkpointing=checkpointing, device="cpu")
    base, tok = load_base(cfg)
    model = attach_lora(base, cfg, seed=0)
    return model, trainable_params(model), tok


def samples(tok, n=16):
    ok, red = demo_samples(n // 2, n // 4, seed=5)
    return tokenize_samples(tok, ok + red + demo_refusals(n - n // 2 - n // 4, 5), 256)


def train(model, params, tok, data, steps, batch, lr, optimizer="sgd", **kw):
    losses: list[float] = []
    info, _ = local_train(model, params, data, list(range(len(data))), 0, steps, batch, lr, optimizer,
                          pad_id=tok.pad_token_id, bucket_window=1, on_step=losses.append, **kw)
    return info, losses


def grads(model, params, batch):
    model.train()
    torch.manual_seed(11)  # the same LoRA dropout masks for both runs
    causal_lm_loss(model, batch).backward()
    out = {k: p.grad.clone() for k, p in params.items()}
    model.zero_grad(set_to_none=True)
    return out


def test_bf16_base_trains_with_a_float32_adapter_and_the_loss_falls():
    model, params, tok = lora("bfloat16")
    assert model.get_input_embeddings().weight.dtype == torch.bfloat16
    assert {p.dtype for p in params.values()} == {torch.float32}
    _, losses = train(model, params, tok, samples(tok, 8), steps=12, batch=8, lr=1e-2, optimizer="adamw")
    fp32, fp32_params, _ = lora("float32")
    _, fp32_losses = train(fp32, fp32_params, tok, samples(tok, 8), steps=12, batch=8, lr=1e-2, optimizer="adamw")
    assert losses[-1] < losses[0] - 0.2, losses
    assert losses == pytest.approx(fp32_losses, rel=0.01)  # bf16 rounding, not a different trajectory


def test_gradient_checkpointing_recomputes_and_gives_the_same_gradients():
    plain, plain_params, tok = lora(dropout=0.1)
    ckpt, ckpt_params, _ = lora(dropout=0.1, checkpointing=True)
    batch, _ = collate(samples(tok, 4), range(4), tok.pad_token_id)
    calls = []
    norm = ckpt.get_base_model().model.layers[0].input_layernorm  # the layer's first op (recomputation may stop early)
    norm.register_forward_pre_hook(lambda *_: calls.append(1))
    expected, got = grads(plain, plain_params, batch), grads(ckpt, ckpt_params, batch)
    assert len(calls) == 2  # forward, then the recomputation in backward
    for name in expected:
        torch.testing.assert_close(got[name], expected[name], rtol=1e-5, atol=1e-7)


def test_accumulated_micro_batches_equal_one_big_batch():
    model, params, tok = lora()
    data = samples(tok, 8)
    start = snapshot(params)
    whole, _ = train(model, params, tok, data, steps=2, batch=8, lr=0.5)
    after_whole = snapshot(params)
    for name, p in params.items():
        p.data.copy_(start[name])
    counts = [int((data.labels[i][1:] != IGNORE).sum()) for i in range(8)]
    assert len({sum(counts[k : k + 2]) for k in range(0, 8, 2)}) > 1  # unequal micro-batches: weighting matters
    accumulated, _ = train(model, params, tok, data, steps=2, batch=8, lr=0.5, grad_accum_steps=4)
    assert accumulated.mean_loss == pytest.approx(whole.mean_loss, rel=1e-5)
    assert accumulated.num_tokens == whole.num_tokens
    for name, value in snapshot(params).items():
        torch.testing.assert_close(value, after_whole[name], rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("max_grad_norm", [0.01, None])
def test_clipping_bounds_the_step(max_grad_norm):
    model, params, tok = lora()
    start = snapshot(params)
    train(model, params, tok, samples(tok, 4), steps=1, batch=4, lr=1.0, max_grad_norm=max_grad_norm)
    step = torch.cat([(p.detach() - start[k]).flatten() for k, p in params.items()]).norm()
    bounded = step <= 0.01 * (1 + 1e-5)  # SGD with lr 1: the step is the (clipped) gradient
    assert bounded if max_grad_norm else not bounded, float(step)


def test_a_gradient_correction_is_added_after_clipping():
    model, params, tok = lora()
    start = snapshot(params)

    def correct() -> None:  # what local_grad_correction hooks do (SCAFFOLD under SGD, FedProx)
        for p in params.values():
            p.grad.add_(1.0)

    train(model, params, tok, samples(tok, 4), steps=1, batch=4, lr=1.0, max_grad_norm=0.01, correct_grads=correct)
    step = torch.cat([(p.detach() - start[k]).flatten() for k, p in params.items()])
    assert (step + 1.0).norm() <= 0.01 * (1 + 1e-5)  # the clipped gradient, and the whole correction


def test_training_settings_are_validated():
    assert load_config("smoke").federation.max_grad_norm == 1.0
    with pytest.raises(ConfigError, match="grad_accum_steps must be >= 1 and divide batch_size"):
        load_config("smoke", overrides={"federation.grad_accum_steps": 3})
    with pytest.raises(ConfigError, match="model.dtype must be one of"):
        load_config("smoke", overrides={"model.dtype": "fp8"})
    with pytest.raises(ConfigError, match="model.quantization must be one of"):
        load_config("smoke", overrides={"model.quantization": "2bit"})


@pytest.mark.slow
@pytest.mark.parametrize("max_grad_norm", [1e-9, None])
def test_the_engine_clips_with_federation_max_grad_norm(tmp_path, max_grad_norm):
    cfg = smoke_config(tmp_path, **{"federation.max_grad_norm": max_grad_norm, "federation.local_optimizer": "sgd",
                                    "federation.rounds": 1, "federation.grad_accum_steps": 2, "plugins.evals": []})
    assert run_tracked(cfg).status == "FINISHED"
    adapter = load_file(tmp_path / "out" / "runs" / "test-run" / "final_adapter" / "adapter_model.safetensors")
    moved = torch.cat([t.flatten() for k, t in adapter.items() if "lora_B" in k]).norm()  # B starts at zero
    bound = cfg.federation.local_steps * cfg.federation.lr * 1e-9 * (1 + 1e-5)  # SGD steps of norm <= lr * 1e-9
    assert moved <= bound if max_grad_norm else moved > 1e3 * bound, float(moved)
