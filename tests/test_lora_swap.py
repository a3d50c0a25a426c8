"""Clients swap adapter weights in the one resident model; no client's training leaks into the next."""

import numpy as np
import torch

from harness.adapters import load_into, snapshot
from harness.data.demo import demo_samples
from harness.training import local_train, tokenize_samples


def train(model, data, order):
    info, _ = local_train(model.model, model.params, data, order, 0, steps=3, batch_size=2, lr=1e-2,
                          optimizer="adamw", pad_id=model.tokenizer.pad_token_id)
    return snapshot(model.params)


def test_client_update_does_not_leak_into_next_client(tiny_model):
    ok, red = demo_samples(6, 6, seed=0)
    data_a = tokenize_samples(tiny_model.tokenizer, ok, 128)
    data_b = tokenize_samples(tiny_model.tokenizer, red, 128)
    g = snapshot(tiny_model.params)
    # make lora_B non-zero so the update depends on the starting point
    g = {n: t + 0.01 * torch.randn_like(t) for n, t in g.items()}

    load_into(tiny_model.params, g)
    torch.manual_seed(1)
    b_alone = train(tiny_model, data_b, list(range(6)))

    load_into(tiny_model.params, g)
    torch.manual_seed(2)
    a = train(tiny_model, data_a, list(range(6)))
    load_into(tiny_model.params, g)
    torch.manual_seed(1)
    b_after_a = train(tiny_model, data_b, list(range(6)))

    assert any(not torch.equal(a[n], g[n]) for n in g)  # A really trained
    for n in g:
        assert torch.equal(b_alone[n], b_after_a[n]), n


def test_swap_is_in_place_and_snapshot_is_a_copy(tiny_model):
    p = next(iter(tiny_model.params.values()))
    ptr = p.data_ptr()
    s = snapshot(tiny_model.params)
    s2 = {n: t + 1 for n, t in s.items()}
    load_into(tiny_model.params, s2)
    assert p.data_ptr() == ptr
    assert torch.equal(p.detach(), s2[next(iter(s2))])
    assert not torch.equal(s[next(iter(s))], s2[next(iter(s2))])


def test_prompt_tokens_are_masked(tiny_model):
    ok, _ = demo_samples(2, 0)
    data = tokenize_samples(tiny_model.tokenizer, ok, 512)
    ids, labels = data.input_ids[0], data.labels[0]
    supervised = tiny_model.tokenizer.decode(ids[labels != -100])
    assert supervised.startswith(ok[0].response)
    assert ok[0].prompt not in supervised
    assert np.all(labels[: 5].numpy() == -100)
