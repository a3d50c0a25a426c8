"""Per-round CAI time: `cai50` (50 iterations) vs `cai-epoch` (one epoch of SFT + DPO) on the same data.

The paper reports 80 min -> 3.2 min (-96%) on S-CAI20K; the reduction grows with the CAI set
size (an epoch is 2 * ceil(pairs / batch_size) steps). Run with
``pytest tests/benchmarks/test_bench_cai.py --benchmark-only -s``; ``CAI_BENCH_PAIRS`` (default
400), ``CAI_BENCH_MODEL`` (default tiny-random; smollm2-135m for the real model) and
``CAI_BENCH_BATCH`` (default 8) size it.
"""

import os
import time

from harness import registry as plugin_registry
from harness.cai.dataset import RECORDS_FILE, CaiRecord, record_line
from harness.config import ModelConfig
from harness.data.demo import demo_refusals, demo_samples
from harness.model_handle import GlobalModel
from harness.models import attach_lora, load_base

PAIRS = int(os.environ.get("CAI_BENCH_PAIRS", "400"))
MODEL = os.environ.get("CAI_BENCH_MODEL", "tiny-random")
BATCH = int(os.environ.get("CAI_BENCH_BATCH", "8"))


def test_cai50_vs_cai_epoch_round_time(benchmark, tmp_path):
    _, harmful = demo_samples(0, PAIRS, seed=0)
    refusals = demo_refusals(PAIRS, seed=0)
    records = [CaiRecord(h.prompt, "harm", h.response, "It helps with harm.", r.response) for h, r in zip(harmful, refusals)]
    (tmp_path / RECORDS_FILE).write_text("".join(record_line(r) for r in records))
    cfg = ModelConfig(name=MODEL, max_length=128)
    base, tok = load_base(cfg)
    model = GlobalModel(attach_lora(base, cfg, seed=0), tok, cfg.max_length)
    start_state = model.adapter_state()
    options = {"data": str(tmp_path), "batch_size": BATCH}

    epoch = plugin_registry.instantiate("align", "cai-epoch", options)
    epoch.aligner.dataset(model)  # tokenize outside the timed round, as cai50's setup is below
    t = time.perf_counter()
    epoch_metrics = epoch.post_aggregate(server_round=1, model=model).metrics
    epoch_seconds = time.perf_counter() - t

    model.load_adapter_state(start_state)
    cai50 = plugin_registry.instantiate("align", "cai50", options)
    cai50.aligner.dataset(model)
    result = benchmark.pedantic(lambda: cai50.post_aggregate(server_round=1, model=model), rounds=1, iterations=1)
    cai50_seconds = benchmark.stats.stats.mean
    reduction = 1 - cai50_seconds / epoch_seconds
    benchmark.extra_info.update(
        model=MODEL, pairs=PAIRS, batch_size=BATCH, cai50_seconds=cai50_seconds, epoch_seconds=epoch_seconds,
        epoch_steps=epoch_metrics["sft_steps"] + epoch_metrics["dpo_steps"], reduction=reduction,
    )
    print(
        f"\nCAI per round on {MODEL}, {PAIRS} pairs, batch {BATCH}: cai-epoch {epoch_seconds:.1f} s "
        f"({epoch_metrics['sft_steps']:.0f}+{epoch_metrics['dpo_steps']:.0f} steps), cai50 {cai50_seconds:.1f} s "
        f"(25+25 steps): {100 * reduction:.0f}% less"
    )
    assert result.metrics["sft_steps"] + result.metrics["dpo_steps"] == 50
