"""SCAFFOLD's math: convergence on heterogeneous least squares, c/c_i bookkeeping, state round trip."""

from __future__ import annotations

import numpy as np
import torch

from harness.adapters import num_bytes
from harness.training import make_optimizer
from harness.types import ClientUpdate, FitIns, LocalTrainInfo
from harness.default_plugins.aggregators.fedavg import FedAvg
from harness.default_plugins.aggregators.scaffold import Scaffold

DIM, CLIENTS, PER_ROUND, STEPS, LR = 4, 8, 4, 10, 0.05


def least_squares_clients(seed: int = 0) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Clients with very different curvature and targets (the setting where local steps drift)."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(CLIENTS):
        a = rng.normal(size=(16, DIM)) * np.array([1.0, 0.2, 2.0, 0.5]) ** (i % 3)
        b = rng.normal(size=16) + 3.0 * (i % 2)
        out.append((torch.tensor(a, dtype=torch.float64), torch.tensor(b, dtype=torch.float64)))
    return out


def optimum(clients) -> torch.Tensor:
    """argmin of (1/N) Σ_i ½‖A_i w − b_i‖² / m."""
    h = sum(a.T @ a / len(b) for a, b in clients)
    g = sum(a.T @ b / len(b) for a, b in clients)
    return torch.linalg.solve(h, g)


def federated_least_squares(
    agg, clients, rounds: int, seed: int = 0, optimizer: str = "sgd", lr: float = LR, steps: int = STEPS,
    per_round: int = PER_ROUND, noise: float = 0.0, scale: float = 1.0,
) -> tuple[torch.Tensor, list[dict[str, float]]]:
    """Drive ``agg`` through the engine's hook sequence (as ``harness.training.local_train`` calls them) with
    exact local gradients, times ``scale``, plus Gaussian noise of std ``noise`` (before scaling); returns the
    final global weights and each round's aggregator metrics."""
    rng, gen = np.random.default_rng(seed), torch.Generator().manual_seed(seed)
    x = {"w": torch.zeros(clients[0][0].shape[1], dtype=torch.float64)}
    metrics = []
    for r in range(1, rounds + 1):
        updates = []
        for cid in sorted(rng.choice(len(clients), per_round, replace=False).tolist()):
            fit_ins = getattr(agg, "configure_fit", lambda **_: None)(server_round=r, client_id=cid, global_state=x)
            fit_ins = fit_ins or FitIns()
            w = torch.nn.Parameter(x["w"].clone())
            opt = make_optimizer(optimizer, [w], lr)
            hook_args = dict(client_id=cid, server_round=r, params={"w": w}, global_state=x, fit_ins=fit_ins)
            a, b = clients[cid]
            for _ in range(steps):
                g = a.T @ (a @ w.detach() - b) / len(b) + noise * torch.randn(len(w), generator=gen, dtype=w.dtype)
                w.grad = scale * g
                if hasattr(agg, "local_grad_correction"):
                    agg.local_grad_correction(**hook_args)
                opt.step()
                opt.zero_grad(set_to_none=True)
                if hasattr(agg, "local_post_step"):
                    agg.local_post_step(**hook_args, learning_rate=lr)
            local = {"w": w.detach().clone()}
            extra = {}
            if hasattr(agg, "client_fit_end"):
                info = LocalTrainInfo(steps, lr, 0.0, 0, 0.0, 0.0)
                extra = agg.client_fit_end(client_id=cid, server_round=r, local_state=local, global_state=x,
                                           fit_ins=fit_ins, train_info=info)
            updates.append(ClientUpdate(cid, len(b), local, extra))
        result = agg.aggregate(server_round=r, global_state=x, updates=updates, num_clients_total=len(clients))
        x = result.state
        metrics.append(result.metrics)
    return x["w"], metrics


def test_scaffold_converges_where_fedavg_drifts(tmp_path):
    clients = least_squares_clients()
    w_star = optimum(clients)
    fedavg, _ = federated_least_squares(FedAvg(), clients, rounds=300)
    scaffold, _ = federated_least_squares(Scaffold(state_dir=str(tmp_path), correction="gradient"), clients, rounds=300)
    fedavg_error = float(torch.linalg.norm(fedavg - w_star) / torch.linalg.norm(w_star))
    scaffold_error = float(torch.linalg.norm(scaffold - w_star) / torch.linalg.norm(w_star))
    assert scaffold_error < 1e-4, scaffold_error
    assert fedavg_error > 100 * scaffold_error and fedavg_error > 1e-2, (fedavg_error, scaffold_error)


