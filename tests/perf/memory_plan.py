"""Memory plan for one GPU (#38 item 3): what is resident in each phase of a paper-scale run, measured without a GPU.

``python -m tests.perf.memory_plan`` prints the measurements and the plan table (docs/performance.md, "Memory plan
for one GPU (#38)"). ``--quick`` skips the full-width activation measurement (~3 GB of host memory, ~1 min on 2
cores) and uses the reduced-width one instead (the table then says so).

What is measured and how:

* **Weights**: the exact parameter count of Llama-3.1-8B (``tests.perf.model_configs.LLAMA_31_8B``; Llama-Guard-3-8B
  has the same layout) built on the meta device, split into the decoder layers' ``nn.Linear`` weights (what
  bitsandbytes quantises) and the rest (embeddings, ``lm_head``, norms: kept in 16 bits; transformers never
  quantises the output embedding). Bytes per quantised weight: bf16 2; 8-bit (LLM.int8) 1 + a float32 scale per
  output row (``Int8Params.SCB``); 4-bit NF4 with double quantisation 0.5 + 1/64 (one 8-bit absmax per block of 64)
  + 4/(64*256) (one float32 second-level constant per 256 blocks) = 4.127 bits (QLoRA, Dettmers et al. 2023, §3).
  For *training* a k-bit base, peft's ``prepare_model_for_kbit_training`` (which ``harness.models.attach_lora``
  calls) casts every 16-bit parameter that is not 4-bit to float32: embeddings, ``lm_head`` and norms double.
* **Adapter**: LoRA r (``model.lora_r``, 16) on ``model.target_modules`` (q_proj, v_proj; the paper preset keeps
  the default): r * (in + out) per module; float32 weight + grad + AdamW's two moments = 16 bytes a parameter.
* **Activations of one training step**: the tensors autograd saves for backward, summed exactly with
  ``torch.autograd.graph.saved_tensors_hooks`` (unique storages, parameters excluded) through the harness's own loss
  (``harness.training.causal_lm_loss``: LM head only at labelled positions, logits cast to float32) on a LoRA model
  from ``harness.models.attach_lora``. Measured on CPU in bf16 at the 8B width (hidden 4096, 14336, 32/8 heads,
  vocabulary 128256) with 1 and 2 layers and a small batch, then extrapolated (linear in batch x sequence and in
  layers: ``tests/test_memory_plan.py`` checks it) to 32 layers and 16 x 512. Attention is the causal SDPA kernel
  (saves its output and log-sum-exp, linear in length, as flash / memory-efficient kernels on a GPU do).
* **Gradient checkpointing** (non-reentrant): its own hooks hold each layer's input; formula, not measured:
  L * tokens * hidden * 2 bytes + one layer's activations (recomputed in backward) + the head part.
* **KV cache** (generation): 2 * layers * kv_heads * head_dim * 2 bytes = 128 KiB per token per sequence (bf16).
* **Guard scoring** (``lg3``: batch 8, up to 1024 tokens, ``use_cache`` off, ``logits_to_keep=1``): weights plus the
  transient of one layer's MLP, tokens * (3 * intermediate) * 2 bytes (gate, up, product), an upper-bound formula.
"""

from __future__ import annotations

import argparse
import json

import torch

from tests.perf.model_configs import LLAMA_31_8B

GIB = 1024**3
PAPER_BATCH, PAPER_SEQ = 16, 512
LORA_R, TARGETS = 16, ("q_proj", "v_proj")
GPUS_GB = (24, 48, 80)
NF4_BYTES = 0.5 + 1 / 64 + 4 / (64 * 256)  # QLoRA §3: 4 bits + 8/64 + 32/(64*256) bits


def llama(cfg: dict, device: str = "meta", **overrides) -> torch.nn.Module:
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(**{**cfg, **overrides})
    config._attn_implementation = "sdpa"
    with torch.device(device):
        return LlamaForCausalLM(config).to(torch.bfloat16)


def weight_split(model: torch.nn.Module) -> dict:
    """Parameter counts: decoder-layer Linear weights (quantisable), with their output rows, and the rest."""
    layers = model.model.layers
    linear = [m for m in layers.modules() if isinstance(m, torch.nn.Linear)]
    quant = sum(m.weight.numel() for m in linear)
    rows = sum(m.out_features for m in linear)
    total = sum(p.numel() for p in model.parameters())
    lora = sum(LORA_R * (m.in_features + m.out_features)
               for name, m in layers.named_modules() if name.split(".")[-1] in TARGETS)
    return {"total": total, "quantised": quant, "quant_rows": rows, "other": total - quant, "lora": lora}


