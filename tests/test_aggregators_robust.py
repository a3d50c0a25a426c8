"""Issue #37 item 2: Multi-Krum (Blanchard et al. 2017) and norm bounding (Sun et al. 2019) against their papers'
rules on hand-computed cases, and the effect of every robust aggregator against one poisoned client."""

from __future__ import annotations

import math

import pytest
import torch
from mlflow.tracking import MlflowClient

from harness import InputError
from harness.hookspecs import hookimpl
from harness.tracking import default_tracking_uri, find_run
from harness.types import ClientUpdate, RunInfo
from harness.default_plugins.aggregators.fedavg import FedAvg
from harness.default_plugins.aggregators.median import Median
from harness.default_plugins.aggregators.multi_krum import MultiKrum, krum_scores
from harness.default_plugins.aggregators.norm_bound import NormBound
from harness.default_plugins.aggregators.robust import pairwise_squared_distances
from harness.default_plugins.aggregators.trimmed_mean import TrimmedMean
from tests.helpers import Tamper, distance, run_tracked, smoke_config

X = {"a": torch.tensor([1.0]), "b": torch.tensor([-1.0])}  # the global adapter: two tensors of one value each
# client deltas (a, b); client 4 is the outlier
DELTAS = [(0.0, 0.0), (1.0, 0.0), (0.0, 2.0), (2.0, 2.0), (10.0, 10.0)]
# squared distances: d01 = 1, d02 = 4, d03 = 8, d04 = 200, d12 = 5, d13 = 5, d14 = 181, d23 = 4, d24 = 164, d34 = 128
# n = 5, f = 1: each score sums the n - f - 2 = 2 smallest distances to the others:
SCORES = [1 + 4, 1 + 5, 4 + 4, 4 + 5, 128 + 164]


def clients(deltas, counts=None, ids=None) -> list[ClientUpdate]:
    ids = ids or range(len(deltas))
    counts = counts or [10] * len(deltas)
    return [ClientUpdate(i, c, {"a": X["a"] + a, "b": X["b"] + b}) for i, c, (a, b) in zip(ids, counts, deltas)]


def aggregate(agg, updates, global_state=X):
    return agg.aggregate(server_round=1, global_state=global_state, updates=updates, num_clients_total=len(updates))


def moved(result) -> list[float]:
    """The global adapter's change (a, b)."""
    return [(result.state[n] - X[n]).item() for n in X]


def test_krum_scores_by_hand():
    distances = pairwise_squared_distances(clients(DELTAS), X)
    assert distances[0, 4].item() == pytest.approx(200) and distances[2, 3].item() == pytest.approx(4)
    assert krum_scores(distances, neighbours=2).tolist() == pytest.approx(SCORES)


def test_krum_picks_the_lowest_score_and_multi_krum_averages_the_m_lowest_unweighted():
    counts = [1, 1, 1, 1000, 1]  # sample counts do not weigh in (FedAvg of clients 0-3 would sit near client 3)
    krum = aggregate(MultiKrum(num_malicious=1, num_selected=1), clients(DELTAS, counts))
    assert moved(krum) == [0.0, 0.0]  # client 0, score 5
    two = aggregate(MultiKrum(num_malicious=1, num_selected=2), clients(DELTAS, counts))
    assert moved(two) == pytest.approx([0.5, 0.0])  # clients 0 and 1
    default = aggregate(MultiKrum(num_malicious=1), clients(DELTAS, counts))  # m = n - f = 4: clients 0-3
    assert moved(default) == pytest.approx([(0 + 1 + 0 + 2) / 4, (0 + 0 + 2 + 2) / 4])
    assert default.metrics == {"clients": 5.0, "selected": 4.0, "below_bound": 0.0, "selected/client_0": 1.0,
                               "selected/client_1": 1.0, "selected/client_2": 1.0, "selected/client_3": 1.0,
                               "selected/client_4": 0.0}
    assert all(default.state[n].dtype == X[n].dtype for n in X)


def test_equal_scores_go_to_the_client_listed_first():
    # deltas 0, 1, 2 on a line (f = 0: 1 neighbour): scores 1, 1, 1; Krum keeps the first
    result = aggregate(MultiKrum(num_malicious=0, num_selected=1), clients([(0.0, 0.0), (1.0, 0.0), (2.0, 0.0)]))
    assert moved(result) == [0.0, 0.0]


