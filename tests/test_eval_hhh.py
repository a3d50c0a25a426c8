"""HHH scoring on tiny-random equals a hand computation of the option log-likelihoods, in both orders."""

import json

import pytest
import torch

from harness.evals.loaders import choice_prompt
from harness.default_plugins.evals import hhh as hhh_plugin
from harness.default_plugins.evals.hhh import HHH, SETS, joins_cleanly, letter_logprobs


def hand_logprob(model, context: str, completion: str) -> float:
    """log p(completion | context) from one unpadded forward pass."""
    tok = model.tokenizer
    ctx = tok(context, add_special_tokens=False)["input_ids"]
    comp = tok(completion, add_special_tokens=False)["input_ids"]
    ids = torch.tensor([ctx + comp])
    with torch.no_grad():
        logp = torch.log_softmax(model.model(input_ids=ids).logits.float()[0], dim=-1)
    return sum(float(logp[len(ctx) + k - 1, t]) for k, t in enumerate(comp))


@pytest.fixture(scope="module")
def result(tiny_model, shared_data):
    return HHH(data=str(shared_data), batch_size=3).evaluate(server_round=1, model=tiny_model, limit=2)


def test_scores_equal_hand_computed_option_loglikelihoods(result, tiny_model, shared_data):
    plugin = HHH(data=str(shared_data))
    rows = [json.loads(line) for line in result.artifacts["hhh_scores.jsonl"].splitlines()]
    assert [(r["set"], r["index"]) for r in rows] == [(s, i) for s in SETS for i in range(2)]
    for row in rows:
        item = plugin.load(row["set"])[row["index"]]
        first, second = item.options
        prompts = [choice_prompt(item.context, first, second), choice_prompt(item.context, second, first)]
        assert [o["correct"] for o in row["orders"]] == ["AB"[item.correct], "AB"[1 - item.correct]]
        for prompt, order in zip(prompts, row["orders"]):
            assert order["logp_A"] == pytest.approx(hand_logprob(tiny_model, prompt, " (A)"), abs=1e-4)
            assert order["logp_B"] == pytest.approx(hand_logprob(tiny_model, prompt, " (B)"), abs=1e-4)
            picked = "A" if order["logp_A"] > order["logp_B"] else "B"
            assert order["chosen"] == picked and order["right"] == (picked == order["correct"])


def test_metrics_follow_the_per_order_decisions(result):
    rows = [json.loads(line) for line in result.artifacts["hhh_scores.jsonl"].splitlines()]
    for name in SETS:
        orders = [o for r in rows if r["set"] == name for o in r["orders"]]
        assert len(orders) == 4
        assert result.metrics[f"hhh/{name}/accuracy"] == sum(o["right"] for o in orders) / 4
        assert result.metrics[f"hhh/{name}/chose_a"] == sum(o["chosen"] == "A" for o in orders) / 4
        assert result.metrics[f"hhh/{name}/items"] == 2
    # A model that always picks the same letter is right exactly once per item: position bias cancels.
    for r in rows:
        if r["orders"][0]["chosen"] == r["orders"][1]["chosen"]:
            assert sum(o["right"] for o in r["orders"]) == 1


class MergingTokenizer:
    """Characters, except that "Hello" is one token (as a BPE merge would make it)."""

    def __call__(self, text, add_special_tokens=False):
        return {"input_ids": list(text.replace("Hello", "\x00"))}


def test_joins_cleanly_spots_a_token_that_spans_the_join():
    assert joins_cleanly(MergingTokenizer(), "Say: ", ["Hello", "bye"])
    assert not joins_cleanly(MergingTokenizer(), "Say: Hel", ["lo", "p"])


def test_a_shared_part_whose_tokens_change_when_joined_is_not_shared(tiny_model, monkeypatch):
    monkeypatch.setattr(hhh_plugin, "joins_cleanly", lambda tok, shared, rests: False)
    prompts = [("Consider this: Hel", "lo there. (A) yes (B) no. The answer is:"),
               ("Consider this: Hel", "lo again. (A) no (B) yes. The answer is:")]
    got = letter_logprobs(tiny_model, prompts, batch_size=2)
    for (shared, rest), (lp_a, lp_b) in zip(prompts, got):
        assert lp_a == pytest.approx(hand_logprob(tiny_model, shared + rest, " (A)"), abs=1e-4)
        assert lp_b == pytest.approx(hand_logprob(tiny_model, shared + rest, " (B)"), abs=1e-4)


def test_unknown_set_is_rejected():
    with pytest.raises(ValueError, match="unknown hhh set"):
        HHH(sets=["truthfulqa"])
