"""Held-out NLL on benign text: BIG-bench HHH's better replies to its helpful, honest and other requests.

``python -m tests.perf.benign_nll [ADAPTER_DIR ...]`` prints the mean per-token NLL of those 163 replies (after the
request in the chat template) under the untuned SmolLM2-135M-Instruct, the shipped safe base and each
``harness safety-tune`` output given (merged into the float32 base, then bfloat16, as the safe base is), and each
one's paired difference from the untuned model with a bootstrap 95 % interval. docs/safe-base.md ("Benign text")
has the numbers. The set ships with the harness.
"""

from __future__ import annotations

import sys

import numpy as np
import torch
from peft import PeftModel

from harness.config import ModelConfig
from harness.default_plugins.evals.hhh import bigbench_files
from harness.evals.loaders import human_text, load_bigbench_hhh
from harness.model_handle import GlobalModel
from harness.models import load_base

MODELS = ("smollm2-135m", "smollm2-135m-safe")


def load(name: str):
    """A model name, or a safety-tune adapter directory merged into SmolLM2 as the shipped safe base is."""
    if name in MODELS:
        return load_base(ModelConfig(name=name, max_length=512, dtype="auto"))
    base, tok = load_base(ModelConfig(name=MODELS[0], max_length=512, dtype="float32"))
    merged = PeftModel.from_pretrained(base, name).merge_and_unload().to(torch.bfloat16)
    return merged.requires_grad_(True), tok  # unfrozen, as load_base returns a model


def per_token_nll(name: str, items) -> np.ndarray:
    base, tok = load(name)
    model = GlobalModel(base, tok, 512)
    contexts = [model.chat_prompt(human_text(item.context)) for item in items]
    replies = [item.options[item.correct].strip() + tok.eos_token for item in items]
    logps = model.completion_logprobs(contexts, replies, batch_size=8)
    lengths = [len(tok(reply, add_special_tokens=False)["input_ids"]) for reply in replies]
    return -np.array(logps) / np.array(lengths)


def main() -> None:
    items = [i for i in load_bigbench_hhh(bigbench_files(None)) if i.subset in ("helpful", "honest", "other")]
    nll = {name: per_token_nll(name, items) for name in (*MODELS, *sys.argv[1:])}
    for name, values in nll.items():
        print(f"{name}: {len(values)} replies, mean per-token NLL {values.mean():.3f}")
    for name in list(nll)[1:]:
        diff = nll[name] - nll[MODELS[0]]
        rng = np.random.default_rng(0)
        boots = [diff[rng.integers(0, len(diff), len(diff))].mean() for _ in range(10_000)]
        low, high = np.percentile(boots, [2.5, 97.5])
        print(f"{name} - untuned: {diff.mean():+.3f} (95 % interval {low:+.3f} to {high:+.3f}), "
              f"higher on {(diff > 0).sum()} of {len(diff)}")


if __name__ == "__main__":
    main()
