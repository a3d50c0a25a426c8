"""bf16 vs fp32 base for local LoRA training (issue #20, item 1): which ``model.dtype`` is faster on this machine.

``test_bf16_vs_fp32_step_time``: the demo preset's training step (batch 4, max_length 128, LoRA r=16 on q/v,
AdamW, float32 adapter) with the base in float32 and in bfloat16, alternating one step of each so that a
shared machine's load hits both alike; reports the median seconds per step and their ratio (report only: the
``auto`` default stays float32 on CPUs, docs/performance.md). ``HARNESS_BENCH_MODEL`` / ``_THREADS`` /
``_ROUNDS`` (steps per dtype, default 6) as in the other benchmarks.
"""

from __future__ import annotations

import os
import statistics

import numpy as np
import torch

from harness.adapters import trainable_params
from harness.config import load_config
from harness.models import attach_lora
from tests.perf.models import bench_device, bench_model, load_bench_base
from harness.training import local_train
from test_bench_training import demo_client_data

MODEL = bench_model("smollm2-135m")
STEPS = int(os.environ.get("HARNESS_BENCH_ROUNDS", "6"))
if os.environ.get("HARNESS_BENCH_THREADS"):
    torch.set_num_threads(int(os.environ["HARNESS_BENCH_THREADS"]))


def test_bf16_vs_fp32_step_time(benchmark):
    device = bench_device()
    cfg = load_config("demo", overrides={"model.name": MODEL})
    fed = cfg.federation
    runs = {}
    for dtype in (torch.float32, torch.bfloat16):
        base, tok = load_bench_base(cfg.model, device)
        model = attach_lora(base.to(dtype), cfg.model, fed.seed)
        assert {p.dtype for p in trainable_params(model).values()} == {torch.float32}
        runs[dtype] = (model, trainable_params(model), tok, [])
    data = demo_client_data(runs[torch.float32][2], cfg)
    order = np.random.default_rng([fed.seed, 0]).permutation(len(data)).tolist()

    def step(dtype: torch.dtype, cursor: int) -> float:
        model, params, tok, _ = runs[dtype]
        info, _ = local_train(model, params, data, order, cursor, 1, fed.batch_size, fed.lr, fed.local_optimizer,
                              tok.pad_token_id, max_grad_norm=fed.max_grad_norm)
        return info.step_seconds

    for dtype in runs:  # warm-up
        step(dtype, 0)
    for i in range(STEPS):
        for dtype, (*_, times) in runs.items():
            times.append(step(dtype, (i * fed.batch_size) % len(order)))
    fp32, bf16 = (statistics.median(runs[d][3]) for d in (torch.float32, torch.bfloat16))
    benchmark.extra_info.update({"model": MODEL, "threads": torch.get_num_threads(), "fp32_s_per_step": fp32,
                                 "bf16_s_per_step": bf16, "bf16_over_fp32": bf16 / fp32,
                                 "load": os.getloadavg()[0]})
    print(f"\n{MODEL}, {torch.get_num_threads()} threads: fp32 {fp32:.3f} s/step, bf16 {bf16:.3f} s/step, "
          f"ratio {bf16 / fp32:.2f} (load {os.getloadavg()[0]:.1f})")
    benchmark.pedantic(step, args=(torch.bfloat16, 0), rounds=1, iterations=1)
