"""GPU check (#20, #38): the paper's workloads on one GPU, from random weights, with nothing from outside.

    python -m tests.perf.gpu_check                      # CUDA: Llama-3.1-8B / Llama-Guard-3-8B shapes, random weights
    python -m tests.perf.gpu_check --tiny               # the tiny configs (automatic without CUDA): CPU, seconds
    python -m tests.perf.gpu_check --only train-bf16 --only fed-round --out rerun.json

No hub, no network (``HF_HUB_OFFLINE`` is set): the models are built from the config dicts in
:mod:`tests.perf.model_configs` with random weights and saved, with the byte-level test tokenizer padded to the
config's vocabulary, to a temporary folder (``--workdir``; removed at the end unless ``--keep``). Prompts come from
the packaged AdvBench file and the built-in demo set. Every row runs in turn; a row that raises is recorded as
``failed`` with its error and the check goes on; a row that cannot measure here (no bitsandbytes, no vLLM, no CUDA)
is ``skipped`` with the reason, never a number. One table is printed at the end and every row is written to
``--out`` (JSON). Exit status 1 when a row failed (not when one was skipped).

Rows, and the time each should take on one H100 (estimates from FLOPs and bandwidth, not measured: no GPU yet):

* ``save-weights``: build Llama-3.1-8B on the GPU in bf16 with random weights (seconds) and save it (16 GB of
  safetensors; ~10-60 s at 0.3-1.5 GB/s of disk). The guard (Llama-Guard-3-8B's config: the same weight layout)
  gets its own ``config.json`` and hard links to the same weight files (what it scores with does not change the
  time it takes). Estimate: **~1 min**.
* ``train-bf16``: the paper preset's local steps (batch 16 x 512, LoRA r 16 on q/v, AdamW, clip 1.0) through
  :func:`harness.training.local_train` on synthetic tokens (half of each sequence labelled): seconds per step,
  tokens/s, model FLOP/s (:mod:`tests.perf.flops`; ~2.7e14 per step), MFU against the measured bf16 matmul peak
  (:mod:`tests.perf.peak`) and against the GPU's data-sheet peak where known, peak memory (CUDA
  ``max_memory_allocated``; ~70-75 GB expected without checkpointing: tight on an 80 GB card, so an out-of-memory
  error is recorded in the row and the steps are measured again with checkpointing). At 40 % of 989 TFLOP/s a step
  is ~0.7 s; load (~15 s) + 1 warm-up + 3 steps: **~25 s** (~45 s with the retry).
* ``train-4bit``: the same with an NF4 base (bitsandbytes, double quantisation) and gradient checkpointing;
  quantising on load ~30-60 s, ~1.5-2 s per step: **~1 min**. Skipped without CUDA + bitsandbytes.
* ``guard-scoring``: :class:`harness.guard.scoring.GuardScorer` (the ``lg3`` filter's scorer, its defaults: batch 8,
  max_length 1024, 'pair' mode) on the random guard over 128 demo samples: samples/min, prompt tokens/s (the
  paper: 1,000 samples/min on one A100). Byte-level prompts are ~4x longer in tokens than Llama 3's (~1,000
  tokens, mostly the template; the conversation is cut to fit 1024), so samples/min here is a lower bound for real
  Llama Guard 3 prompts; tokens/s compares directly. ~2e13 FLOPs per sample: load ~15 s + ~10 s: **~30 s**.
* ``generate-hf``: greedy HF ``generate`` of the base with a fresh r=16 adapter (as the evals run it: left-padded,
  length-sorted batches of 32) on 64 AdvBench prompts, EOS suppressed so every completion is exactly 128 tokens
  (random weights stop at random): tokens/s. Load ~15 s + 2 batches x 128 steps x ~30 ms: **~25 s**.
* ``generate-vllm``: the harness's vLLM engine (:class:`harness.vllm_backend.VllmGenerator`: LoRA enabled, the
  adapter saved and passed as a ``LoRARequest``) over the saved random weights, 128 AdvBench prompts x 256 tokens
  (``ignore_eos``): engine start-up seconds and tokens/s. Start-up (weights, compile, CUDA graphs) ~1-2 min, the
  HF base resident beside it (as in a run) ~15 s, generation ~10 s: **~2.5 min**. Skipped without vLLM or CUDA.
  Runs last: vLLM does not always hand its memory back.
* ``fed-round``: one federated round end to end through ``harness run``'s code path
  (:func:`harness.runner.prepare`: MLflow store, plugins, local engine): the smoke preset pointed at the saved
  base, 2 clients x 2 local steps at batch 16 x 512 with gradient checkpointing (base and guard are both resident),
  the ``lg3`` filter on the random guard (``force``: a bare random guard has no card; threshold 1.0: every sample
  is scored, as in a run, and kept, since a random guard's verdicts mean nothing and at 0.5 it dropped them all),
  FedAvg, no evals: status, round seconds, loss, filter counts, peak memory. Loads ~30 s, scoring ~80 samples
  ~10 s, steps ~5 s, adapter save: **~1 min**.

Total estimate on one H100: **~7 min** (under the 10 the issue allows), plus the bf16 matmul peak (~2 s).
``--tiny`` runs the same rows with the tiny configs and small sizes on the CPU (the 4-bit and vLLM rows skipped
there): ~30-60 s on two cores; ``tests/test_gpu_check.py`` runs it.
"""

