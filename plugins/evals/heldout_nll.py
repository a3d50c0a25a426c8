"""`heldout-nll`: mean per-token negative log-likelihood of held-out acceptable replies.

A quick, generation-free signal for smoke runs on the project's demo smoke set (a seed the
client mixture never draws). Real benchmarks are the advbench/hhh/mtbench plugins.
"""

from __future__ import annotations

from harness.data.demo import demo_refusals, demo_samples
from harness.hookspecs import hookimpl
from harness.types import EvalResult

HELD_OUT_SEED = 10_007


class HeldOutNLL:
    def __init__(self, num_items: int = 32):
        self.num_items = num_items

    @hookimpl
    def evaluate(self, server_round, model, limit):
        n = min(self.num_items, limit or self.num_items)
        benign, _ = demo_samples(n - n // 2, 0, HELD_OUT_SEED)
        items = benign + demo_refusals(n // 2, HELD_OUT_SEED)
        contexts = [model.chat_prompt(s.prompt) for s in items]
        replies = [s.response for s in items]
        logps = model.completion_logprobs(contexts, replies)
        tokens = [len(model.tokenizer(r, add_special_tokens=False)["input_ids"]) for r in replies]
        return EvalResult(metrics={"heldout/nll": -sum(logps) / sum(tokens)})
