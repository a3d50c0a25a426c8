"""Each aggregator's rule against a reference computed by hand or with NumPy."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from harness.types import ClientUpdate
from harness.default_plugins.aggregators.fedadagrad import FedAdagrad
from harness.default_plugins.aggregators.fedadam import FedAdam
from harness.default_plugins.aggregators.fedavgm import FedAvgM
from harness.default_plugins.aggregators.fedprox import FedProx
from harness.default_plugins.aggregators.fedyogi import FedYogi
from harness.default_plugins.aggregators.median import Median
from harness.default_plugins.aggregators.trimmed_mean import TrimmedMean

GLOBAL = {"a": torch.tensor([1.0, -2.0, 0.5]), "b": torch.tensor([[0.0, 3.0]])}


def updates(rng: np.random.Generator, k: int, counts=None) -> list[ClientUpdate]:
    return [
        ClientUpdate(i, counts[i] if counts else 10, {n: t + torch.from_numpy(rng.normal(size=t.shape)).float()
                                                      for n, t in GLOBAL.items()})
        for i in range(k)
    ]


def stacked(ups: list[ClientUpdate], name: str) -> np.ndarray:
    return np.stack([u.state[name].numpy().astype(np.float64) for u in ups])


def weighted_mean_state(ups: list[ClientUpdate], name: str) -> np.ndarray:
    """Σ n_i y_i / Σ n_i, flattened."""
    w = np.array([u.num_examples for u in ups], dtype=np.float64)
    return (w[:, None] * stacked(ups, name).reshape(len(ups), -1)).sum(0) / w.sum()


def run(agg, rounds: list[list[ClientUpdate]], state=GLOBAL):
    out = []
    for r, ups in enumerate(rounds, start=1):
        state = agg.aggregate(server_round=r, global_state=state, updates=ups, num_clients_total=10).state
        out.append(state)
    return out


def test_fedavgm_momentum_by_hand():
    g = {"w": torch.tensor([0.0])}
    r1 = [ClientUpdate(0, 1, {"w": torch.tensor([1.0])}), ClientUpdate(1, 3, {"w": torch.tensor([3.0])})]  # Δ = 2.5
    s1 = FedAvgM(server_lr=0.5, momentum=0.9)
    (x1,) = run(s1, [r1], g)
    assert x1["w"].item() == pytest.approx(1.25)  # v = 2.5, x = 0 + 0.5 * 2.5
    r2 = [ClientUpdate(0, 1, {"w": torch.tensor([2.25])})]  # Δ = 1.0
    x2 = s1.aggregate(server_round=2, global_state=x1, updates=r2, num_clients_total=2).state
    assert x2["w"].item() == pytest.approx(1.25 + 0.5 * (0.9 * 2.5 + 1.0))


@pytest.mark.parametrize("cls, rule", [
    (FedAdam, lambda v, d2, b2: b2 * v + (1 - b2) * d2),
    (FedYogi, lambda v, d2, b2: v - (1 - b2) * d2 * np.sign(v - d2)),
    (FedAdagrad, lambda v, d2, b2: v + d2),
])
def test_adaptive_server_optimizers_match_numpy(cls, rule):
    rng = np.random.default_rng(0)
    rounds = [updates(rng, 3, counts=[5, 1, 7]) for _ in range(4)]
    eta, b1, b2, tau = 0.05, 0.9, 0.99, 1e-3
    agg = cls(server_lr=eta, beta1=b1, tau=tau) if cls is FedAdagrad else cls(server_lr=eta, beta1=b1, beta2=b2, tau=tau)
    got = run(agg, rounds)
    for name in GLOBAL:
        x = GLOBAL[name].numpy().astype(np.float64).reshape(-1)
        m, v = np.zeros_like(x), np.full_like(x, tau**2)
        for r, ups in enumerate(rounds):
            d = weighted_mean_state(ups, name) - x  # Δ = Σ n_i (y_i − x) / Σ n_i
            m = b1 * m + (1 - b1) * d
            v = rule(v, d * d, b2)
            x = x + eta * m / (np.sqrt(v) + tau)
            np.testing.assert_allclose(got[r][name].numpy().reshape(-1), x, rtol=1e-5, atol=1e-6)


def test_fedyogi_differs_from_fedadam():
    rng = np.random.default_rng(1)
    rounds = [updates(rng, 3) for _ in range(3)]
    adam, yogi = run(FedAdam(server_lr=0.1), rounds)[-1], run(FedYogi(server_lr=0.1), rounds)[-1]
    assert not torch.allclose(adam["a"], yogi["a"])


def test_median_matches_numpy_for_odd_and_even_counts():
    rng = np.random.default_rng(2)
    for k in (5, 4):
        ups = updates(rng, k)
        got = Median().aggregate(server_round=1, global_state=GLOBAL, updates=ups, num_clients_total=k).state
        for name in GLOBAL:
            np.testing.assert_allclose(got[name].numpy(), np.median(stacked(ups, name), axis=0), rtol=1e-6)
            assert got[name].dtype == GLOBAL[name].dtype


def test_median_ignores_one_wild_client():
    ups = [ClientUpdate(i, 1, {"w": torch.tensor([v])}) for i, v in enumerate([1.0, 2.0, 1e6])]
    got = Median().aggregate(server_round=1, global_state={"w": torch.zeros(1)}, updates=ups, num_clients_total=3)
    assert got.state["w"].item() == 2.0


def test_trimmed_mean_by_hand_and_against_numpy():
    ups = [ClientUpdate(i, 1, {"w": torch.tensor([v, -v])}) for i, v in enumerate([1.0, 2.0, 3.0, 4.0, 100.0])]
    got = TrimmedMean(beta=0.2).aggregate(server_round=1, global_state={"w": torch.zeros(2)}, updates=ups,
                                          num_clients_total=5)
    assert got.state["w"].tolist() == [3.0, -3.0]  # drop 1 and 100 (and -100, -1): mean of 2, 3, 4
    assert got.metrics["trimmed_per_side"] == 1.0
    rng = np.random.default_rng(3)
    ups = updates(rng, 10)
    got = TrimmedMean(beta=0.25).aggregate(server_round=1, global_state=GLOBAL, updates=ups, num_clients_total=10)
    for name in GLOBAL:
        ref = np.sort(stacked(ups, name), axis=0)[2:8].mean(axis=0)  # floor(0.25 * 10) = 2 per side
        np.testing.assert_allclose(got.state[name].numpy(), ref, rtol=1e-5)


@pytest.mark.parametrize("factory", [lambda: TrimmedMean(beta=0.5), lambda: FedAdam(beta2=1.0),
                                     lambda: FedAvgM(momentum=-0.1), lambda: FedProx(mu=-1)])
def test_bad_options_are_rejected(factory):
    with pytest.raises(ValueError):
        factory()


def test_fedprox_adds_mu_times_distance_to_the_global_adapter():
    w = torch.nn.Parameter(torch.tensor([1.0, 4.0]))
    w.grad = torch.tensor([0.5, 0.5])
    FedProx(mu=0.1).local_grad_correction(client_id=0, server_round=1, params={"w": w},
                                          global_state={"w": torch.tensor([0.0, 2.0])}, fit_ins=None)
    assert torch.allclose(w.grad, torch.tensor([0.5 + 0.1 * 1.0, 0.5 + 0.1 * 2.0]))


def test_fedprox_aggregates_like_fedavg():
    rng = np.random.default_rng(4)
    ups = updates(rng, 3, counts=[1, 2, 3])
    got = FedProx().aggregate(server_round=1, global_state=GLOBAL, updates=ups, num_clients_total=3).state
    for name in GLOBAL:
        ref = weighted_mean_state(ups, name).reshape(GLOBAL[name].shape)
        np.testing.assert_allclose(got[name].numpy(), ref, rtol=1e-5, atol=1e-6)
