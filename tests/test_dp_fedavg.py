"""DP-FedAvg (issue #37 item 3, harness.privacy, docs/privacy.md): clipping, the noise's standard deviation and the
RDP accountant against Flower's and Opacus's own values; bit-identity with FedAvg when off; resume; refusals; the
effect on a boosted client (tiny-random) and on utility (SmolLM2-135M); the same run on the Flower engine."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from flwr.common import ndarrays_to_parameters, parameters_to_ndarrays
from flwr.supercore.differential_privacy import add_gaussian_noise_to_params, compute_clip_model_update, compute_stdv

from harness.cli import main
from harness.config import FederationConfig, PrivacyConfig
from harness.default_plugins.aggregators.fedavg import FedAvg
from harness.hookspecs import hookimpl
from harness.leaderboard import write_leaderboard
from harness.leaderboard.board import parse_board
from harness.privacy import DPFedAvg, RoundAccountant, clip_on_client
from harness.tracking import default_tracking_uri
from harness.types import ClientUpdate
from harness.update_hygiene import update_norm
from tests.helpers import FailInRound, logged_run, run_tracked, same_run_on_both_engines, smoke_config, untracked_engine

DP = {"privacy.noise_multiplier": 1.0, "privacy.clip_norm": 0.05}  # binds: smoke deltas have norms ~0.1-0.2


def dp(sampled: int = 4, clients: int = 20, seed: int = 0, **privacy) -> DPFedAvg:
    return DPFedAvg(PrivacyConfig(**privacy), FederationConfig(num_clients=clients, clients_per_round=sampled, seed=seed))


def updates_around(global_state, norms: list[float], seed: int = 0) -> list[ClientUpdate]:
    """Clients whose deltas from ``global_state`` have the given L2 norms (random directions), 3..3+k examples."""
    g = torch.Generator().manual_seed(seed)
    out = []
    for i, norm in enumerate(norms):
        delta = {n: torch.randn(t.shape, generator=g) for n, t in global_state.items()}
        scale = norm / math.sqrt(sum(float(d.pow(2).sum()) for d in delta.values()))
        out.append(ClientUpdate(i, 3 + i, {n: global_state[n] + d * scale for n, d in delta.items()}))
    return out


GLOBAL = {"a": torch.randn(8, 16, generator=torch.Generator().manual_seed(1)), "b": torch.zeros(16, 4)}


# -- the mechanism, against Flower's functions ----------------------------------------------------------------

def test_noise_std_is_sigma_c_over_m_as_flowers_and_measured_on_many_samples():
    mech = dp(sampled=4, noise_multiplier=1.3, clip_norm=0.7)
    assert mech.noise_std == compute_stdv(1.3, 0.7, 4) == 1.3 * 0.7 / 4
    zeros = {"w": torch.zeros(400_000)}
    metrics: dict[str, float] = {}
    noise = mech.release(1, zeros, zeros, 4, metrics)["w"].double()
    n = noise.numel()
    assert abs(float(noise.std()) / mech.noise_std - 1) < 0.01  # the sample std's relative error: ~1/sqrt(2n) = 0.1 %
    assert abs(float(noise.mean())) < 5 * mech.noise_std / math.sqrt(n)
    assert metrics["privacy/noise_std"] == mech.noise_std
    np.random.seed(0)  # Flower draws from numpy's global generator
    flower = parameters_to_ndarrays(add_gaussian_noise_to_params(
        ndarrays_to_parameters([np.zeros(n, dtype=np.float32)]), 1.3, 0.7, 4))[0]
    assert abs(float(flower.std()) / mech.noise_std - 1) < 0.01  # the same distribution as Flower's


def test_noise_is_drawn_from_the_run_seed_and_round():
    zeros = {"w": torch.zeros(1000)}
    draw = lambda rnd, seed=0: dp(seed=seed, noise_multiplier=1.0, clip_norm=1.0).release(rnd, zeros, zeros, 4, {})["w"]
    assert torch.equal(draw(3), draw(3))  # a resumed run draws round 3's noise again
    assert not torch.equal(draw(3), draw(4)) and not torch.equal(draw(3), draw(3, seed=1))


def test_server_clipping_bounds_every_delta_as_flowers_clip_does():
    ups = updates_around(GLOBAL, [0.1, 2.0, 5.0, 0.99])
    metrics: dict[str, float] = {}
    prepared = dp(noise_multiplier=1.0, clip_norm=1.0).prepare(ups, GLOBAL, metrics)
    assert metrics["privacy/clipped"] == 2
    assert [u.num_examples for u in prepared] == [1, 1, 1, 1]  # an unweighted mean: one client moves it by <= C/m
    for original, clipped in zip(ups, prepared):
        assert update_norm(clipped, GLOBAL) <= 1.0 * (1 + 1e-6)
        flower = [original.state[n].numpy().copy() for n in GLOBAL]
        compute_clip_model_update(flower, [t.numpy() for t in GLOBAL.values()], 1.0)
        for name, expected in zip(GLOBAL, flower):
            assert torch.allclose(clipped.state[name], torch.from_numpy(expected), rtol=0, atol=1e-6)
    assert prepared[0].state is ups[0].state  # within the bound: the very tensors


def test_client_side_clipping_clips_on_the_client_and_the_server_then_only_adds_noise():
    (up,) = updates_around(GLOBAL, [3.0])
    metrics = {"privacy/clipped": 0.0}
    clipped = clip_on_client(up, GLOBAL, PrivacyConfig(1.0, 0.5, clipping="client"), metrics)
    assert update_norm(clipped, GLOBAL) == pytest.approx(0.5) and metrics["privacy/clipped"] == 1
    assert clip_on_client(up, GLOBAL, PrivacyConfig(1.0, 0.5), metrics) is up  # server-side clipping: not here
    server = dp(noise_multiplier=1.0, clip_norm=0.5, clipping="client")
    assert server.prepare([up], GLOBAL, metrics)[0].state is up.state  # the server trusts the client's clip


def test_missing_clients_count_as_zero_deltas_in_a_fixed_denominator():
    ups = updates_around(GLOBAL, [0.3, 0.4])  # 2 of the 4 sampled clients sent an update
    mech = dp(sampled=4, noise_multiplier=0.0, clip_norm=1.0)
    mean = FedAvg().aggregate(1, GLOBAL, mech.prepare(ups, GLOBAL, {}), 20).state
    released = mech.release(1, mean, GLOBAL, len(ups), {})
    for n, x in GLOBAL.items():
        assert torch.allclose(released[n], x + sum(u.state[n] - x for u in ups) / 4, atol=1e-7)


def test_off_changes_nothing_and_no_noise_with_a_loose_clip_is_fedavg_bit_for_bit():
    ups = [ClientUpdate(u.client_id, 5, u.state) for u in updates_around(GLOBAL, [0.5, 1.0, 2.0, 0.2])]
    fedavg = FedAvg().aggregate(1, GLOBAL, ups, 20).state
    off, metrics = dp(), {}
    assert off.prepare(ups, GLOBAL, metrics) is ups
    released = off.release(1, fedavg, GLOBAL, 4, metrics)
    assert released is fedavg and metrics == {}
    loose = dp(noise_multiplier=0.0, clip_norm=1e6)
    state = loose.release(1, FedAvg().aggregate(1, GLOBAL, loose.prepare(ups, GLOBAL, metrics), 20).state,
                          GLOBAL, 4, metrics)
    assert all(torch.equal(state[n], fedavg[n]) for n in GLOBAL)  # equal sample counts: the same mean
    assert metrics == {"privacy/clipped": 0.0, "privacy/noise_std": 0.0}  # no noise: no ε


# -- the accountant -------------------------------------------------------------------------------------------

def test_epsilon_matches_opacus_reference_value():
    """Opacus's own reference (opacus/tests/accountants_test.py, test_rdp_accountant, unchanged from 1.0 to 1.6):
    σ = 1.5, q = 0.04, 2250 steps, δ = 1e-5 -> ε = 7.32911117143. Here: 1 of 25 clients a round for 2250 rounds."""
    mech = dp(sampled=1, clients=25, noise_multiplier=1.5, clip_norm=1.0, delta=1e-5)
    assert mech.accountant.sample_rate == 0.04
    metrics: dict[str, float] = {}
    mech.release(2250, GLOBAL, GLOBAL, 1, metrics)
    assert metrics["privacy/epsilon"] == pytest.approx(7.32911117143, abs=1e-7)
    assert metrics["privacy/delta"] == 1e-5


def test_epsilon_grows_with_rounds_and_falls_with_more_noise():
    low, high = RoundAccountant(0.8, 0.25, 1e-3), RoundAccountant(1.6, 0.25, 1e-3)
    eps_low = [low.epsilon(r) for r in range(1, 31)]
    assert all(a < b for a, b in zip(eps_low, eps_low[1:]))
    assert high.epsilon(30) < eps_low[-1] / 2
    assert RoundAccountant(0.8, 0.5, 1e-3).epsilon(30) > eps_low[-1]  # more clients sampled: less amplification
    with pytest.raises(ValueError, match="cannot go back"):
        low.epsilon(29)


def test_default_delta_is_below_one_over_the_clients():
    assert PrivacyConfig().delta_for(20) == 20 ** -1.1 < 1 / 20
    assert PrivacyConfig(delta=1e-6).delta_for(20) == 1e-6


# -- refusals -------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("args, message", [
    (["--dp-noise", "1"], "privacy.noise_multiplier > 0 needs privacy.clip_norm"),
    (["--dp-clip", "1", "--dp-noise", "1e-200"], "privacy.noise_multiplier must be 0 or >= 0.01"),
    (["--dp-clip", "1", "--agg", "median"], "agg plugin 'median' does not declare averages = True"),
    (["--dp-clip", "1", "--agg", "fedadam"], "agg plugin 'fedadam' does not declare averages = True"),
    (["--dp-clip", "1", "--dp-noise", "1", "--dp-delta", "0.25"], "privacy.delta must be below 1/num_clients (0.25)"),
    (["--set", "privacy.clipping=both"], "privacy.clipping must be one of server, client"),
])
def test_bad_privacy_settings_exit_2_naming_why_creating_nothing(tmp_path, args, message):
    result = CliRunner().invoke(main, ["run", "--preset", "smoke", *args, "--output-dir", str(tmp_path / "out")])
    assert result.exit_code == 2 and message in result.output and "Traceback" not in result.output, result.output
    assert not (tmp_path / "out").exists()


# -- real runs of the tiny model ------------------------------------------------------------------------------

def history(out: Path, key: str) -> list[tuple[int, float]]:
    return logged_run(out)[1].get(key, [])


def adapter(out: Path) -> dict[str, torch.Tensor]:
    return logged_run(out)[2]


@pytest.mark.slow
def test_no_noise_and_a_loose_clip_train_the_same_adapter_as_fedavg(tmp_path):
    """The whole DP path on (server clip that never binds, unweighted mean, fixed denominator, release) gives FedAvg's
    bits: the smoke preset's 4 iid clients hold 12 samples each, so FedAvg's weights are equal too."""
    run_tracked(smoke_config(tmp_path / "plain"))
    run_tracked(smoke_config(tmp_path / "dp", **{"privacy.clip_norm": 1e6}))
    plain, private = adapter(tmp_path / "plain" / "out"), adapter(tmp_path / "dp" / "out")
    assert list(plain) == list(private) and all(torch.equal(plain[n], private[n]) for n in plain)
    assert history(tmp_path / "dp" / "out", "privacy/noise_std") == [(1, 0.0), (2, 0.0)]
    assert history(tmp_path / "dp" / "out", "privacy/epsilon") == []  # no noise, no guarantee
    assert history(tmp_path / "plain" / "out", "privacy/noise_std") == []


@pytest.mark.slow
def test_resume_keeps_epsilon_and_the_noise_and_the_board_shows_epsilon(tmp_path):
    settings = {**DP, "federation.rounds": 3, "plugins.evals": []}
    run_tracked(smoke_config(tmp_path / "whole", **settings))
    stopped = smoke_config(tmp_path / "resumed", **settings)
    with pytest.raises(RuntimeError, match="simulated crash"):
        run_tracked(stopped, FailInRound(2))
    run_tracked(stopped, resume=True)
    whole, resumed = tmp_path / "whole" / "out", tmp_path / "resumed" / "out"
    epsilons = history(whole, "privacy/epsilon")
    assert [s for s, _ in epsilons] == [1, 2, 3] and epsilons == history(resumed, "privacy/epsilon")
    assert epsilons[0][1] < epsilons[1][1] < epsilons[2][1]
    clipped = [v for _, v in history(whole, "privacy/clipped")]
    assert clipped[0] == 2 and all(0 <= v <= 2 for v in clipped)  # round 1's deltas exceed C; lr decays after
    assert all(torch.equal(a, b) for a, b in zip(adapter(whole).values(), adapter(resumed).values()))

    board = parse_board({"name": "dp", "experiments": ["fedllm-harness"],
                         "method": ["tags.harness.agg", "params.privacy.noise_multiplier"],
                         "columns": [{"name": "ε", "metric": "privacy/epsilon", "better": "lower"}]}, "dp board")
    (row,) = write_leaderboard(board, default_tracking_uri(resumed), tmp_path / "board").rows
    assert row.method == "fedavg / 1.0" and row.cells["ε"].mean == pytest.approx(epsilons[-1][1])


BOOST = 50.0


class BoostedClient:
    """Client 0 sends x + 50 Δ_0 (a boosted, model-replacement update, Bagdasaryan et al. 2020); keeps Δ's start."""

    def __init__(self):
        self.start: dict[str, torch.Tensor] = {}
        self.delta: dict[str, torch.Tensor] = {}

    @hookimpl
    def client_fit_end(self, client_id, server_round, local_state, global_state, fit_ins, train_info):
        if client_id == 0:
            for name, tensor in local_state.items():
                tensor.copy_(global_state[name] + BOOST * (tensor - global_state[name]))
            self.start = {n: t.clone() for n, t in global_state.items()}
            self.delta = {n: local_state[n] - global_state[n] for n in local_state}


