"""GlobalModel.completion_logprobs runs the LM head only on completion positions; it must equal the full path."""

import torch


def full_path(model, tok, context: str, completion: str) -> float:
    a = tok(context, add_special_tokens=False)["input_ids"]
    b = tok(completion, add_special_tokens=False)["input_ids"]
    ids = torch.tensor([a + b])
    with torch.no_grad():
        logp = torch.log_softmax(model.model(input_ids=ids).logits.float()[:, :-1], dim=-1)
    return float(logp.gather(-1, ids[:, 1:, None])[0, len(a) - 1 :, 0].sum())


def test_completion_logprobs_equal_the_full_logits_path_in_a_padded_batch(tiny_model):
    contexts = ["Hello there, how are you doing today?", "Q: 2+2?\nA:", "x"]
    completions = [" Fine, thanks.", " 4", " a longer completion with several more tokens"]
    got = tiny_model.completion_logprobs(contexts, completions, batch_size=3)
    want = [full_path(tiny_model, tiny_model.tokenizer, c, x) for c, x in zip(contexts, completions)]
    assert torch.allclose(torch.tensor(got), torch.tensor(want), atol=1e-4)


def test_answer_logprobs_share_one_context_pass_and_equal_separate_scoring(tiny_model):
    from harness.evals.choice import answer_logprobs

    contexts = ["Hello there, how are you doing today? Pick one:", "Q: 2+2?\nA:", "x", "A much longer context " * 6]
    got = answer_logprobs(tiny_model, contexts, [" (A)", " (B)", " (C)"], batch_size=3)
    for letter, column in zip("ABC", zip(*got)):
        want = [full_path(tiny_model, tiny_model.tokenizer, c, f" ({letter})") for c in contexts]
        assert torch.allclose(torch.tensor(column), torch.tensor(want), atol=1e-4)


def test_a_shared_prefix_runs_once_and_gives_the_same_log_probs(tiny_model):
    from harness.evals.choice import answer_logprobs

    prefix = "Consider the conversation below and choose.\n"
    contexts = ["Hello there, how are you doing today? Pick one:", "Q: 2+2?\nA:", "x", "A much longer context " * 6]
    calls = []
    hook = tiny_model.model.get_input_embeddings().register_forward_hook(lambda m, args, out: calls.append(args[0].shape))
    try:
        got = answer_logprobs(tiny_model, contexts, [" (A)", " (B)", " (C)"], batch_size=3, prefix=prefix)
    finally:
        hook.remove()
    prefix_len = len(tiny_model.tokenizer(prefix, add_special_tokens=False)["input_ids"])
    assert sum(shape[1] == prefix_len for shape in calls) == 1  # the prefix ran once, not once per batch
    for letter, column in zip("ABC", zip(*got)):
        want = [full_path(tiny_model, tiny_model.tokenizer, prefix + c, f" ({letter})") for c in contexts]
        assert torch.allclose(torch.tensor(column), torch.tensor(want), atol=1e-4)


def test_answer_logprobs_needs_answers_that_differ_in_one_token(tiny_model):
    import pytest

    from harness.evals.choice import answer_logprobs

    with pytest.raises(ValueError, match="must differ in exactly one token"):
        answer_logprobs(tiny_model, ["q"], [" (A)", " [B]"])
    with pytest.raises(ValueError, match="tokenize to different lengths"):
        answer_logprobs(tiny_model, ["q"], [" (A)", " (AB)"])