def weight_bytes(split: dict, precision: str, training: bool) -> float:
    """Base weights on the device. ``training``: k-bit bases have their 16-bit parameters cast to float32 (peft)."""
    other = split["other"] * (4 if training and precision != "bf16" else 2)
    if precision == "bf16":
        return split["quantised"] * 2 + other
    if precision == "8bit":
        return split["quantised"] * 1 + split["quant_rows"] * 4 + other
    return split["quantised"] * NF4_BYTES + other


def saved_bytes(model: torch.nn.Module, batch: int, seq: int, labelled: float = 1.0, seed: int = 0) -> int:
    """Bytes autograd saves for backward in one ``causal_lm_loss`` forward (unique storages, no parameters)."""
    from harness.training import IGNORE, causal_lm_loss

    params = {p.untyped_storage().data_ptr() for p in model.parameters()}
    seen: dict[int, int] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        storage = t.untyped_storage()
        ptr = storage.data_ptr()
        if ptr not in params:
            seen[ptr] = max(seen.get(ptr, 0), storage.nbytes())
        return t

    g = torch.Generator().manual_seed(seed)
    vocab = model.get_input_embeddings().num_embeddings
    ids = torch.randint(0, vocab, (batch, seq), generator=g)
    labels = ids.clone()
    labels[:, : seq - round(seq * labelled)] = IGNORE
    data = {"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": labels}
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        loss = causal_lm_loss(model, data)
    del loss
    return sum(seen.values())


def lora_model(cfg: dict, device: str = "cpu", **overrides) -> torch.nn.Module:
    """A random-weight (uninitialised: values do not change sizes) Llama with the harness's LoRA, train mode."""
    from harness.config import ModelConfig
    from harness.models import attach_lora

    base = llama(cfg, "meta", **overrides).to_empty(device=device)
    with torch.no_grad():
        for p in base.parameters():
            p.normal_(0, 0.02) if p.numel() < 50_000_000 else p.zero_()  # finite values, cheap for the big ones
    model = attach_lora(base, ModelConfig(lora_r=LORA_R, target_modules=list(TARGETS)), seed=0)
    model.train()
    return model


def activation_coefficients(full_width: bool = True) -> dict:
    """Saved bytes per token per layer, per token outside the layers, per labelled token (head + loss)."""
    overrides = {} if full_width else {"hidden_size": 512, "intermediate_size": 1792, "num_attention_heads": 4,
                                       "num_key_value_heads": 1}
    b, s = 1, 64
    runs = {}
    for layers, frac in ((1, 1.0), (2, 1.0), (1, 0.5)):
        model = lora_model(LLAMA_31_8B, num_hidden_layers=layers, **overrides)
        runs[(layers, frac)] = saved_bytes(model, b, s, frac)
        del model
    tokens = b * s
    per_layer = (runs[(2, 1.0)] - runs[(1, 1.0)]) / tokens
    per_label = (runs[(1, 1.0)] - runs[(1, 0.5)]) / (tokens * 0.5)
    per_token_other = runs[(1, 1.0)] / tokens - per_layer - per_label
    return {"width": "8B (hidden 4096)" if full_width else "reduced (hidden 512)", "per_layer_token": per_layer,
            "per_labelled_token": per_label, "per_token_other": per_token_other, "raw": {str(k): v for k, v in runs.items()}}


def activations(coef: dict, layers: int, batch: int, seq: int, labelled: float, checkpointing: bool,
                hidden: int = 4096) -> float:
    tokens = batch * seq
    head = tokens * labelled * coef["per_labelled_token"]
    # backward's float32 gradient of the labelled logits (one more logits-sized buffer at the peak)
    head += tokens * labelled * LLAMA_31_8B["vocab_size"] * 4
    if not checkpointing:
        return tokens * (layers * coef["per_layer_token"] + coef["per_token_other"]) + head
    return tokens * (layers * hidden * 2 + coef["per_layer_token"] + coef["per_token_other"]) + head


