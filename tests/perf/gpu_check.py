"""GPU check (#20): the paper preset's local training on one GPU, memory in bf16 and 4-bit, AdvBench generation
with HF ``generate`` and vLLM. One run, a few minutes on an H100-class GPU; prints one JSON object per row.

    python -m tests.perf.gpu_check --model /path/to/Llama-3.1-8B-Instruct     # real weights: every row
    python -m tests.perf.gpu_check                                            # no copy: random weights

Without ``--model`` the training and memory rows use Llama-3.1-8B's shapes with random weights (saved once under
``$HARNESS_CACHE``, so 4-bit loading reads them like a checkpoint); the generation rows then use SmolLM2-135M
(``--gen-model``), since random weights generate nothing comparable.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from pathlib import Path

import torch
from transformers import LlamaConfig, LlamaForCausalLM

from harness.adapters import trainable_params
from harness.config import ModelConfig, load_config
from harness.evals.files import data_file
from harness.evals.loaders import load_advbench
from harness.model_handle import GlobalModel
from harness.models import SMOLLM2, attach_lora, cache_dir, load_base, resolve_dtype, tiny_tokenizer
from tests.perf.flops import Arch, lora_step_flops
from tests.perf.peak import matmul_flops
from harness.training import TokenizedSamples, local_train

LLAMA_8B = LlamaConfig(vocab_size=128256, hidden_size=4096, intermediate_size=14336, num_hidden_layers=32,
                       num_attention_heads=32, num_key_value_heads=8, max_position_embeddings=8192,
                       rope_theta=500000.0, rms_norm_eps=1e-5, tie_word_embeddings=False)


def arch_checkpoint() -> str:
    """Llama-3.1-8B's shapes with random bf16 weights, saved once (16 GB) with the byte-level tokenizer."""
    path = cache_dir() / "llama-8b-arch"
    if not (path / "config.json").is_file():
        torch.manual_seed(0)
        default = torch.get_default_dtype()
        torch.set_default_dtype(torch.bfloat16)
        try:
            with torch.device("cuda"):
                model = LlamaForCausalLM(LLAMA_8B)
        finally:
            torch.set_default_dtype(default)
        model.save_pretrained(path)
        tiny_tokenizer().save_pretrained(path)
        del model
        torch.cuda.empty_cache()
    return str(path)


def synthetic(vocab: int, n: int, length: int, prompt: int) -> TokenizedSamples:
    """``n`` random sequences of ``length`` tokens, the first ``prompt`` unlabelled (the paper's 512 at most)."""
    gen = torch.Generator().manual_seed(0)
    ids = [torch.randint(0, vocab, (length,), generator=gen) for _ in range(n)]
    labels = [torch.cat([torch.full((prompt,), -100), x[prompt:]]) for x in ids]
    return TokenizedSamples(ids, labels)