from __future__ import annotations

import argparse
import dataclasses
import gc
import json
import math
import os
import platform
import shutil
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path

ROWS = ("save-weights", "train-bf16", "train-4bit", "guard-scoring", "generate-hf", "fed-round", "generate-vllm")
"""Every row, in the order they run (vLLM last: it does not always release its GPU memory)."""

SPEC_BF16_TFLOPS = (("H100 PCIe", 756.0), ("H100 NVL", 835.0), ("H100", 989.0), ("H200", 989.0), ("GH200", 989.0),
                    ("A100", 312.0), ("L40S", 362.0), ("A10G", 125.0), ("L4", 121.0))
"""Dense bf16 tensor-core peaks (TFLOP/s, no sparsity) from the vendors' data sheets, matched against
``torch.cuda.get_device_name()`` in this order (PCIe and NVL before the SXM default)."""

PAPER_GUARD_RATE = "1,000 samples/min on one A100 (Llama Guard 3 8B)"


class Skip(Exception):
    """A row that cannot measure on this machine; the message says why."""


@dataclasses.dataclass(frozen=True)
class Sizes:
    """How much each row does: the paper's batch on a GPU, small ones for the tiny CPU run."""

    train_batch: int
    train_length: int
    train_steps: int  # measured steps, after one warm-up step
    guard_samples: int
    guard_batch: int
    gen_prompts: int
    gen_new_tokens: int
    gen_batch: int
    vllm_prompts: int
    vllm_new_tokens: int
    fed_batch: int
    fed_length: int
    fed_steps: int
    fed_samples: int
    fed_checkpointing: bool
    peak_sizes: tuple[int, ...]


def paper_sizes() -> Sizes:
    from harness.config import load_config

    paper = load_config("paper")
    batch, length = paper.federation.batch_size, paper.model.max_length  # 16 x 512
    return Sizes(train_batch=batch, train_length=length, train_steps=3, guard_samples=128, guard_batch=8,
                 gen_prompts=64, gen_new_tokens=128, gen_batch=32, vllm_prompts=128, vllm_new_tokens=256,
                 fed_batch=batch, fed_length=length, fed_steps=2, fed_samples=80, fed_checkpointing=True,
                 peak_sizes=(4096, 8192))


TINY_SIZES = Sizes(train_batch=4, train_length=128, train_steps=2, guard_samples=12, guard_batch=4,
                   gen_prompts=6, gen_new_tokens=12, gen_batch=3, vllm_prompts=6, vllm_new_tokens=12,
                   fed_batch=2, fed_length=160, fed_steps=1, fed_samples=12, fed_checkpointing=False,
                   peak_sizes=(256, 512))


# -- memory -------------------------------------------------------------------------------------------------------

def _vm_hwm_bytes() -> int | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


class Memory:
    """Peak memory of one row: CUDA ``max_memory_allocated`` on a GPU, else the process's VmHWM (reset per row through
    ``/proc/self/clear_refs`` where the kernel allows it, else the process's peak so far, and said so)."""

    def __init__(self, cuda: bool):
        self.cuda = cuda
        self.kind = "cuda max_memory_allocated"

    def reset(self) -> None:
        if self.cuda:
            import torch

            torch.cuda.reset_peak_memory_stats()
            return
        try:
            Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM to the current RSS (Linux >= 4.0)
            self.kind = "VmHWM since the row started"
        except OSError:
            self.kind = "VmHWM of the process so far (could not reset)"

    def peak_gb(self) -> float | None:
        if self.cuda:
            import torch

            return round(torch.cuda.max_memory_allocated() / 2**30, 2)
        hwm = _vm_hwm_bytes()
        return None if hwm is None else round(hwm / 2**30, 3)


