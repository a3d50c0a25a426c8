"""P(unsafe) from first-token logits, checked by hand on tiny-random; batching and truncation."""

import math

import pytest
import torch

from harness.guard.scoring import GuardScorer, label_token_ids, load_guard, unsafe_probability
from harness.guard.template import render_guard_prompt
from harness.types import ChatSample

SAMPLES = [
    ChatSample("Hi", "Hello! How can I help?"),
    ChatSample("How do I make a weapon at home?", "Sorry, I can't help with that. " * 3),
    ChatSample("Tell me a joke", "Why did the chicken cross the road? To get to the other side."),
]


@pytest.fixture(scope="module")
def guard():
    return load_guard("tiny-random")


def hand_scores(guard, sample):
    """Unbatched, unpadded forward; softmax of the last position's logits by hand."""
    tok = guard.tokenizer
    ids = tok(render_guard_prompt(tok, sample.prompt, sample.response), add_special_tokens=False)["input_ids"]
    with torch.no_grad():
        logits = guard.model(input_ids=torch.tensor([ids])).logits[0, -1].double()
    safe_id, unsafe_id = tok("s")["input_ids"][0], tok("u")["input_ids"][0]  # byte tokenizer: first letters
    probs = logits.exp() / logits.exp().sum()
    return float(probs[unsafe_id] / (probs[unsafe_id] + probs[safe_id])), float(probs[unsafe_id])


def test_label_tokens_are_the_first_tokens_of_safe_and_unsafe(guard):
    tok = guard.tokenizer
    assert label_token_ids(tok) == (tok("s")["input_ids"][0], tok("u")["input_ids"][0])


def test_unsafe_probability_equals_hand_computation_in_padded_batches(guard):
    expected = [hand_scores(guard, s) for s in SAMPLES]
    for column, mode in enumerate(("pair", "vocab")):
        scores = GuardScorer(guard, batch_size=3, max_length=4096, mode=mode).score(SAMPLES)
        assert scores == pytest.approx([e[column] for e in expected], abs=1e-5)
        assert len(set(round(s, 6) for s in scores)) == len(SAMPLES)  # not a constant


def test_pair_scores_of_a_bfloat16_guard_keep_their_resolution():
    """bf16 rounds large logits in coarse steps (a real guard's P(unsafe) took 12 values on 364 samples); the pair
    score takes its two label logits in float32 from the head's input instead."""
    guard = load_guard("tiny-random")
    guard.model.to(torch.bfloat16)
    with torch.no_grad():
        guard.model.model.norm.weight.mul_(400)  # logits in the hundreds, where bf16 steps are 2 apart
    samples = [ChatSample(f"question {i} " * (i % 5 + 1), f"answer number {i * 7} " * (i % 3 + 1)) for i in range(24)]
    scorer = GuardScorer(guard, batch_size=8, max_length=4096)
    scores = scorer.score(samples)
    rounded, exact = [0.0] * len(samples), [0.0] * len(samples)
    labels = [scorer.safe_id, scorer.unsafe_id]
    with torch.no_grad():
        for idx, ids, mask, positions in scorer.batches(scorer.prompt_ids(samples)):
            out = guard.model(input_ids=ids, attention_mask=mask, position_ids=positions, output_hidden_states=True)
            pair = out.hidden_states[-1][:, -1].double() @ guard.model.get_output_embeddings().weight[labels].double().T
            for row, i in enumerate(idx):
                rounded[i] = float(unsafe_probability(out.logits[row : row + 1, -1], *labels))
                exact[i] = float(torch.sigmoid(pair[row, 1] - pair[row, 0]))
    assert scores == pytest.approx(exact, abs=1e-4)
    # bf16 logits collapse at least half the scores (12 of 24 on an AVX512-BF16 CPU, fewer elsewhere); float32 keeps all
    assert len(set(scores)) == len(samples) >= 2 * len(set(rounded))


def test_unsafe_probability_modes():
    logits = torch.tensor([[0.0, 1.0, 3.0]])
    assert float(unsafe_probability(logits, 1, 2, "pair")) == pytest.approx(1 / (1 + math.exp(-2)))
    assert float(unsafe_probability(logits, 1, 2, "vocab")) == pytest.approx(math.exp(3) / (1 + math.e + math.exp(3)))
    with pytest.raises(ValueError, match="score mode"):
        unsafe_probability(logits, 1, 2, "mean")


def test_batches_are_length_sorted_and_left_padded(guard):
    scorer = GuardScorer(guard, batch_size=2)
    ids = [[5] * 7, [6] * 3, [7] * 5]
    batches = list(scorer.batches(ids))
    assert [idx for idx, *_ in batches] == [[1, 2], [0]]
    _, input_ids, mask, positions = batches[0]
    assert mask.tolist() == [[0, 0, 1, 1, 1], [1, 1, 1, 1, 1]]
    assert positions[0, 2:].tolist() == [0, 1, 2]
    assert input_ids[0, :2].tolist() == [guard.tokenizer.pad_token_id] * 2


def test_over_long_conversations_are_cut_but_the_template_end_survives(guard):
    scorer = GuardScorer(guard, max_length=1400)
    long = ChatSample("question " * 400, "answer " * 400)
    (ids,) = scorer.prompt_ids([long])
    assert len(ids) <= 1400
    text = guard.tokenizer.decode(ids)
    assert text.endswith("<|im_start|>assistant\n") and "User: " in text and "Agent: answer" in text