def train_row(model_name: str, quantization: str, checkpointing: bool, steps: int, peak: float) -> dict:
    """Seconds per step, tokens/s, MFU and peak memory of the paper preset's local steps (batch 16 x 512)."""
    paper = load_config("paper")
    cfg = dataclasses.replace(paper.model, name=model_name, quantization=quantization,
                              gradient_checkpointing=checkpointing)
    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats()
    base, tok = load_base(cfg)
    model = attach_lora(base, cfg, seed=0)
    params = trainable_params(model)
    fed, length = paper.federation, cfg.max_length
    data = synthetic(model.config.vocab_size, fed.batch_size * (steps + 1), length, length // 2)
    order = list(range(len(data)))
    local_train(model, params, data, order, 0, 1, fed.batch_size, fed.lr, fed.local_optimizer, tok.pad_token_id,
                max_grad_norm=fed.max_grad_norm)  # warm-up: kernels, allocator
    torch.cuda.synchronize()
    start = time.perf_counter()
    info, _ = local_train(model, params, data, order, fed.batch_size, steps, fed.batch_size, fed.lr,
                          fed.local_optimizer, tok.pad_token_id, max_grad_norm=fed.max_grad_norm)
    seconds = (time.perf_counter() - start) / steps
    flops = lora_step_flops(Arch.from_config(model.config), [length] * fed.batch_size,
                            fed.batch_size * (length - length // 2), cfg.lora_r, cfg.target_modules).total
    row = {"row": "train", "model": model_name, "quantization": quantization, "compute_dtype": str(resolve_dtype(cfg.dtype, torch.device("cuda"))),
           "gradient_checkpointing": checkpointing, "batch": f"{fed.batch_size}x{length}",
           "seconds_per_step": round(seconds, 3), "tokens_per_s": round(info.num_tokens / steps / seconds),
           "round_seconds_estimate": round(seconds * fed.local_steps * fed.clients_per_round, 1),
           "model_tflops": round(flops / seconds / 1e12, 1), "mfu_vs_bf16_matmul_peak": round(flops / seconds / peak, 3),
           "peak_memory_gb": round(torch.cuda.max_memory_allocated() / 2**30, 1)}
    del model, base, params
    torch.cuda.empty_cache()
    return row


def generation_row(model_name: str, backend: str, prompts: int, max_new_tokens: int) -> dict:
    """AdvBench generation throughput with ``backend`` (greedy, a fresh r=16 LoRA adapter)."""
    cfg = ModelConfig(name=model_name, max_length=512, generation_backend=backend)
    base, tok = load_base(cfg)
    handle = GlobalModel(attach_lora(base, cfg, seed=0), tok, cfg.max_length)
    goals = [handle.chat_prompt(g) for g in load_advbench(data_file("advbench/harmful_behaviors.csv"))[:prompts]]
    handle.generate(goals[:2], max_new_tokens=8)  # warm-up (vLLM: engine start, CUDA graphs)
    torch.cuda.synchronize()
    start = time.perf_counter()
    outputs = handle.generate(goals, max_new_tokens=max_new_tokens, batch_size=32)
    seconds = time.perf_counter() - start
    tokens = sum(len(tok(o, add_special_tokens=False)["input_ids"]) for o in outputs)
    del handle, base
    torch.cuda.empty_cache()
    return {"row": "advbench", "model": model_name, "backend": backend, "prompts": len(goals),
            "max_new_tokens": max_new_tokens, "seconds": round(seconds, 1), "tokens_per_s": round(tokens / seconds),
            "outputs": outputs}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", help="a local copy or hub id of the paper's base (default: random 8B weights)")
    parser.add_argument("--gen-model", default=None, help="the model for the generation rows (default: --model, "
                        "else smollm2-135m)")
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--prompts", type=int, default=128)
    parser.add_argument("--max-new-tokens", type=int, default=256)
    parser.add_argument("--out", type=Path, default=Path("gpu_check.jsonl"))
    args = parser.parse_args()
    if not torch.cuda.is_available():
        raise SystemExit("gpu_check needs a CUDA GPU")
    peak = max(matmul_flops(n, "cuda", dtype=torch.bfloat16) for n in (4096, 8192))
    rows = [{"row": "machine", "gpu": torch.cuda.get_device_name(), "torch": torch.__version__,
             "gpu_memory_gb": round(torch.cuda.get_device_properties(0).total_memory / 2**30),
             "bf16_matmul_peak_tflops": round(peak / 1e12)}]
    train_model = args.model or arch_checkpoint()
    plans = [("none", False), ("none", True), ("4bit", True)]
    for quantization, checkpointing in plans:
        try:
            rows.append(train_row(train_model, quantization, checkpointing, args.steps, peak))
        except (torch.cuda.OutOfMemoryError, ImportError, ValueError) as exc:  # report the row, keep going
            rows.append({"row": "train", "quantization": quantization, "gradient_checkpointing": checkpointing,
                         "error": f"{type(exc).__name__}: {str(exc)[:300]}"})
            torch.cuda.empty_cache()
    gen_model = args.gen_model or args.model or SMOLLM2
    generated = {}
    for backend in ("hf", "vllm"):
        try:
            row = generation_row(gen_model, backend, args.prompts, args.max_new_tokens)
            generated[backend] = row.pop("outputs")
            rows.append(row)
        except Exception as exc:  # noqa: BLE001 - a missing vLLM is a row, not the end of the check
            rows.append({"row": "advbench", "backend": backend, "error": f"{type(exc).__name__}: {str(exc)[:300]}"})
    if len(generated) == 2:
        same = sum(a == b for a, b in zip(generated["hf"], generated["vllm"]))
        rows.append({"row": "advbench_agreement", "identical_outputs": f"{same}/{len(generated['hf'])}"})
    with args.out.open("w") as f:
        for row in rows:
            print(json.dumps(row), flush=True)
            f.write(json.dumps(row) + "\n")


if __name__ == "__main__":
    main()