# -- the run's context ---------------------------------------------------------------------------------------------

@dataclasses.dataclass
class Context:
    tiny: bool
    cuda: bool
    sizes: Sizes
    workdir: Path
    base_config: dict
    guard_config: dict
    base_dir: str | None = None  # set by save-weights (or --model)
    guard_dir: str | None = None
    matmul_peak: float | None = None  # FLOP/s of a bf16 matmul on this device, measured
    spec_peak: float | None = None  # FLOP/s from the data sheet, where the GPU is known
    memory: Memory | None = None

    @property
    def device(self) -> str:
        return "cuda" if self.cuda else "cpu"

    def need_weights(self) -> tuple[str, str]:
        if self.base_dir is None or self.guard_dir is None:
            raise Skip("needs the saved random weights, and save-weights did not finish")
        return self.base_dir, self.guard_dir


def _sync(ctx: Context) -> None:
    if ctx.cuda:
        import torch

        torch.cuda.synchronize()


def _free(ctx: Context) -> None:
    gc.collect()
    if ctx.cuda:
        import torch

        torch.cuda.empty_cache()


def sig(x: float, digits: int = 3) -> float:
    """``x`` to ``digits`` significant digits (tiny and 8B numbers differ by orders of magnitude)."""
    return float(f"{x:.{digits}g}")


def spec_peak_flops(device_name: str) -> float | None:
    for key, tflops in SPEC_BF16_TFLOPS:
        if key.lower() in device_name.lower():
            return tflops * 1e12
    return None


def mfu(ctx: Context, flops_per_s: float) -> dict:
    out = {"model_tflops": sig(flops_per_s / 1e12)}
    if ctx.matmul_peak:
        out["mfu_vs_measured_bf16_matmul"] = round(flops_per_s / ctx.matmul_peak, 3)
    if ctx.spec_peak:
        out["mfu_vs_spec_bf16_peak"] = round(flops_per_s / ctx.spec_peak, 3)
    return out


# -- rows ----------------------------------------------------------------------------------------------------------

def _build_and_save(config_dict: dict, path: Path, seed: int, cuda: bool) -> int:
    """A random bf16 model from ``config_dict`` saved with its padded byte-level tokenizer; returns its parameters."""
    import torch
    from transformers import LlamaForCausalLM

    from tests.perf.model_configs import byte_tokenizer, llama_config

    config = llama_config(config_dict)
    torch.manual_seed(seed)
    default = torch.get_default_dtype()
    torch.set_default_dtype(torch.bfloat16)
    try:
        with torch.device("cuda" if cuda else "cpu"):
            model = LlamaForCausalLM(config)
    finally:
        torch.set_default_dtype(default)
    params = sum(p.numel() for p in model.parameters())
    model.save_pretrained(path)
    byte_tokenizer(config.vocab_size).save_pretrained(path)
    del model
    return params


def _link_guard(base: Path, guard: Path, guard_dict: dict) -> None:
    """The guard's folder: its own config, the base's weight files (hard links, copies across file systems)."""
    from tests.perf.model_configs import llama_config

    guard.mkdir(parents=True)
    for item in base.iterdir():
        if item.name in ("config.json", "generation_config.json"):
            continue
        try:
            os.link(item, guard / item.name)
        except OSError:
            shutil.copy2(item, guard / item.name)
    llama_config(guard_dict).save_pretrained(guard)


def row_save_weights(ctx: Context, model: str | None, guard: str | None) -> dict:
    from tests.perf.model_configs import same_weights_layout

    metrics: dict = {}
    start = time.perf_counter()
    if model:
        ctx.base_dir = model
        metrics["base"] = f"given: {model}"
    else:
        path = ctx.workdir / "base"
        params = _build_and_save(ctx.base_config, path, seed=0, cuda=ctx.cuda)
        ctx.base_dir = str(path)
        metrics.update(base_params_billions=sig(params / 1e9),
                       base_gb_on_disk=sig(sum(f.stat().st_size for f in path.iterdir()) / 1e9))
    _free(ctx)
    if guard:
        ctx.guard_dir = guard
        metrics["guard"] = f"given: {guard}"
    elif not model and same_weights_layout(ctx.base_config, ctx.guard_config):
        _link_guard(Path(ctx.base_dir), ctx.workdir / "guard", ctx.guard_config)
        ctx.guard_dir = str(ctx.workdir / "guard")
        metrics["guard"] = "guard config, the base's weight files linked (same layout)"
    else:
        path = ctx.workdir / "guard"
        _build_and_save(ctx.guard_config, path, seed=1, cuda=ctx.cuda)
        ctx.guard_dir = str(path)
        metrics["guard"] = "built and saved"
    _free(ctx)
    metrics["seconds"] = round(time.perf_counter() - start, 1)
    return metrics


