"""Filter throughput (samples/s) for lg3 on smollm2-135m and for embed-lr, each against a plain
batched forward pass over the same inputs (file order, right padding, full logits).

Run with ``pytest tests/benchmarks/test_bench_filter.py --benchmark-only -s`` (needs ../shared/data);
the numbers land in pytest-benchmark's ``extra_info`` and are printed. Goal: ratio >= 0.9.
"""

from __future__ import annotations

import time

import pytest
import torch

from harness.guard.embedding import SentenceEncoder
from harness.guard.labelled import DataSpec, labelled_set
from harness.guard.settings import FilterTrainSettings
from harness.guard.template import render_guard_prompt
from harness.default_plugins.filters.embed_lr import EmbedLRFilter
from harness.default_plugins.filters.lg3 import LlamaGuardFilter

SAMPLES, BATCH = 48, 8


@pytest.fixture(scope="module")
def samples(shared_data):
    return labelled_set([DataSpec("square", str(shared_data / "square"))], "test", max_per_class=SAMPLES // 2)


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def report(benchmark, name: str, n: int, filter_seconds: float, plain_seconds: float) -> float:
    ratio = plain_seconds / filter_seconds
    benchmark.extra_info.update(samples_per_s=n / filter_seconds, plain_samples_per_s=n / plain_seconds, ratio=ratio)
    print(f"\n{name}: filter {n / filter_seconds:.1f} samples/s, plain forward {n / plain_seconds:.1f} samples/s,"
          f" ratio {ratio:.2f}")
    return ratio


def test_lg3_smollm2_throughput_vs_plain_forward(benchmark, samples):
    plugin = LlamaGuardFilter(model="smollm2-135m", batch_size=BATCH)
    guard = plugin.scorer.guard
    tok, model = guard.tokenizer, guard.model
    texts = [render_guard_prompt(tok, s.prompt, s.response) for s in samples]

    @torch.no_grad()
    def plain():
        for start in range(0, len(texts), BATCH):
            enc = tok(texts[start : start + BATCH], return_tensors="pt", padding=True, add_special_tokens=False)
            model(**enc)

    plain()  # warm-up
    plain_seconds = timed(plain)
    seconds = {}

    def run_filter():  # a fresh cache each round: time the scoring, not the memo
        plugin.cache.clear()
        seconds["filter"] = timed(lambda: plugin.pre_local_train(client_id=0, samples=samples, server_round=1))

    benchmark.pedantic(run_filter, rounds=1, iterations=1)
    assert report(benchmark, "lg3 smollm2-135m", len(samples), seconds["filter"], plain_seconds) >= 0.9


def test_embed_lr_throughput_vs_plain_forward(benchmark, samples, shared_data, tmp_path):
    train = labelled_set([DataSpec("square", str(shared_data / "square"))], "train", max_per_class=32)
    EmbedLRFilter.train(train, tmp_path, None, FilterTrainSettings(batch_size=32))
    plugin = EmbedLRFilter(model=str(tmp_path), batch_size=32)
    encoder = SentenceEncoder(batch_size=32)
    responses = [s.response for s in samples]

    @torch.no_grad()
    def plain():
        for start in range(0, len(responses), 32):
            enc = encoder.tokenizer(responses[start : start + 32], padding=True, truncation=True, max_length=256,
                                    return_tensors="pt")
            encoder.model(**enc)

    plain()
    plain_seconds = timed(plain)
    seconds = {}

    def run_filter():
        plugin.cache.clear()
        seconds["filter"] = timed(lambda: plugin.pre_local_train(client_id=0, samples=samples, server_round=1))

    benchmark.pedantic(run_filter, rounds=1, iterations=1)
    assert report(benchmark, "embed-lr", len(samples), seconds["filter"], plain_seconds) >= 0.9
