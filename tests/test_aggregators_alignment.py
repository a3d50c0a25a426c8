"""How server state treats the post_aggregate (alignment) change of the global adapter.

The decision (docs/aggregation.md): the aligned adapter *is* the next round's x; server moments and
SCAFFOLD's c only ever see client deltas, so the alignment shift is neither replayed by momentum
nor counted as client drift.
"""

from __future__ import annotations

import pytest
import torch

from harness import registry
from harness.engine import RoundEngine
from harness.hookspecs import hookimpl
from harness.types import AlignResult, ClientUpdate, LocalTrainInfo
from harness.default_plugins.aggregators.fedadam import FedAdam
from harness.default_plugins.aggregators.fedavgm import FedAvgM
from harness.default_plugins.aggregators.scaffold import Scaffold
from tests.helpers import smoke_config

SHIFT = 0.25


def test_fedavgm_momentum_does_not_replay_an_alignment_shift():
    agg = FedAvgM(server_lr=1.0, momentum=0.5)
    x0 = {"w": torch.tensor([0.0])}
    x1 = agg.aggregate(server_round=1, global_state=x0, updates=[ClientUpdate(0, 1, {"w": torch.tensor([1.0])})],
                       num_clients_total=1).state  # Δ1 = 1, v = 1, x1 = 1
    aligned = {"w": x1["w"] + SHIFT}  # post_aggregate moves x1 by the shift
    y2 = {"w": aligned["w"] + 2.0}  # the client starts from the aligned x and moves by 2
    x2 = agg.aggregate(server_round=2, global_state=aligned, updates=[ClientUpdate(0, 1, y2)], num_clients_total=1)
    assert agg.moments["velocity"]["w"].item() == pytest.approx(0.5 * 1.0 + 2.0)  # no SHIFT inside v
    assert x2.state["w"].item() == pytest.approx(1.0 + SHIFT + 2.5)  # the step starts from the aligned x


def test_fedadam_moments_see_only_client_deltas():
    shifted, plain = FedAdam(server_lr=0.1), FedAdam(server_lr=0.1)
    x0 = {"w": torch.tensor([0.0, 0.0])}
    delta = torch.tensor([0.3, -0.1])
    for agg in (shifted, plain):
        agg.aggregate(server_round=1, global_state=x0, updates=[ClientUpdate(0, 1, {"w": delta})], num_clients_total=1)
    base = {"w": torch.tensor([1.0, 1.0])}
    out_plain = plain.aggregate(server_round=2, global_state=base,
                                updates=[ClientUpdate(0, 1, {"w": base["w"] + delta})], num_clients_total=1)
    aligned = {"w": base["w"] + SHIFT}
    out_shifted = shifted.aggregate(server_round=2, global_state=aligned,
                                    updates=[ClientUpdate(0, 1, {"w": aligned["w"] + delta})], num_clients_total=1)
    for moment in ("m", "v"):
        assert torch.equal(shifted.moments[moment]["w"], plain.moments[moment]["w"])
    assert torch.allclose(out_shifted.state["w"] - out_plain.state["w"], torch.full((2,), SHIFT))


def test_scaffold_c_ignores_the_alignment_shift_and_x_starts_from_the_aligned_adapter(tmp_path):
    agg = Scaffold(state_dir=str(tmp_path))
    info = LocalTrainInfo(steps=1, learning_rate=1.0, mean_loss=0, num_tokens=0, step_seconds=0, padding_fraction=0)

    def one_round(r: int, x: dict) -> dict:
        fit = agg.configure_fit(server_round=r, client_id=0, global_state=x)
        y = {"w": x["w"] - 1.0}  # the client always moves by -1 from where it starts
        dc = agg.client_fit_end(client_id=0, server_round=r, local_state=y, global_state=x, fit_ins=fit, train_info=info)
        return agg.aggregate(server_round=r, global_state=x, updates=[ClientUpdate(0, 1, y, dc)],
                             num_clients_total=2).state

    x1 = one_round(1, {"w": torch.tensor([0.0])})
    c_after_round_1 = agg.c.clone()
    x2 = one_round(2, {"w": x1["w"] + SHIFT})  # aligned between the rounds
    assert x2["w"].item() == pytest.approx(-1.0 + SHIFT - 1.0)
    # by hand, the same with or without the shift (x - y = 1 in both rounds):
    # round 1: Δc_0 = 1 - 0 -> c_0 = 1, c = 0 + 1/2; round 2: Δc_0 = 1 - 0.5 -> c_0 = 1.5, c = 0.5 + 0.5/2
    assert c_after_round_1.item() == pytest.approx(0.5)
    assert agg.store.load(0, numel=1).item() == pytest.approx(1.5)
    assert agg.c.item() == pytest.approx(0.75)


class ShiftAligner:
    """post_aggregate: add SHIFT to every adapter tensor."""

    def __init__(self):
        self.aligned: list[dict] = []

    @hookimpl
    def post_aggregate(self, server_round, model):
        state = {n: t + SHIFT for n, t in model.adapter_state().items()}
        self.aligned.append(state)
        return AlignResult(state=state)


class RecordingFedAvgM(FedAvgM):
    """FedAvgM that remembers what the engine handed to aggregate."""

    def __init__(self):
        super().__init__(server_lr=1.0, momentum=0.5)
        self.seen: list[tuple[dict, list[ClientUpdate]]] = []

    @hookimpl
    def aggregate(self, server_round, global_state, updates, num_clients_total):
        self.seen.append(({n: t.clone() for n, t in global_state.items()}, updates))
        return super().aggregate(server_round, global_state, updates, num_clients_total)


def test_engine_hands_the_aligned_adapter_to_the_next_aggregate(tmp_path):
    cfg = smoke_config(tmp_path, **{"federation.rounds": 2, "plugins.evals": []})
    agg, aligner = RecordingFedAvgM(), ShiftAligner()
    pm = registry.new_manager()
    pm.register(agg)
    pm.register(aligner)
    RoundEngine(cfg, pm, progress=False).run()
    (g1, ups1), (g2, ups2) = agg.seen
    for name in g2:
        assert torch.equal(g2[name], aligner.aligned[0][name])
    name = next(iter(g2))

    def mean_delta(g, ups):
        return sum(u.num_examples * (u.state[name] - g[name]) for u in ups) / sum(u.num_examples for u in ups)

    expected_velocity = 0.5 * mean_delta(g1, ups1) + mean_delta(g2, ups2)
    assert torch.allclose(agg.moments["velocity"][name], expected_velocity, atol=1e-7)