def synthetic(vocab: int, n: int, length: int, prompt: int):
    """``n`` random sequences of ``length`` tokens, the first ``prompt`` unlabelled."""
    import torch

    from harness.training import TokenizedSamples

    gen = torch.Generator().manual_seed(0)
    ids = [torch.randint(0, vocab, (length,), generator=gen) for _ in range(n)]
    labels = [torch.cat([torch.full((prompt,), -100), x[prompt:]]) for x in ids]
    return TokenizedSamples(ids, labels)


def row_train(ctx: Context, quantization: str) -> dict:
    """Seconds per step, tokens/s, MFU and peak memory of the paper preset's local steps. bf16 runs without gradient
    checkpointing (the paper preset's setting); where that runs out of GPU memory it is said so in the row and the
    steps are measured again with checkpointing. The 4-bit row always checkpoints."""
    import importlib.util

    import torch

    has_bnb = importlib.util.find_spec("bitsandbytes") is not None
    if quantization != "none" and not (ctx.cuda and has_bnb):
        missing = [what for what, ok in (("CUDA", ctx.cuda), ("bitsandbytes", has_bnb)) if not ok]
        raise Skip(f"needs CUDA + bitsandbytes ({' and '.join(missing)} missing here)")
    ctx.need_weights()
    attempts = (False, True) if quantization == "none" else (True,)
    oom = None
    for checkpointing in attempts:
        try:
            metrics = _train_steps(ctx, quantization, checkpointing)
            break
        except torch.cuda.OutOfMemoryError as exc:
            if checkpointing == attempts[-1]:
                raise
            oom = f"{type(exc).__name__} without gradient checkpointing: {str(exc)[:200]}"
        _free(ctx)  # outside the handler: the traceback no longer holds the model
        if ctx.memory is not None:
            ctx.memory.reset()  # the peak reported is the checkpointed run's
    if oom:
        metrics["oom_without_checkpointing"] = oom
    return metrics


def _train_steps(ctx: Context, quantization: str, checkpointing: bool) -> dict:
    from harness.adapters import trainable_params
    from harness.config import load_config
    from harness.models import attach_lora, load_base
    from harness.training import local_train
    from tests.perf.flops import Arch, lora_step_flops

    paper, sizes = load_config("paper"), ctx.sizes
    cfg = dataclasses.replace(paper.model, name=ctx.base_dir, quantization=quantization, dtype="bfloat16",
                              gradient_checkpointing=checkpointing, max_length=sizes.train_length)
    fed = paper.federation
    base, tok = load_base(cfg)
    model = attach_lora(base, cfg, seed=0)
    params = trainable_params(model)
    batch, length, steps = sizes.train_batch, sizes.train_length, sizes.train_steps
    prompt = length // 2
    data = synthetic(min(model.config.vocab_size, len(tok)), batch * (steps + 1), length, prompt)
    order = list(range(len(data)))
    local_train(model, params, data, order, 0, 1, batch, fed.lr, fed.local_optimizer, tok.pad_token_id,
                max_grad_norm=fed.max_grad_norm)  # warm-up: kernels, allocator
    _sync(ctx)
    start = time.perf_counter()
    info, _ = local_train(model, params, data, order, batch, steps, batch, fed.lr, fed.local_optimizer,
                          tok.pad_token_id, max_grad_norm=fed.max_grad_norm)
    _sync(ctx)
    seconds = (time.perf_counter() - start) / steps
    if not math.isfinite(info.mean_loss):
        raise RuntimeError(f"training loss is not finite: {info.mean_loss}")
    flops = lora_step_flops(Arch.from_config(model.config), [length] * batch, batch * (length - prompt),
                            cfg.lora_r, cfg.target_modules).total
    metrics = {"batch": f"{batch}x{length}", "quantization": quantization, "gradient_checkpointing": checkpointing,
               "compute_dtype": "bfloat16", "lora": f"r{cfg.lora_r} {'+'.join(cfg.target_modules)}",
               "seconds_per_step": round(seconds, 4), "tokens_per_s": round(info.num_tokens / steps / seconds, 1),
               "loss": round(info.mean_loss, 4), **mfu(ctx, flops / seconds)}
    if not ctx.tiny:
        metrics["paper_round_seconds_estimate"] = round(seconds * fed.local_steps * fed.clients_per_round, 1)
    return metrics