def test_a_round_with_fewer_clients_than_the_bound_falls_back_and_says_so():
    # client 2 did not arrive: n = 4 = 2f + 2. Fallback: max(1, n - f - 2) = 1 neighbour, m = n - f = 3.
    # d01 = 1, d03 = 8, d04 = 200, d13 = 5, d14 = 181, d34 = 128 -> scores 1, 1, 5, 128: clients 0, 1, 3
    short = [DELTAS[i] for i in (0, 1, 3, 4)]
    result = aggregate(MultiKrum(num_malicious=1), clients(short, ids=[0, 1, 3, 4]))
    assert moved(result) == pytest.approx([(0 + 1 + 2) / 3, (0 + 0 + 2) / 3])
    assert result.metrics["below_bound"] == 1.0 and result.metrics["selected/client_4"] == 0.0
    lone = aggregate(MultiKrum(num_malicious=1, num_selected=3), clients([(3.0, 4.0)], ids=[7]))  # m capped at n
    assert moved(lone) == [3.0, 4.0] and lone.metrics["selected/client_7"] == 1.0


def run_info(tmp_path, clients_per_round: int) -> RunInfo:
    cfg = smoke_config(tmp_path, **{"federation.num_clients": 8, "federation.clients_per_round": clients_per_round})
    return RunInfo(run_name="test-run", run_dir=tmp_path, config=cfg, params={})


def test_multi_krum_refuses_a_run_that_cannot_meet_the_bound_or_select_m(tmp_path):
    MultiKrum(num_malicious=1).on_run_start(run=run_info(tmp_path, 5))  # 5 > 2f + 2 = 4
    with pytest.raises(InputError, match=r"more than 2f \+ 2 = 4 clients per round .* clients_per_round=4"):
        MultiKrum(num_malicious=1).on_run_start(run=run_info(tmp_path, 4))
    with pytest.raises(InputError, match="num_selected=6 exceeds clients_per_round=5"):
        MultiKrum(num_malicious=1, num_selected=6).on_run_start(run=run_info(tmp_path, 5))


@pytest.mark.parametrize("factory, message", [
    (lambda: MultiKrum(num_malicious=-1), "num_malicious must be an integer >= 0"),
    (lambda: MultiKrum(num_malicious=1.5), "num_malicious must be an integer >= 0"),
    (lambda: MultiKrum(num_selected=0), "num_selected must be an integer >= 1"),
    (lambda: NormBound(max_norm=0), "max_norm must be a finite number > 0"),
    (lambda: NormBound(max_norm=-1.0), "max_norm must be a finite number > 0"),
    (lambda: NormBound(max_norm=math.inf), "max_norm must be a finite number > 0"),
])
def test_bad_options_are_rejected_at_construction(factory, message):
    with pytest.raises(InputError, match=message):
        factory()


def test_norm_bound_clips_each_delta_then_averages_by_sample_count():
    # client 0: delta (3, 4), norm 5 -> clipped to norm 1: (0.6, 0.8); client 1: (0.3, 0.4), norm 0.5, kept
    result = aggregate(NormBound(max_norm=1.0), clients([(3.0, 4.0), (0.3, 0.4)], counts=[1, 3]))
    assert moved(result) == pytest.approx([(0.6 * 1 + 0.3 * 3) / 4, (0.8 * 1 + 0.4 * 3) / 4])
    assert result.metrics == pytest.approx({"clients": 2.0, "clipped": 1.0, "mean_norm": (5 + 0.5) / 2})
    unclipped = aggregate(NormBound(max_norm=5.0), clients([(3.0, 4.0), (0.3, 0.4)], counts=[1, 3]))
    assert moved(unclipped) == pytest.approx(moved(aggregate(FedAvg(), clients([(3.0, 4.0), (0.3, 0.4)], [1, 3]))))
    assert unclipped.metrics["clipped"] == 0.0


# -- effect: one poisoned client among ten --------------------------------------------------------------------

HONEST = 9
SHAPE = {"a": (8, 4), "b": (6,)}


def honest_deltas() -> list[dict[str, torch.Tensor]]:
    """Nine deltas around a common mean (per coordinate N(0, 0.1²), each client adds N(0, 0.03²) noise)."""
    g = torch.Generator().manual_seed(0)
    mean = {n: 0.1 * torch.randn(s, generator=g) for n, s in SHAPE.items()}
    return [{n: mean[n] + 0.03 * torch.randn(s, generator=g) for n, s in SHAPE.items()} for _ in range(HONEST)]


def norm(state) -> float:
    return math.sqrt(sum(float(t.double().pow(2).sum()) for t in state.values()))


def attacks(honest) -> dict[str, dict[str, torch.Tensor]]:
    g = torch.Generator().manual_seed(1)
    mean = {n: sum(d[n] for d in honest) / HONEST for n in SHAPE}
    sd = {n: torch.stack([d[n] for d in honest]).std(dim=0) for n in SHAPE}
    return {
        "flipped x10": {n: -10 * mean[n] for n in SHAPE},  # sign flip, scaled
        "boosted x10": {n: 10 * mean[n] for n in SHAPE},  # model replacement (scaled honest direction)
        "noise": {n: torch.randn(s, generator=g) for n, s in SHAPE.items()},  # large random update
        "within spread": {n: mean[n] - sd[n] for n in SHAPE},  # one honest sd off per coordinate
    }


