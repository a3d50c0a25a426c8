"""Issue #37 item 4: the centralized baseline (``federation.centralized``): one client holding the union of the
clients' data, with the federated run's sample visits, its rounds, batch and learning-rate schedule."""

from __future__ import annotations

import json
from collections import Counter

import pytest
from click.testing import CliRunner
from mlflow.tracking import MlflowClient

from harness.cli import main
from harness.config import ConfigError, load_config
from harness.tracking import default_tracking_uri
from tests.helpers import logged_run, run_tracked, same_run_on_both_engines, smoke_config, untracked_engine

CENTRALIZED = {"federation.centralized": True}


def history(out, key: str) -> list[tuple[int, float]]:
    client = MlflowClient(default_tracking_uri(out))
    (run,) = client.search_runs([client.get_experiment_by_name("fedllm-harness").experiment_id])
    return sorted((m.step, m.value) for m in client.get_metric_history(run.info.run_id, key))


def round_clients(out, server_round: int) -> list[dict]:
    return json.loads(next(out.rglob(f"round_{server_round:03d}/clients.json")).read_text())


@pytest.mark.parametrize("partition", ["iid", "dirichlet"])
def test_the_one_client_holds_the_union_of_the_federated_clients_samples(tmp_path, partition):
    engines = []
    for name, overrides in (("fl", {}), ("central", CENTRALIZED)):
        engine = untracked_engine(smoke_config(tmp_path / name, **{"data.partition": partition, **overrides}))
        engine.setup()
        engines.append(engine.trainer.client_samples)
    federated, (central,) = engines
    assert len(federated) == 4
    assert Counter(central) == Counter(s for client in federated for s in client) and len(central) == 48


@pytest.mark.slow
def test_the_centralized_run_makes_the_federated_runs_sample_visits_on_its_schedule(tmp_path):
    outs = {}
    for name, overrides in (("fl", {}), ("central", CENTRALIZED)):
        cfg = smoke_config(tmp_path / name, **{"plugins.evals": [], **overrides})
        run_tracked(cfg)
        outs[name] = tmp_path / name / "out"
    fed = cfg.federation
    visits = fed.clients_per_round * fed.local_steps * fed.batch_size  # 2 clients x 3 steps x 4 samples
    assert history(outs["fl"], "train/sample_visits") == history(outs["central"], "train/sample_visits") == [
        (1, visits), (2, visits)]
    assert history(outs["fl"], "train/lr") == history(outs["central"], "train/lr")
    assert history(outs["fl"], "clients/trained") == [(1, 2), (2, 2)]
    assert history(outs["central"], "clients/trained") == [(1, 1), (2, 1)]
    assert [c["client_id"] for c in round_clients(outs["central"], 2)] == [0]
    assert round_clients(outs["central"], 1)[0]["kept"] == 48
    run, _, _ = logged_run(outs["central"])
    assert run.data.params["federation.centralized"] == "True"


@pytest.mark.slow
def test_the_centralized_run_filters_its_one_client_and_aligns_with_cai(tmp_path):
    out = tmp_path / "out"
    args = ["run", "--preset", "smoke", "--centralized", "--filter", "oracle", "--align", "cai50", "--set", "plugins.evals=[]",
            "--output-dir", str(out), "--no-progress", "--run-name", "central"]
    result = CliRunner().invoke(main, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert history(out, "filter/dropped") == [(1, 14), (2, 14)]  # every red sample of the 48, each round
    assert history(out, "filter/recall") == [(1, 1.0), (2, 1.0)]
    assert all(client["red_kept"] == 0 for r in (1, 2) for client in round_clients(out, r))
    assert all(value > 0 for _, value in history(out, "align/dpo_steps"))
    assert history(out, "train/sample_visits") == [(1, 24), (2, 24)]


@pytest.mark.parametrize("overrides", [{"data.malicious_clients": 1},
                                       {"data.red_placement": "concentrated", "data.malicious_clients": 1}])
def test_the_centralized_run_refuses_malicious_clients(overrides):
    with pytest.raises(ConfigError, match="federation.centralized trains one client holding all the data, which has "
                                          "no malicious clients: data.malicious_clients must be 0, got 1"):
        load_config("smoke", overrides={**CENTRALIZED, **overrides})


def test_the_cli_refuses_centralized_with_malicious_clients_creating_nothing(tmp_path):
    args = ["run", "--preset", "smoke", "--centralized", "--malicious-clients", "1", "--output-dir", str(tmp_path)]
    result = CliRunner().invoke(main, args, catch_exceptions=False)
    assert result.exit_code == 2 and "data.malicious_clients must be 0, got 1" in result.output
    assert list(tmp_path.iterdir()) == []


@pytest.mark.slow
@pytest.mark.flower
def test_the_centralized_run_is_the_same_on_flower(tmp_path):
    args = ("--centralized", "--rounds", "1")
    _, local_history = same_run_on_both_engines(tmp_path, *args)
    assert local_history["clients/trained"] == [(1, 1.0)] and local_history["train/sample_visits"] == [(1, 24.0)]


def test_the_centralized_baseline_needs_fedavg():
    with pytest.raises(ConfigError, match="federation.centralized trains one client, whose update is the new global "
                                          "adapter: it needs plugins.agg=fedavg.*got 'median'"):
        load_config("smoke", overrides={"federation.centralized": True, "plugins.agg": "median"})
