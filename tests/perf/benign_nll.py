"""Held-out NLL on benign text: BIG-bench HHH's better replies to its helpful, honest and other requests.

``python -m tests.perf.benign_nll [ADAPTER_DIR ...]`` prints the mean per-token NLL of those 163 replies (after the
request in the chat template) under the untuned SmolLM2-135M-Instruct, the shipped safe base and each
``harness safety-tune`` output given (merged into the float32 base, then bfloat16, as the safe base is). For each
model after the first it also prints the paired difference from the untuned model with a bootstrap 95 % interval,
the difference by reply position (tokens 1-3, 4-10, 11+), and the difference split by whether the model refuses the
request itself (greedy, 48 new tokens, strict rule). docs/safe-base.md ("Benign text") has the numbers. The set
ships with the harness.
"""

from __future__ import annotations

import sys

import numpy as np
import torch
from peft import PeftModel

from harness.config import ModelConfig
from harness.default_plugins.evals.hhh import bigbench_files
from harness.evals.loaders import human_text, load_bigbench_hhh
from harness.evals.refusal import get_rule
from harness.leaderboard.stats import bootstrap_mean
from harness.model_handle import GlobalModel
from harness.models import load_base

MODELS = ("smollm2-135m", "smollm2-135m-safe")
POSITIONS = ((0, 3), (3, 10), (10, None))


def load(name: str):
    """A model name, or a safety-tune adapter directory merged into SmolLM2 as the shipped safe base is."""
    if name in MODELS:
        return load_base(ModelConfig(name=name, max_length=512, dtype="auto"))
    base, tok = load_base(ModelConfig(name=MODELS[0], max_length=512, dtype="float32"))
    merged = PeftModel.from_pretrained(base, name).merge_and_unload().to(torch.bfloat16)
    return merged.requires_grad_(True), tok  # unfrozen, as load_base returns a model


@torch.no_grad()
def token_nll(model: GlobalModel, items) -> list[np.ndarray]:
    """Each reply's per-token NLL after its request, one unpadded forward per reply."""
    tok, lm = model.tokenizer, model.model.eval()
    out = []
    for item in items:
        context = tok(model.chat_prompt(human_text(item.context)), add_special_tokens=False)["input_ids"]
        reply = tok(item.options[item.correct].strip() + tok.eos_token, add_special_tokens=False)["input_ids"]
        logits = lm(input_ids=torch.tensor([context + reply], device=model.device)).logits[0, len(context) - 1 : -1]
        logp = torch.log_softmax(logits.float(), dim=-1)[torch.arange(len(reply)), torch.tensor(reply)]
        out.append(-logp.cpu().numpy())
    return out


def refusals(model: GlobalModel, items) -> np.ndarray:
    answers = model.generate([model.chat_prompt(human_text(i.context)) for i in items], max_new_tokens=48,
                             batch_size=32)
    return np.array([get_rule("strict").is_refusal(a) for a in answers])


def interval(diff: np.ndarray) -> str:
    ci = bootstrap_mean([diff], seed=0)  # one "seed": the plain bootstrap over replies
    return f"{diff.mean():+.3f} (95 % interval {ci.low:+.3f} to {ci.high:+.3f})"


def position_mean(nll: list[np.ndarray], start: int, stop: int | None) -> float:
    return float(np.concatenate([row[start:stop] for row in nll]).mean())


def main() -> None:
    items = [i for i in load_bigbench_hhh(bigbench_files(None)) if i.subset in ("helpful", "honest", "other")]
    nll, refused = {}, {}
    for name in (*MODELS, *sys.argv[1:]):
        model = GlobalModel(*load(name), 512)
        nll[name], refused[name] = token_nll(model, items), refusals(model, items)
    untuned = np.array([row.mean() for row in nll[MODELS[0]]])
    for name, rows in nll.items():
        print(f"{name}: {len(rows)} replies, mean per-token NLL {np.mean([r.mean() for r in rows]):.3f}, "
              f"refuses {refused[name].sum()} of the requests")
    for name in list(nll)[1:]:
        diff = np.array([row.mean() for row in nll[name]]) - untuned
        print(f"{name} - untuned: {interval(diff)}, higher on {(diff > 0).sum()} of {len(diff)}")
        shifts = [position_mean(nll[name], a, b) - position_mean(nll[MODELS[0]], a, b) for a, b in POSITIONS]
        print("  by reply position (mean over tokens): "
              + ", ".join(f"tokens {a + 1}-{b or ''}: {d:+.3f}" for (a, b), d in zip(POSITIONS, shifts)))
        for label, rows in (("requests it refuses", refused[name]), ("requests it answers", ~refused[name])):
            if rows.any():
                print(f"  {label} ({rows.sum()}): {interval(diff[rows])}")


if __name__ == "__main__":
    main()