def toward_poison(privacy: dict, tmp_path: Path) -> float:
    """One round, all 4 clients: the global adapter's move along the boosted client's delta, over that delta's norm."""
    booster = BoostedClient()
    cfg = smoke_config(tmp_path, **{"federation.rounds": 1, "federation.clients_per_round": 4,
                                    "plugins.evals": [], **privacy})
    engine = untracked_engine(cfg, booster)
    engine.run()
    moved = sum(float(((engine.state.global_state[n] - booster.start[n]) * d).sum()) for n, d in booster.delta.items())
    return moved / sum(float(d.pow(2).sum()) for d in booster.delta.values())


@pytest.mark.slow
def test_clipping_bounds_what_a_boosted_client_moves_the_global_adapter(tmp_path):
    """Without DP the global adapter takes ~1/4 of the boosted client's delta (FedAvg over 4 clients; measured 0.262);
    clipped to C = 0.05 (‖Δ_0‖ ~ 7) it takes ~1 % (0.010), and with σ = 1 noise as well about the same (0.008)."""
    plain = toward_poison({}, tmp_path / "plain")
    assert plain == pytest.approx(0.25, abs=0.03)
    assert abs(toward_poison({"privacy.clip_norm": 0.05}, tmp_path / "clip")) < plain / 10
    assert abs(toward_poison(DP, tmp_path / "dp")) < plain / 10


