"""Length bucketing of local-training batches: deterministic, the same samples as plain batches, less padding."""

from collections import Counter

import numpy as np
import pytest
import torch

from harness.data.demo import demo_refusals, demo_samples
from harness.training import batch_plan, causal_lm_loss, collate, local_train, tokenize_samples


def mixed_data(tokenizer, n=24):
    ok, red = demo_samples(n // 2, n // 4, seed=3)
    return tokenize_samples(tokenizer, ok + red + demo_refusals(n - n // 2 - n // 4, 3), 512)


def flat(plan):
    return [i for batch in plan for i in batch]


def test_same_seed_same_batches(tiny_model):
    data = mixed_data(tiny_model.tokenizer)
    order = np.random.default_rng([0, 1]).permutation(len(data)).tolist()
    assert batch_plan(data, order, 5, 6, 4) == batch_plan(data, order, 5, 6, 4)
    other = np.random.default_rng([1, 1]).permutation(len(data)).tolist()
    assert batch_plan(data, other, 5, 6, 4) != batch_plan(data, order, 5, 6, 4)


def test_window_one_is_the_plain_consecutive_batches(tiny_model):
    data = mixed_data(tiny_model.tokenizer)
    order = list(range(len(data)))[::-1]
    plan = batch_plan(data, order, 22, 3, 4, bucket_window=1)
    assert plan == [[order[(22 + 4 * s + j) % 24] for j in range(4)] for s in range(3)]


def test_bucketing_visits_exactly_the_plain_samples(tiny_model):
    data = mixed_data(tiny_model.tokenizer)
    order = np.random.default_rng(7).permutation(len(data)).tolist()
    for cursor, steps, batch in [(0, 6, 4), (5, 6, 4), (13, 25, 4), (0, 3, 8), (9, 7, 5)]:
        bucketed = batch_plan(data, order, cursor, steps, batch)
        plain = batch_plan(data, order, cursor, steps, batch, bucket_window=1)
        assert len(bucketed) == steps and all(len(b) == batch for b in bucketed)
        assert Counter(flat(bucketed)) == Counter(flat(plain))
        assert all(len(set(b)) == len(b) for b in bucketed)  # a window never holds a sample twice


def test_an_epoch_covers_every_sample_exactly_once(tiny_model):
    data = mixed_data(tiny_model.tokenizer)
    order = np.random.default_rng(1).permutation(len(data)).tolist()
    cursor = 0
    for _ in range(3):  # three epochs of 6 steps x 4
        plan = batch_plan(data, order, cursor, 6, 4)
        assert sorted(flat(plan)) == list(range(len(data)))
        cursor = (cursor + 24) % len(order)


def test_bucketing_cuts_padding(tiny_model):
    data = mixed_data(tiny_model.tokenizer, 48)
    order = np.random.default_rng(0).permutation(len(data)).tolist()

    def padding(window):
        return np.mean([collate(data, b, 0)[1] for b in batch_plan(data, order, 0, 12, 4, bucket_window=window)])

    assert padding(8) < 0.5 * padding(1)


def test_fused_loss_matches_the_model_loss(tiny_model):
    data = mixed_data(tiny_model.tokenizer)
    batch, _ = collate(data, [0, 5, 9, 17], tiny_model.tokenizer.pad_token_id)
    tiny_model.model.eval()
    with torch.no_grad():
        assert torch.allclose(causal_lm_loss(tiny_model.model, batch), tiny_model.model(**batch).loss, atol=1e-6)


def test_local_train_is_reproducible_and_reports_less_padding(tiny_model):
    data = mixed_data(tiny_model.tokenizer)
    order = list(range(len(data)))
    start = {n: p.detach().clone() for n, p in tiny_model.params.items()}
    runs = []
    for window in (8, 8, 1):
        for n, p in tiny_model.params.items():
            p.data.copy_(start[n])
        torch.manual_seed(0)
        info, cursor = local_train(tiny_model.model, tiny_model.params, data, order, 0, 3, 4, 1e-2, "sgd",
                                   tiny_model.tokenizer.pad_token_id, bucket_window=window)
        runs.append((info, cursor, {n: p.detach().clone() for n, p in tiny_model.params.items()}))
    for n, p in tiny_model.params.items():
        p.data.copy_(start[n])
    (a, ca, sa), (b, cb, sb), (plain, cp, _) = runs
    assert ca == cb == cp == 12
    assert all(torch.equal(sa[n], sb[n]) for n in sa)
    assert a.padding_fraction < plain.padding_fraction


def test_round_padding_is_the_mean_over_the_clients_that_trained(tmp_path, monkeypatch):
    """A client whose filter kept nothing does not train; it must not pull the round's padding fraction down."""
    from harness import client as client_module
    from harness.hookspecs import hookimpl
    from tests.perf.bench import started_engine
    from harness.types import FilterVerdict
    from tests.helpers import smoke_config

    real_local_train = client_module.local_train

    def fixed_padding(*args, **kwargs):
        info, cursor = real_local_train(*args, **kwargs)
        info.padding_fraction = 0.2
        return info, cursor

    class DropClientOne:
        @hookimpl(tryfirst=True)
        def pre_local_train(self, client_id, samples, server_round):
            return FilterVerdict(keep=[client_id != 1] * len(samples))

    monkeypatch.setattr(client_module, "local_train", fixed_padding)
    cfg = smoke_config(tmp_path, **{"plugins.evals": [], "federation.num_clients": 2, "federation.clients_per_round": 2})
    eng = started_engine(cfg)
    eng.pm.register(DropClientOne())
    metrics = eng.run_round(1)
    assert metrics["clients/skipped_empty"] == 1 and metrics["clients/trained"] == 1
    assert metrics["train/padding_fraction"] == pytest.approx(0.2)
