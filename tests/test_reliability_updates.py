"""Issue #10, item 3: non-finite client updates are rejected and counted, update norms can be clipped, and a
robust aggregator (median) holds the global adapter near the honest result against one malicious client."""

from __future__ import annotations

import math

import pytest
import torch

from harness.types import ClientUpdate
from harness.update_hygiene import clip_update, screen_updates, update_norm
from tests.helpers import Tamper, distance, smoke_config, untracked_engine

GLOBAL = {"a": torch.zeros(2, 2), "b": torch.zeros(3)}


def update(cid: int, value: float) -> ClientUpdate:
    return ClientUpdate(cid, 1, {"a": torch.full((2, 2), value), "b": torch.full((3,), value)})


def test_update_norm_is_the_l2_norm_of_the_delta_over_all_tensors():
    assert update_norm(update(0, 2.0), GLOBAL) == pytest.approx(2.0 * math.sqrt(7))


def test_clipping_scales_the_delta_down_to_the_bound_and_keeps_small_updates():
    big, small = update(0, 2.0), update(1, 0.1)
    clipped = clip_update(big, GLOBAL, 1.0)
    assert update_norm(clipped, GLOBAL) == pytest.approx(1.0, rel=1e-6)
    assert clipped.state["a"].dtype == torch.float32 and big.state["a"][0, 0] == 2.0  # the input is not changed
    assert clip_update(small, GLOBAL, 1.0) is small


def test_screening_rejects_nan_and_inf_in_state_or_extra_and_clips_the_rest():
    nan, inf = update(1, float("nan")), update(2, 1.0)
    inf.extra["c"] = torch.tensor([float("inf")])
    screened = screen_updates([update(0, 0.1), nan, inf, update(3, 5.0)], GLOBAL, clip_norm=1.0)
    assert [u.client_id for u in screened.accepted] == [0, 3]
    assert screened.rejected_nonfinite == [1, 2] and screened.clipped == [3]
    assert screen_updates([update(0, 5.0)], GLOBAL, clip_norm=None).clipped == []


def run_one_round(tmp_path, name: str, agg: str, *extra, **overrides):
    cfg = smoke_config(tmp_path / name, **{
        "federation.rounds": 1, "federation.num_clients": 5, "federation.clients_per_round": 5,
        "federation.local_steps": 2, "federation.local_optimizer": "sgd", "federation.lr": 0.5,
        "plugins.agg": agg, "plugins.evals": [], **overrides})
    engine = untracked_engine(cfg, *extra)
    summary = engine.run()
    initial = engine.checkpoints.load(engine.checkpoints.root / "round_0000").global_state
    return engine.state.global_state, initial, summary.final_metrics




def test_non_finite_client_is_rejected_counted_and_left_out(tmp_path):
    honest, initial, _ = run_one_round(tmp_path, "honest", "fedavg", Tamper([], None))
    state, _, metrics = run_one_round(tmp_path, "nan", "fedavg", Tamper([3], None))
    assert metrics["clients/rejected_nonfinite"] == 1 and metrics["clients/trained"] == 4
    assert all(torch.isfinite(t).all() for t in state.values())
    assert 0 < distance(state, honest) < distance(honest, initial)  # fedavg of the four others


def test_round_where_every_update_is_non_finite_keeps_the_global_adapter(tmp_path):
    state, initial, metrics = run_one_round(tmp_path, "all-nan", "fedavg", Tamper(range(5), None))
    assert metrics["clients/rejected_nonfinite"] == 5 and metrics["clients/trained"] == 0
    assert distance(state, initial) == 0


@pytest.mark.slow
def test_median_resists_one_flipped_and_scaled_client_where_fedavg_does_not(tmp_path):
    attacker = Tamper([0], factor=-100.0)
    result = {}
    for agg in ("fedavg", "median"):
        honest, initial, _ = run_one_round(tmp_path, f"{agg}-honest", agg)
        attacked, _, _ = run_one_round(tmp_path, f"{agg}-attacked", agg, attacker)
        result[agg] = distance(attacked, honest) / distance(honest, initial)
    assert result["median"] < 1.0 < 10.0 < result["fedavg"], result


@pytest.mark.slow
def test_update_norm_clipping_bounds_the_malicious_clients_pull_on_fedavg(tmp_path):
    attacker = Tamper([0], factor=-100.0)
    clip = {"federation.clip_update_norm": 0.05}
    honest, initial, _ = run_one_round(tmp_path, "honest", "fedavg", **clip)
    attacked, _, metrics = run_one_round(tmp_path, "attacked", "fedavg", attacker, **clip)
    assert metrics["clients/clipped"] >= 1
    # the attacker moves the weighted mean by at most its weight times twice the bound
    assert distance(attacked, honest) <= 2 * 0.05 + 1e-6