def test_control_variates_one_round_by_hand(tmp_path):
    agg = Scaffold(state_dir=str(tmp_path), correction="gradient")
    x = {"w": torch.tensor([1.0, 1.0])}
    fit = agg.configure_fit(server_round=1, client_id=3, global_state=x)
    assert torch.equal(fit.tensors["c"], torch.zeros(2))
    info = LocalTrainInfo(steps=2, learning_rate=0.5, mean_loss=0, num_tokens=0, step_seconds=0, padding_fraction=0)
    y = {"w": torch.tensor([0.0, 3.0])}
    dc = agg.client_fit_end(client_id=3, server_round=1, local_state=y, global_state=x, fit_ins=fit, train_info=info)
    # option II: c_i+ = c_i - c + (x - y) / (K lr) = 0 - 0 + (1, -2) / 1
    assert torch.allclose(dc["delta_c"], torch.tensor([1.0, -2.0]))
    assert torch.allclose(agg.store.load(3, numel=2), torch.tensor([1.0, -2.0]))
    out = agg.aggregate(server_round=1, global_state=x, updates=[ClientUpdate(3, 7, y, dc)], num_clients_total=4)
    assert torch.allclose(out.state["w"], y["w"])  # x + mean(y - x) with one client
    assert torch.allclose(agg.c, torch.tensor([0.25, -0.5]))  # c + (|S|/N) mean Δc_i = (1/4) Δc_3
    # round 2 corrects every gradient by c - c_3 = (-0.75, 1.5)
    param = torch.nn.Parameter(torch.zeros(2))
    param.grad = torch.tensor([10.0, 10.0])
    fit2 = agg.configure_fit(server_round=2, client_id=3, global_state=out.state)
    agg.local_grad_correction(client_id=3, server_round=2, params={"w": param}, global_state=out.state, fit_ins=fit2)
    assert torch.allclose(param.grad, torch.tensor([9.25, 11.5]))
    # post-step mode moves the parameters by -lr (c - c_3) after the optimizer step instead
    agg.correction = "post-step"
    agg.local_post_step(client_id=3, server_round=2, params={"w": param}, global_state=out.state, fit_ins=fit2,
                        learning_rate=0.5)
    assert torch.allclose(param.detach(), torch.tensor([0.375, -0.75]))


def test_bookkeeping_over_rounds_keeps_c_the_mean_of_all_c_i(tmp_path):
    clients = least_squares_clients(seed=1)
    agg = Scaffold(state_dir=str(tmp_path), correction="gradient")
    for rounds in (1, 3, 6):
        federated_least_squares(agg, clients, rounds=1, seed=rounds)
        c_i = [agg.store.load(i, numel=DIM).double() for i in range(CLIENTS)]
        assert torch.allclose(agg.c.double(), sum(c_i) / CLIENTS, atol=1e-6)
    trained = {int(p.stem.split("_")[1]) for p in agg.store.files()}
    assert trained and trained <= set(range(CLIENTS))


def test_control_variate_bytes_are_reported(tmp_path):
    agg = Scaffold(state_dir=str(tmp_path))
    x = {"a": torch.zeros(3, 4), "b": torch.zeros(5)}
    fit = agg.configure_fit(server_round=1, client_id=0, global_state=x)
    info = LocalTrainInfo(1, 0.1, 0.0, 0, 0.0, 0.0)
    ups = []
    for cid in (0, 1):
        y = {n: t + cid + 1 for n, t in x.items()}
        ups.append(ClientUpdate(cid, 1, y, agg.client_fit_end(client_id=cid, server_round=1, local_state=y,
                                                              global_state=x, fit_ins=fit, train_info=info)))
    out = agg.aggregate(server_round=1, global_state=x, updates=ups, num_clients_total=2)
    assert num_bytes(fit.tensors) == 17 * 4
    assert out.metrics["control_variate_bytes"] == 2 * 17 * 4 + 2 * 17 * 4  # c down and Δc_i up, per client
    assert all(num_bytes(u.extra) == 17 * 4 + 4 for u in ups)  # plus the float32 correction_to_update


def test_checkpoint_and_restore_return_to_the_saved_state(tmp_path):
    clients = least_squares_clients(seed=2)
    agg = Scaffold(state_dir=str(tmp_path / "live"), correction="gradient")
    federated_least_squares(agg, clients, rounds=2)
    agg.checkpoint_state(directory=tmp_path / "ckpt")
    saved_c = agg.c.clone()
    saved = {p.name: p.read_bytes() for p in agg.store.files()}
    federated_least_squares(agg, clients, rounds=3, seed=9)  # moves on: c and c_i change, new files appear
    assert not torch.equal(agg.c, saved_c)
    agg.restore_state(directory=tmp_path / "ckpt")
    assert torch.equal(agg.c, saved_c)
    assert {p.name: p.read_bytes() for p in agg.store.files()} == saved


def test_states_that_list_their_names_in_different_orders_line_up(tmp_path):
    """A checkpoint read back lists names sorted, the live adapter in model order: the same result either way."""
    x = {"b": torch.tensor([1.0, 2.0]), "a": torch.tensor([[3.0], [4.0], [5.0]])}
    y = {"a": torch.tensor([[2.0], [4.0], [7.0]]), "b": torch.tensor([0.0, 2.5])}
    info = LocalTrainInfo(steps=2, learning_rate=0.5, mean_loss=0, num_tokens=0, step_seconds=0, padding_fraction=0)
    results = []
    for k, global_state in enumerate((x, dict(reversed(x.items())))):
        agg = Scaffold(state_dir=str(tmp_path / str(k)), correction="post-step")
        fit = agg.configure_fit(server_round=1, client_id=0, global_state=global_state)
        extra = agg.client_fit_end(client_id=0, server_round=1, local_state=y, global_state=global_state, fit_ins=fit,
                                   train_info=info)
        out = agg.aggregate(server_round=1, global_state=global_state, updates=[ClientUpdate(0, 1, y, extra)],
                            num_clients_total=2)
        assert list(out.state) == list(global_state)
        assert all(torch.equal(out.state[n], y[n]) for n in y)
        results.append((extra["delta_c"], agg.c))
    # (x - y) / (K lr) in sorted name order: a = (1, 0, -2), b = (1, -0.5)
    assert torch.equal(results[0][0], torch.tensor([1.0, 0.0, -2.0, 1.0, -0.5]))
    assert torch.equal(results[0][0], results[1][0]) and torch.equal(results[0][1], results[1][1])