def kv_bytes_per_token(cfg: dict = LLAMA_31_8B, bytes_per: int = 2) -> int:
    head_dim = cfg["hidden_size"] // cfg["num_attention_heads"]
    return 2 * cfg["num_hidden_layers"] * cfg["num_key_value_heads"] * head_dim * bytes_per


def plan(coef: dict) -> tuple[dict, list[dict]]:
    split = weight_split(llama(LLAMA_31_8B))
    L = LLAMA_31_8B["num_hidden_layers"]
    lora_state = split["lora"] * 16
    guard_bf16 = weight_bytes(split, "bf16", training=False)  # load_base(ModelConfig(name=guard)): auto dtype, no quant
    score_transient = 8 * 1024 * 3 * LLAMA_31_8B["intermediate_size"] * 2
    kv = kv_bytes_per_token()
    facts = {"params": split, "lora_state_bytes": lora_state, "guard_bf16_bytes": guard_bf16,
             "guard_score_transient_bytes": score_transient, "kv_bytes_per_token": kv, "coef": coef}
    rows = []
    for gb in GPUS_GB:
        cap = gb * 1e9 * 0.95  # ~5 % for the CUDA context and allocator fragmentation
        for precision in ("bf16", "8bit", "4bit"):
            w = weight_bytes(split, precision, training=True)
            act = {gc: activations(coef, L, PAPER_BATCH, PAPER_SEQ, 1.0, gc) for gc in (False, True)}
            train = {gc: w + lora_state + act[gc] for gc in (False, True)}
            fits = {gc: train[gc] <= cap for gc in (False, True)}
            guard_resident = train[True] + guard_bf16 <= cap
            # generation after a round: base + adapter state (kept by the optimiser? no: per-step AdamW is local)
            free_gen = cap - w - lora_state - (guard_bf16 if guard_resident else 0)
            seq_len = 1024  # CAI turns / eval prompts with their completions, at most model.max_length + new tokens
            gen_batch = max(0, int(free_gen * 0.8 // (kv * seq_len)))  # 20 % for generation's own activations
            rows.append({
                "gpu_gb": gb, "precision": precision, "weights_gb": w / GIB,
                "train_nogc_gb": train[False] / GIB, "train_gc_gb": train[True] / GIB,
                "train_fits": "yes" if fits[False] else ("with GC" if fits[True] else "no"),
                "guard_8b_resident": "yes" if guard_resident and (fits[False] or fits[True]) else "no",
                "gen_batch_1024": gen_batch if (fits[False] or fits[True]) else 0,
                "gc": not fits[False],
            })
    return facts, rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="reduced-width activation measurement (less memory)")
    parser.add_argument("--json", help="also write the facts and rows here")
    args = parser.parse_args(argv)
    torch.manual_seed(0)
    coef = activation_coefficients(full_width=not args.quick)
    facts, rows = plan(coef)
    p = facts["params"]
    print(f"Llama-3.1-8B on the meta device: {p['total']:,} params; decoder Linear weights {p['quantised']:,}; "
          f"other (embed, lm_head, norms) {p['other']:,}; LoRA r{LORA_R} on {'/'.join(TARGETS)}: {p['lora']:,}")
    print(f"activations ({coef['width']}, measured, bf16): {coef['per_layer_token']:.0f} B/token/layer, "
          f"{coef['per_token_other']:.0f} B/token outside layers, {coef['per_labelled_token']:.0f} B/labelled token")
    print(f"KV cache {facts['kv_bytes_per_token']:,} B/token; guard 8B bf16 {facts['guard_bf16_bytes'] / GIB:.2f} GiB; "
          f"guard scoring transient (8 x 1024) {facts['guard_score_transient_bytes'] / GIB:.2f} GiB; "
          f"LoRA + AdamW state {facts['lora_state_bytes'] / GIB:.3f} GiB")
    print(f"\n{'GPU':>4} {'prec':>5} {'weights':>8} {'train':>8} {'train+GC':>9} {'fits':>8} {'guard8B':>8} {'genB@1024':>10}")
    for r in rows:
        print(f"{r['gpu_gb']:>4} {r['precision']:>5} {r['weights_gb']:>7.1f}G {r['train_nogc_gb']:>7.1f}G "
              f"{r['train_gc_gb']:>8.1f}G {r['train_fits']:>8} {r['guard_8b_resident']:>8} {r['gen_batch_1024']:>10}")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"facts": facts, "rows": rows}, fh, indent=1, default=str)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
