"""Eval throughput: AdvBench generation against a plain batched ``model.generate`` loop, and HHH items/s.

Run with ``pytest tests/benchmarks/test_bench_eval.py --benchmark-only -s`` (needs ../shared/data);
the numbers land in pytest-benchmark's ``extra_info`` and are printed.
"""

from __future__ import annotations

import json
import time

import pytest
import torch

from harness.config import ModelConfig
from harness.evals.files import data_file
from harness.evals.loaders import load_advbench
from harness.model_handle import GlobalModel
from harness.models import attach_lora, load_base
from harness.default_plugins.evals.advbench import ADVBENCH_FILE, AdvBench
from harness.default_plugins.evals.hhh import HHH

ITEMS, NEW_TOKENS, BATCH = 16, 32, 8


@pytest.fixture(scope="module", params=["tiny-random", "smollm2-135m"])
def model(request) -> GlobalModel:
    cfg = ModelConfig(name=request.param, max_length=256)
    base, tok = load_base(cfg)
    return GlobalModel(attach_lora(base, cfg, seed=0), tok, cfg.max_length)


def count_tokens(model: GlobalModel, texts: list[str]) -> int:
    return sum(len(model.tokenizer(t, add_special_tokens=False)["input_ids"]) for t in texts)


@torch.no_grad()
def plain_generate(model: GlobalModel, prompts: list[str]) -> list[str]:
    """The baseline: batches in file order, left padding, greedy, no length sorting."""
    tok, out = model.tokenizer, []
    tok.padding_side = "left"
    for start in range(0, len(prompts), BATCH):
        enc = tok(prompts[start : start + BATCH], return_tensors="pt", padding=True, add_special_tokens=False)
        gen = model.model.generate(**enc, max_new_tokens=NEW_TOKENS, do_sample=False,
                                   pad_token_id=tok.pad_token_id, use_cache=True)
        out += tok.batch_decode(gen[:, enc["input_ids"].shape[1] :], skip_special_tokens=True)
    tok.padding_side = "right"
    return out


def test_advbench_throughput_vs_plain_generate(benchmark, model, shared_data):
    goals = load_advbench(data_file(ADVBENCH_FILE, shared_data))[:ITEMS]
    prompts = [model.chat_prompt(g) for g in goals]
    plain_generate(model, prompts[:BATCH])  # warm-up

    def plain_tokens_per_s() -> float:
        start = time.perf_counter()
        plain = plain_generate(model, prompts)
        return count_tokens(model, plain) / (time.perf_counter() - start)

    before = plain_tokens_per_s()

    plugin = AdvBench(data=str(shared_data), max_new_tokens=NEW_TOKENS, batch_size=BATCH)
    timing = {}

    def evaluate():
        t = time.perf_counter()
        result = plugin.evaluate(server_round=1, model=model, limit=ITEMS)
        timing["seconds"] = time.perf_counter() - t
        return result

    result = benchmark.pedantic(evaluate, rounds=1, iterations=1)
    rows = [json.loads(line) for line in result.artifacts["advbench_responses.jsonl"].splitlines()]
    plugin_tps = count_tokens(model, [row["response"] for row in rows]) / timing["seconds"]
    plain_tps = (before + plain_tokens_per_s()) / 2  # measured either side of the plugin (shared CPUs drift)
    ratio = plugin_tps / plain_tps
    benchmark.extra_info.update(plugin_tokens_per_s=plugin_tps, plain_tokens_per_s=plain_tps, ratio=ratio)
    print(f"\nadvbench {model.tokenizer.name_or_path or 'tiny-random'}: plugin {plugin_tps:.1f} tok/s (whole evaluate), plain loop {plain_tps:.1f} tok/s,"
          f" ratio {ratio:.2f}")
    assert ratio >= 0.9


def test_hhh_items_per_second(benchmark, model, shared_data):
    plugin = HHH(data=str(shared_data), sets=["cai438"], batch_size=8)
    items = 8
    result = benchmark.pedantic(lambda: plugin.evaluate(server_round=1, model=model, limit=items), rounds=1, iterations=1)
    assert result.metrics["hhh/cai438/items"] == items
    rate = items / benchmark.stats.stats.mean
    benchmark.extra_info["items_per_s"] = rate
    print(f"\nhhh cai438 {model.tokenizer.name_or_path or 'tiny-random'}: {rate:.2f} items/s (2 orders x 2 options each)")