def effect(attack: str) -> dict[str, tuple[float, dict[str, float]]]:
    """Per aggregator: ‖aggregate − honest mean‖ / ‖honest mean‖ (deltas) and its metrics."""
    honest = honest_deltas()
    zero = {n: torch.zeros(s) for n, s in SHAPE.items()}
    honest_mean = {n: sum(d[n] for d in honest) / HONEST for n in SHAPE}
    updates = [ClientUpdate(i, 10, d) for i, d in enumerate([*honest, attacks(honest)[attack]])]
    aggregators = {"fedavg": FedAvg(), "multi-krum": MultiKrum(num_malicious=1), "median": Median(),
                   "norm-bound": NormBound(max_norm=max(norm(d) for d in honest)), "trimmed-mean": TrimmedMean(0.1)}
    out = {}
    for name, agg in aggregators.items():
        result = aggregate(agg, updates, zero)
        out[name] = (distance(result.state, honest_mean) / norm(honest_mean), result.metrics)
    return out


@pytest.mark.parametrize("attack", ["flipped x10", "boosted x10", "noise"])
def test_every_defense_stays_at_least_four_times_closer_to_the_honest_mean_than_fedavg(attack):
    found = effect(attack)
    fedavg = found.pop("fedavg")[0]
    assert fedavg > 0.8, found  # the poisoned tenth pulls fedavg by about the honest mean's own norm
    for name, (dist, _) in found.items():
        assert dist < fedavg / 4, (name, dist, fedavg)
    assert found["multi-krum"][1]["selected/client_9"] == 0.0 and found["multi-krum"][0] < 1e-6
    assert found["norm-bound"][1]["clipped"] >= 1


def test_an_attacker_within_the_honest_spread_is_not_resisted():
    """The negative result: a poisoned delta one honest sd off the mean moves fedavg by a tenth of that; the
    median and trimmed mean carry their own estimation error, larger than that tenth; Multi-Krum keeps the
    attacker (it looks more central than honest clients) and drops an honest one; norm bounding clips nothing."""
    found = effect("within spread")
    fedavg = found["fedavg"][0]
    for name in ("multi-krum", "median", "trimmed-mean"):
        assert found[name][0] > fedavg, (name, found[name][0], fedavg)
    assert found["multi-krum"][1]["selected/client_9"] == 1.0
    assert found["norm-bound"][0] == pytest.approx(fedavg) and found["norm-bound"][1]["clipped"] == 0.0


# -- end to end: the tiny model, five clients, client 0 sends -100 × its update -----------------------------


class GlobalRecorder:
    """Keeps the global adapter before round 1 and after each aggregation."""

    def __init__(self):
        self.states: list[dict[str, torch.Tensor]] = []

    @hookimpl
    def configure_fit(self, server_round, client_id, global_state):
        if not self.states:
            self.states.append({n: t.clone() for n, t in global_state.items()})

    @hookimpl
    def post_aggregate(self, server_round, model):
        self.states.append({n: t.clone() for n, t in model.adapter_state().items()})


def attacked_run(tmp_path, agg: str, options: dict, *extra) -> tuple[dict[str, float], GlobalRecorder]:
    cfg = smoke_config(tmp_path / agg, **{
        "federation.rounds": 1, "federation.num_clients": 5, "federation.clients_per_round": 5,
        "federation.local_steps": 2, "federation.local_optimizer": "sgd", "federation.lr": 0.5,
        "plugins.agg": agg, "plugins.agg_options": options, "plugins.evals": []})
    recorder = GlobalRecorder()
    summary = run_tracked(cfg, Tamper([0], factor=-100.0), recorder, *extra)
    assert summary.status == "FINISHED", summary.error
    uri = default_tracking_uri(cfg.output_dir)
    return MlflowClient(uri).get_run(find_run(uri, cfg.tracking.run_name).info.run_id).data.metrics, recorder


@pytest.mark.slow
def test_multi_krum_leaves_the_poisoned_client_out_of_a_real_round(tmp_path):
    metrics, _ = attacked_run(tmp_path, "multi-krum", {"num_malicious": 1})
    assert metrics["agg/clients"] == 5 and metrics["agg/selected"] == 4 and metrics["agg/below_bound"] == 0
    assert metrics["agg/selected/client_0"] == 0
    assert all(metrics[f"agg/selected/client_{i}"] == 1 for i in range(1, 5))


@pytest.mark.slow
def test_norm_bound_clips_the_poisoned_client_in_a_real_round(tmp_path):
    metrics, recorder = attacked_run(tmp_path, "norm-bound", {"max_norm": 0.05})
    assert metrics["agg/clients"] == 5 and metrics["agg/clipped"] >= 1 and metrics["agg/mean_norm"] > 0.05
    before, after = recorder.states
    assert distance(after, before) <= 0.05 + 1e-6  # a weighted mean of deltas of norm <= 0.05
