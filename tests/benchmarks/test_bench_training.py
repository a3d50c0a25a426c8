"""Local LoRA training efficiency (issue #8, item 2) and padding waste (item 5).

* ``test_training_flops_vs_matmul_peak``: achieved FLOP/s of local training (forward + backward FLOPs
  counted by :mod:`tests.perf.flops` for the real tokens of each batch) over this machine's fp32
  matmul FLOP/s (:mod:`tests.perf.peak`, measured between the training rounds, same threads), with the
  demo preset's training settings (batch 4, max_length 128, LoRA r=16 on q/v, AdamW). Goal >= 0.5.
  Then a torch.profiler breakdown: attention, MLP, LM head + loss, optimizer, data, other.
* ``test_padding_waste``: padded share of local-training batches (before/after length bucketing) on the
  demo data and the shared SQuARe / hh-rlhf data (SmolLM2 tokenizer), and of eval batches. Goal <= 20%.

Run with ``pytest tests/benchmarks/test_bench_training.py --benchmark-only -s``. ``HARNESS_BENCH_MODEL``
picks the model (default smollm2-135m; ``smollm2-arch`` = its shapes with random weights, for machines
without the checkpoint), ``HARNESS_BENCH_THREADS`` the torch threads. On a machine with CUDA it runs there.
"""

from __future__ import annotations

import os
import statistics
import time

import numpy as np
import torch

from harness.config import load_config
from harness.data.mixture import build_mixture
from harness.data.partition import partition
from harness.data.sources import load_labelled
from harness.model_handle import GlobalModel
from harness.models import attach_lora
from tests.perf.flops import Arch, batch_flops
from tests.perf.models import bench_device, bench_model, load_bench_base, smollm2_tokenizer
from tests.perf.peak import matmul_peak
from tests.perf.profile import GROUPS, profiled
from harness.training import batch_plan, collate, local_train, tokenize_samples

MODEL = bench_model("smollm2-135m")
STRICT = os.environ.get("HARNESS_BENCH_STRICT") == "1"
if os.environ.get("HARNESS_BENCH_THREADS"):
    torch.set_num_threads(int(os.environ["HARNESS_BENCH_THREADS"]))


def demo_client_data(tok, cfg):
    """The demo preset's client 0: its samples tokenized as the engine does."""
    acceptable, harmful = load_labelled(cfg.data.source, None, cfg.data.num_samples, cfg.federation.seed)
    samples = build_mixture(acceptable, harmful, cfg.data.num_samples, cfg.data.harmful_ratio, cfg.federation.seed)
    parts = partition(samples, cfg.federation.num_clients, "iid", 0.5, cfg.federation.seed)
    return tokenize_samples(tok, [samples[i] for i in parts[0]], cfg.model.max_length)


def test_training_flops_vs_matmul_peak(benchmark):
    device = bench_device()
    cfg = load_config("demo", overrides={"model.name": MODEL})
    fed, mc = cfg.federation, cfg.model
    base, tok = load_bench_base(mc, device)
    model = attach_lora(base, mc, fed.seed)
    handle = GlobalModel(model, tok, mc.max_length)
    arch = Arch.from_config(base.config)
    data = demo_client_data(tok, cfg)
    order = np.random.default_rng([fed.seed, 0]).permutation(len(data)).tolist()
    sizes = sorted({arch.hidden, arch.intermediate, 2048})

    def train_round(cursor: int):
        plan = batch_plan(data, order, cursor, fed.local_steps, fed.batch_size)
        info, cursor = local_train(model, handle.params, data, order, cursor, fed.local_steps, fed.batch_size,
                                   fed.lr, fed.local_optimizer, tok.pad_token_id)
        flops = sum(batch_flops(arch, data.input_ids, data.labels, b, mc.lora_r, mc.target_modules).total for b in plan)
        return info, flops, cursor

    _, _, cursor = train_round(0)  # warm-up (allocator, kernels)
    rounds = int(os.environ.get("HARNESS_BENCH_ROUNDS", "4"))
    rows = []
    for _ in range(rounds):  # alternate peak and training so both see the same machine load
        peak = matmul_peak(sizes, device)
        info, flops, cursor = train_round(cursor)
        rows.append({"peak": max(peak.values()), "peak_by_size": peak, "achieved": flops / info.step_seconds,
                     "step_s": info.step_seconds / info.steps, "tokens": info.num_tokens, "flops": flops,
                     "padding": info.padding_fraction})
    ratio = statistics.median(r["achieved"] / r["peak"] for r in rows)
    peak_by_size = {n: statistics.median(r["peak_by_size"][n] for r in rows) for n in sizes}

    plan = batch_plan(data, order, cursor, fed.local_steps, fed.batch_size)
    parts = {}
    for b in plan:
        for k, v in batch_flops(arch, data.input_ids, data.labels, b, mc.lora_r, mc.target_modules).by_part().items():
            parts[k] = parts.get(k, 0.0) + v
    with profiled(model) as groups:
        info, cursor = local_train(model, handle.params, data, order, cursor, fed.local_steps, fed.batch_size,
                                   fed.lr, fed.local_optimizer, tok.pad_token_id)
    total = sum(groups.values())
    info_out = {
        "model": MODEL, "device": str(device), "threads": torch.get_num_threads(), "load_avg": os.getloadavg()[0],
        "achieved_gflops": statistics.median(r["achieved"] for r in rows) / 1e9,
        "peak_gflops": statistics.median(r["peak"] for r in rows) / 1e9,
        "peak_gflops_by_size": {n: v / 1e9 for n, v in peak_by_size.items()},
        "efficiency": ratio, "efficiency_goal_met": ratio >= 0.5,
        "step_s": statistics.median(r["step_s"] for r in rows), "padding_fraction": rows[-1]["padding"],
        "flops_per_step": statistics.median(r["flops"] for r in rows) / fed.local_steps,
        "flop_share": {k: v / sum(parts.values()) for k, v in parts.items()},
        "profile_share": {g: groups[g] / total for g in GROUPS},
    }
    benchmark.extra_info.update(info_out)
    print(f"\n{MODEL} on {device}, {info_out['threads']} threads (load {info_out['load_avg']:.1f}): "
          f"{info_out['step_s']:.2f} s/step, {info_out['achieved_gflops']:.1f} GFLOP/s achieved, matmul peak "
          f"{info_out['peak_gflops']:.1f} GFLOP/s (by size: "
          + ", ".join(f"{n}: {v:.1f}" for n, v in info_out["peak_gflops_by_size"].items())
          + f"), efficiency {ratio:.2f} (goal >= 0.5)")
    print("FLOPs by part: " + ", ".join(f"{k} {v:.0%}" for k, v in info_out["flop_share"].items()))
    print("time by group: " + ", ".join(f"{g} {v:.0%}" for g, v in info_out["profile_share"].items()))
    benchmark.pedantic(train_round, args=(cursor,), rounds=1, iterations=1)
    if STRICT:
        assert ratio >= 0.5