@pytest.mark.slow
def test_heavy_noise_costs_utility_on_smollm2(tmp_path):
    """Held-out NLL after one round (2 clients, 1 local step, 4 items) of the real SmolLM2-135M: measured 3.47 without
    DP, 13.6 with C = 0.1, σ = 5 (noise std 0.25 on every LoRA weight). tiny-random cannot show this: its random
    output layer gives near-uniform logits whatever the adapter (NLL ~5.57 with or without noise)."""
    settings = {"model.name": "smollm2-135m", "federation.rounds": 1, "federation.local_steps": 1,
                "plugins.eval_every": 0, "plugins.eval_limit": 4}
    plain = run_tracked(smoke_config(tmp_path / "plain", **settings)).final_metrics["heldout/nll"]
    noisy = run_tracked(smoke_config(tmp_path / "dp", **settings, **{"privacy.clip_norm": 0.1,
                                                                     "privacy.noise_multiplier": 5.0}))
    assert noisy.final_metrics["privacy/noise_std"] == 0.25
    assert noisy.final_metrics["heldout/nll"] > plain + 1.0


@pytest.mark.slow
@pytest.mark.flower
def test_the_flower_engine_runs_the_same_dp_fedavg_with_clipping_on_its_nodes(tmp_path):
    """The server side is the same code on both engines; client-side clipping runs on the Flower nodes. Same ε, same
    noise, the same adapter bits (tests/test_flower_engine.py: one torch thread, as in a Ray worker)."""
    args = ("--num-clients", "3", "--clients-per-round", "2", "--rounds", "2", "--dp-clip", "0.05", "--dp-noise", "1",
            "--dp-clipping", "client", "--set", "plugins.evals=[]")
    _, local = same_run_on_both_engines(tmp_path, *args)
    for key in ("privacy/epsilon", "privacy/noise_std", "privacy/clipped"):
        assert [s for s, _ in local[key]] == [1, 2], key
    assert local["privacy/clipped"][0][1] == 2  # both clients clipped their own round-1 deltas