def guard_samples(n: int):
    from harness.data.demo import demo_samples

    benign, harmful = demo_samples(n - n // 3, n // 3, seed=0)
    return [s for pair in zip(benign, harmful) for s in pair] + benign[len(harmful):]


def row_guard(ctx: Context) -> dict:
    """The lg3 filter's scorer on the random guard: samples/min and prompt tokens/s; then, with the filter's own
    placement (``between_uses=auto``: to host memory on a GPU), the GPU memory the guard holds while it scores and
    after it is released, and the seconds a released guard takes to come back for the next client."""
    import torch

    from harness.default_plugins.filters.lg3 import LlamaGuardFilter
    from harness.guard.scoring import GuardScorer, load_guard

    _, guard_dir = ctx.need_weights()
    defaults = LlamaGuardFilter()  # the filter's own batch size, max_length, score mode and placement
    batch = ctx.sizes.guard_batch if ctx.tiny else defaults.batch_size
    allocated = (lambda: torch.cuda.memory_allocated() / 1e9) if ctx.cuda else (lambda: None)
    before = allocated()
    guard = load_guard(guard_dir, defaults.placement)
    loaded = allocated()
    scorer = GuardScorer(guard, batch, defaults.max_length, defaults.score_mode)
    samples = guard_samples(ctx.sizes.guard_samples)
    tokens = sum(len(ids) for ids in scorer.prompt_ids(samples))
    scorer.score(samples[:batch])  # warm-up
    released = allocated()
    _sync(ctx)
    start = time.perf_counter()
    scorer.score(samples[:1])  # the guard comes back (if it left) to score one sample
    _sync(ctx)
    comeback = time.perf_counter() - start
    start = time.perf_counter()
    scores = scorer.score(samples)
    _sync(ctx)
    seconds = time.perf_counter() - start
    if not all(math.isfinite(s) and 0.0 <= s <= 1.0 for s in scores):
        raise RuntimeError(f"guard scores outside [0, 1]: {scores[:8]}")
    with guard.use() as model:
        dtype = str(next(model.parameters()).dtype).removeprefix("torch.")
    del scorer, guard
    gap = (lambda after: None if before is None else round(after - before, 2))
    return {"samples": len(samples), "batch_size": batch, "max_length": defaults.max_length,
            "mode": defaults.score_mode, "dtype": dtype, "mean_prompt_tokens": round(tokens / len(samples)),
            "samples_per_min": round(len(samples) / seconds * 60, 1), "prompt_tokens_per_s": round(tokens / seconds),
            "between_uses": defaults.placement.idle(torch.device(ctx.device)),
            "guard_gpu_gb_loaded": gap(loaded), "guard_gpu_gb_released": gap(released),
            "one_sample_after_release_seconds": round(comeback, 2), "paper": PAPER_GUARD_RATE}


def advbench_prompts(n: int) -> list[str]:
    """The first ``n`` packaged AdvBench goals (the demo set's prompts if the package lacks the file)."""
    from harness.evals.files import packaged_file
    from harness.evals.loaders import load_advbench

    path = packaged_file("advbench/harmful_behaviors.csv")
    goals = load_advbench(path) if path is not None else [s.prompt for s in guard_samples(n)]
    return (goals * (n // len(goals) + 1))[:n]


def _generation_model(ctx: Context, backend: str):
    from harness.config import ModelConfig
    from harness.model_handle import GlobalModel
    from harness.models import attach_lora, load_base

    base_dir, _ = ctx.need_weights()
    cfg = ModelConfig(name=base_dir, max_length=512, dtype="bfloat16", generation_backend=backend)
    base, tok = load_base(cfg)
    handle = GlobalModel(attach_lora(base, cfg, seed=0), tok, cfg.max_length)
    return cfg, handle


def row_generate_hf(ctx: Context) -> dict:
    """Greedy HF generate as GlobalModel.generate runs it (left padding, length-sorted batches), EOS suppressed."""
    import torch

    sizes = ctx.sizes
    cfg, handle = _generation_model(ctx, "hf")
    tok, model = handle.tokenizer, handle.model
    prompts = sorted((handle.chat_prompt(g) for g in advbench_prompts(sizes.gen_prompts)), key=len)
    new = sizes.gen_new_tokens
    tok.padding_side = "left"

    def run(batch_prompts: list[str], n: int) -> int:
        enc = tok(batch_prompts, return_tensors="pt", padding=True, truncation=True, max_length=cfg.max_length,
                  add_special_tokens=False).to(handle.device)
        with torch.no_grad():
            out = model.generate(**enc, max_new_tokens=n, min_new_tokens=n, do_sample=False,
                                 pad_token_id=tok.pad_token_id, use_cache=True)
        made = out.shape[1] - enc["input_ids"].shape[1]
        if made != n:
            raise RuntimeError(f"generate made {made} new tokens per row, asked for exactly {n}")
        return made * len(batch_prompts)

    model.eval()
    run(prompts[:2], 4)  # warm-up
    _sync(ctx)
    start, tokens = time.perf_counter(), 0
    for i in range(0, len(prompts), sizes.gen_batch):
        tokens += run(prompts[i : i + sizes.gen_batch], new)
    _sync(ctx)
    seconds = time.perf_counter() - start
    del handle, model
    return {"prompts": len(prompts), "batch": sizes.gen_batch, "new_tokens_each": new, "seconds": round(seconds, 2),
            "tokens_per_s": round(tokens / seconds, 1), "adapter": f"r{cfg.lora_r} (fresh)"}


def row_generate_vllm(ctx: Context) -> dict:
    """The harness's vLLM engine on the saved random weights: start-up seconds and tokens/s (ignore_eos)."""
    import importlib.util

    if importlib.util.find_spec("vllm") is None:
        raise Skip("needs vLLM (pip install 'fedllm-harness[vllm]'); not importable here")
    if not ctx.cuda:
        raise Skip("needs a CUDA GPU")
    import torch
    from vllm import SamplingParams
    from vllm.lora.request import LoRARequest

    from harness.vllm_backend import VllmGenerator

    sizes = ctx.sizes
    cfg, handle = _generation_model(ctx, "hf")  # the training model stays resident beside vLLM, as in a run
    cfg = dataclasses.replace(cfg, generation_backend="vllm")
    start = time.perf_counter()
    engine = VllmGenerator(cfg, ctx.base_dir, torch.bfloat16)
    startup = time.perf_counter() - start
    try:
        tok = handle.tokenizer
        prompts = [handle.chat_prompt(g) for g in advbench_prompts(sizes.vllm_prompts)]
        ids = tok(prompts, add_special_tokens=False, truncation=True, max_length=cfg.max_length)["input_ids"]
        adapter = engine.workdir / "adapter"
        handle.model.save_pretrained(str(adapter), safe_serialization=True)
        request = LoRARequest("adapter", 1, str(adapter))

        def run(rows: list[list[int]], n: int) -> int:
            params = SamplingParams(temperature=0.0, max_tokens=n, ignore_eos=True)
            outs = engine.llm.generate([{"prompt_token_ids": r} for r in rows], params, lora_request=request,
                                       use_tqdm=False)
            return sum(len(o.outputs[0].token_ids) for o in outs)

        run(ids[:2], 8)  # warm-up: the adapter loads
        start = time.perf_counter()
        tokens = run(ids, sizes.vllm_new_tokens)
        seconds = time.perf_counter() - start
        if tokens != len(ids) * sizes.vllm_new_tokens:
            raise RuntimeError(f"vLLM made {tokens} tokens, asked for {len(ids)} x {sizes.vllm_new_tokens}")
    finally:
        shutil.rmtree(engine.workdir, ignore_errors=True)
    del engine, handle
    return {"prompts": len(ids), "new_tokens_each": sizes.vllm_new_tokens, "engine_start_seconds": round(startup, 1),
            "seconds": round(seconds, 2), "tokens_per_s": round(tokens / seconds, 1),
            "gpu_memory_share": cfg.vllm_gpu_memory}


def row_fed_round(ctx: Context) -> dict:
    """One round of ``harness run``'s code path: 2 clients, the lg3 filter on the random guard, FedAvg, no evals."""
    from harness.config import load_config
    from harness.runner import EngineOptions, prepare
    from harness.tracking import default_tracking_uri

    base_dir, guard_dir = ctx.need_weights()
    sizes = ctx.sizes
    out = ctx.workdir / "fed"
    cfg = load_config("smoke", overrides={
        "output_dir": str(out), "tracking.run_name": "gpu-check",
        "model.name": base_dir, "model.max_length": sizes.fed_length, "model.dtype": "bfloat16",
        "model.lora_r": 16, "model.lora_alpha": 32, "model.gradient_checkpointing": sizes.fed_checkpointing,
        "data.source": "demo", "data.num_samples": sizes.fed_samples, "data.heldout_samples": 0,
        "federation.num_clients": 2, "federation.clients_per_round": 2, "federation.rounds": 1,
        "federation.local_steps": sizes.fed_steps, "federation.batch_size": sizes.fed_batch,
        "plugins.filter": "lg3", "plugins.filter_options": {"model": guard_dir, "force": True, "threshold": 1.0},
        "plugins.agg": "fedavg", "plugins.evals": [], "plugins.eval_every": 0,
    })
    summary = prepare(cfg, default_tracking_uri(out), EngineOptions(progress=False)).start()
    if summary.status != "FINISHED":
        raise RuntimeError(f"run {summary.status}: {summary.error}")
    final = summary.final_metrics
    loss = final.get("train/loss", float("nan"))
    if not math.isfinite(loss):
        raise RuntimeError(f"round finished without a finite train/loss: {loss}")
    scored = int(final.get("filter/kept", 0) + final.get("filter/dropped", 0))
    if scored == 0 or final.get("clients/trained", 0) < 1:
        raise RuntimeError(f"the round filtered {scored} samples and trained {final.get('clients/trained')} clients")
    if summary.adapter_path is None or not Path(summary.adapter_path).exists():
        raise RuntimeError(f"no final adapter at {summary.adapter_path}")
    return {"clients": 2, "local_steps": sizes.fed_steps, "batch": f"{sizes.fed_batch}x<={sizes.fed_length}",
            "status": summary.status, "loss": round(loss, 4), "round_seconds": round(final["time/round_seconds"], 2),
            "wall_seconds": round(summary.wall_seconds, 1), "train_tokens": int(final.get("train/tokens", 0)),
            "clients_trained": int(final["clients/trained"]), "filter_scored": scored,
            "filter_kept": int(final.get("filter/kept", 0)), "filter_dropped": int(final.get("filter/dropped", 0))}


# -- driver --------------------------------------------------------------------------------------------------------

def run_row(name: str, fn: Callable[[], dict], memory: Memory | None = None, cleanup: Callable[[], None] = lambda: None,
            ) -> dict:
    """Run one row: ``ok`` with its metrics, ``skipped`` with the reason (:class:`Skip`), or ``failed`` with the error;
    never raises (but KeyboardInterrupt)."""
    row: dict = {"name": name, "status": "ok", "metrics": {}, "reason": None}
    start = time.perf_counter()
    if memory is not None:
        memory.reset()
    try:
        row["metrics"] = fn()
        if memory is not None:
            row["metrics"]["peak_memory_gb"] = memory.peak_gb()
            row["metrics"]["memory"] = memory.kind
    except Skip as exc:
        row.update(status="skipped", reason=str(exc))
    except Exception as exc:  # noqa: BLE001 - a row that fails is reported, the others still run
        row.update(status="failed", reason=f"{type(exc).__name__}: {str(exc)[:500]}",
                   traceback=traceback.format_exc()[-3000:])
    finally:
        try:
            cleanup()
        except Exception:  # noqa: BLE001 - cleanup problems must not hide the row's own result
            pass
    row["row_seconds"] = round(time.perf_counter() - start, 1)
    print(f"[gpu_check] {name}: {row['status']} ({row['row_seconds']} s)"
          + (f" - {row['reason']}" if row["reason"] else ""), file=sys.stderr, flush=True)
    return row


KEY_METRICS = ("seconds_per_step", "tokens_per_s", "samples_per_min", "prompt_tokens_per_s", "mfu_vs_spec_bf16_peak",
               "mfu_vs_measured_bf16_matmul", "engine_start_seconds", "loss", "round_seconds", "peak_memory_gb",
               "seconds")


def table(rows: list[dict]) -> str:
    """One plain-text table: row, status, the main metrics, the reason where not ok."""
    lines = []
    for row in rows:
        m = row["metrics"]
        shown = ", ".join(f"{k}={m[k]}" for k in KEY_METRICS if k in m)
        detail = shown if row["status"] == "ok" else row["reason"]
        lines.append((row["name"], row["status"], f"{row['row_seconds']}", detail))
    widths = [max(len(x[i]) for x in [("row", "status", "s", ""), *lines]) for i in range(3)]
    out = [f"{'row':<{widths[0]}}  {'status':<{widths[1]}}  {'s':>{widths[2]}}  measured / reason"]
    out.append("-" * (sum(widths) + 24))
    out += [f"{a:<{widths[0]}}  {b:<{widths[1]}}  {c:>{widths[2]}}  {d}" for a, b, c, d in lines]
    return "\n".join(out)


def machine_info(ctx: Context) -> dict:
    import torch
    import transformers

    info = {"mode": "tiny" if ctx.tiny else "paper", "device": ctx.device, "torch": torch.__version__,
            "transformers": transformers.__version__, "python": platform.python_version(),
            "cpu_threads": torch.get_num_threads()}
    if ctx.cuda:
        props = torch.cuda.get_device_properties(0)
        info.update(gpu=torch.cuda.get_device_name(), gpu_memory_gb=round(props.total_memory / 2**30, 1),
                    cuda=torch.version.cuda)
    try:
        import vllm

        info["vllm"] = vllm.__version__
    except Exception:  # noqa: BLE001 - absent or broken: the vLLM row says which
        info["vllm"] = None
    info["bf16_matmul_peak_tflops"] = sig(ctx.matmul_peak / 1e12) if ctx.matmul_peak else None
    info["spec_bf16_peak_tflops"] = round(ctx.spec_peak / 1e12) if ctx.spec_peak else None
    return info


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tiny", action="store_true", help="the tiny configs and sizes (automatic without CUDA)")
    parser.add_argument("--out", type=Path, default=Path("gpu_check.json"),
                        help="the JSON report (default: %(default)s)")
    parser.add_argument("--only", action="append", choices=ROWS, help="run only this row (repeatable; save-weights "
                        "always runs unless --model and --guard-model are given)")
    parser.add_argument("--workdir", type=Path, help="where the random weights and the run go (default: a new "
                        "temporary folder)")
    parser.add_argument("--keep", action="store_true", help="keep the work folder (weights, run) afterwards")
    parser.add_argument("--model", help="a local base checkpoint to use instead of random weights")
    parser.add_argument("--guard-model", help="a local guard checkpoint to use instead of random weights")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # nothing from outside: a missing file fails, never downloads
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
    os.environ.setdefault("VLLM_NO_USAGE_STATS", "1")
    os.environ.setdefault("DO_NOT_TRACK", "1")
    import torch

    from tests.perf.model_configs import CONFIGS
    from tests.perf.peak import matmul_flops

    cuda = torch.cuda.is_available()
    tiny = args.tiny or not cuda
    if not cuda and not args.tiny:
        print("[gpu_check] no CUDA GPU: running the tiny configs on the CPU (--tiny)", file=sys.stderr)
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="gpu-check-"))
    workdir.mkdir(parents=True, exist_ok=True)
    base_config, guard_config = CONFIGS["tiny" if tiny else "paper"]
    ctx = Context(tiny=tiny, cuda=cuda, sizes=TINY_SIZES if tiny else paper_sizes(), workdir=workdir,
                  base_config=base_config, guard_config=guard_config, memory=Memory(cuda))
    started = time.perf_counter()
    ctx.matmul_peak = max(matmul_flops(n, ctx.device, min_seconds=0.2, dtype=torch.bfloat16)
                          for n in ctx.sizes.peak_sizes)
    ctx.spec_peak = spec_peak_flops(torch.cuda.get_device_name()) if cuda else None
    wanted = set(args.only or ROWS)
    if not (args.model and args.guard_model):
        wanted.add("save-weights")
    plan: dict[str, Callable[[], dict]] = {
        "save-weights": lambda: row_save_weights(ctx, args.model, args.guard_model),
        "train-bf16": lambda: row_train(ctx, "none"),
        "train-4bit": lambda: row_train(ctx, "4bit"),
        "guard-scoring": lambda: row_guard(ctx),
        "generate-hf": lambda: row_generate_hf(ctx),
        "fed-round": lambda: row_fed_round(ctx),
        "generate-vllm": lambda: row_generate_vllm(ctx),
    }
    if args.model and args.guard_model:
        ctx.base_dir, ctx.guard_dir = args.model, args.guard_model
    rows = []
    try:
        for name in ROWS:
            if name in wanted:
                rows.append(run_row(name, plan[name], ctx.memory, cleanup=lambda: _free(ctx)))
    finally:
        if not args.keep and args.workdir is None:
            shutil.rmtree(workdir, ignore_errors=True)
    report = {"machine": machine_info(ctx), "total_seconds": round(time.perf_counter() - started, 1),
              "workdir": str(workdir) if args.keep or args.workdir else None, "rows": rows}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=1))
    print(table(rows))
    print(f"\n{report['machine']['mode']} mode on {report['machine'].get('gpu', 'cpu')}, "
          f"{report['total_seconds']} s in all; JSON: {args.out}")
    return 1 if any(r["status"] == "failed" for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