def plan_padding(data, order, steps: int, batch_size: int, rounds: int, window: int | None) -> float:
    """Mean padded share of the batches of ``rounds`` consecutive rounds of one client."""
    cursor, fractions = 0, []
    for _ in range(rounds):
        kwargs = {} if window is None else {"bucket_window": window}
        for b in batch_plan(data, order, cursor, steps, batch_size, **kwargs):
            fractions.append(collate(data, b, 0)[1])
        cursor = (cursor + steps * batch_size) % len(order)
    return float(np.mean(fractions))


# (name, source, path under shared data, samples, clients, batch, steps, max_length)
TRAIN_SETS = [
    ("demo preset", "demo", None, 120, 6, 4, 4, 128),
    ("square, paper batch", "square", "square", 300, 5, 16, 25, 512),
    ("hh-rlhf, paper batch", "hh-rlhf", "hh_rlhf", 1000, 5, 16, 25, 512),
    ("hh-rlhf, demo batch", "hh-rlhf", "hh_rlhf", 1000, 5, 4, 4, 256),
]


def test_padding_waste(benchmark, shared_data):
    tok = smollm2_tokenizer()
    results = {}
    for name, source, sub, n, clients, batch, steps, max_length in TRAIN_SETS:
        acceptable, harmful = load_labelled(source, str(shared_data / sub) if sub else None, n, 0)
        samples = build_mixture(acceptable, harmful, n, 0.3, 0)
        before, after = [], []
        for cid, part in enumerate(partition(samples, clients, "iid", 0.5, 0)):
            data = tokenize_samples(tok, [samples[i] for i in part], max_length)
            order = np.random.default_rng([0, cid]).permutation(len(data)).tolist()
            before.append(plan_padding(data, order, steps, batch, 5, window=1))
            after.append(plan_padding(data, order, steps, batch, 5, window=None))
        results[name] = {"before": float(np.mean(before)), "after": float(np.mean(after))}
    results.update(eval_padding(shared_data))
    benchmark.extra_info.update({f"{k}/{kk}": vv for k, v in results.items() for kk, vv in v.items()})
    print()
    for name, r in results.items():
        print(f"padding {name}: " + ", ".join(f"{k} {v:.1%}" for k, v in r.items() if k != "seconds"))
    benchmark.pedantic(plan_padding, args=(data, order, steps, batch, 5, None), rounds=1, iterations=1)
    worst = max(r.get("after", r.get("padded")) for r in results.values())
    if STRICT:
        assert worst <= 0.20


def eval_padding(shared_data) -> dict[str, dict[str, float]]:
    """Padded share of the eval plugins' model calls (prefill only: generation stops at one new token)."""
    from harness.data.demo import demo_samples
    from harness.default_plugins.evals.advbench import AdvBench
    from harness.default_plugins.evals.heldout_nll import HeldOutNLL
    from harness.default_plugins.evals.hhh import HHH

    mc = load_config("demo", overrides={"model.name": MODEL}).model
    heldout = HeldOutNLL(num_items=32)
    heldout.heldout = demo_samples(32, 0, 10_007)[0]  # what a run's RunInfo.heldout would hold
    base, tok = load_bench_base(mc, bench_device())
    model = GlobalModel(attach_lora(base, mc, 0), tok, mc.max_length)
    counts = {"real": 0, "all": 0}

    def count(module, args, kwargs):
        mask = kwargs.get("attention_mask")
        ids = kwargs.get("input_ids")
        if mask is not None and ids is not None and ids.shape[1] > 1:  # prefill / scoring calls
            counts["real"] += int(mask[:, -ids.shape[1]:].sum())
            counts["all"] += ids.numel()

    hook = base.register_forward_pre_hook(count, with_kwargs=True)
    out = {}
    try:
        for name, plugin, limit in [
            ("eval advbench (generate)", AdvBench(data=str(shared_data), max_new_tokens=1, batch_size=16), 64),
            ("eval hhh cai438 (scoring)", HHH(data=str(shared_data), sets=["cai438"], batch_size=8), 32),
            ("eval heldout-nll (scoring)", heldout, 32),
        ]:
            counts.update(real=0, all=0)
            start = time.perf_counter()
            plugin.evaluate(server_round=1, model=model, limit=limit)
            out[name] = {"padded": 1 - counts["real"] / max(counts["all"], 1), "seconds": time.perf_counter() - start}
    finally:
        hook.remove()
    return out
