"""Issue #37 item 1: who holds the red data (``data.red_placement``, ``data.malicious_clients``) and malicious clients
that skip the client-side filter (``data.malicious_skip_filter``), on the local and the Flower engine."""

from __future__ import annotations

import json
import re

import pytest
from click.testing import CliRunner
from mlflow.tracking import MlflowClient

from harness.cli import main
from harness.config import ConfigError, load_config
from harness.data.demo import demo_samples
from harness.data.mixture import build_mixture
from harness.data.partition import partition
from harness.data.placement import client_sizes
from harness.tracking import default_tracking_uri
from tests.helpers import run_tracked, same_run_on_both_engines, smoke_config

CONCENTRATED = {"data.red_placement": "concentrated", "data.malicious_clients": 1}


def mixture(n: int, ratio: float):
    ok, red = demo_samples(200, 200, seed=1)
    return build_mixture(ok, red, n, ratio, 0)


def red_counts(samples, parts) -> list[int]:
    return [sum(bool(samples[i].is_harmful) for i in part) for part in parts]


# -- the partition ------------------------------------------------------------------------------------------------

def test_iid_placement_deals_the_same_indices_as_before():
    samples = mixture(20, 0.3)
    before = [[4, 5, 7, 13, 14, 16, 18], [1, 2, 3, 8, 11, 12, 19], [0, 6, 9, 10, 15, 17]]  # the code before #37
    assert partition(samples, 3, "iid", 0.5, 7) == before
    assert partition(samples, 3, "iid", 0.5, 7, "iid", 2, 0.2) == before  # malicious ids alone move no sample


@pytest.mark.parametrize("n, ratio, clients, malicious, share", [
    (100, 0.3, 5, 1, 1.0),  # 20 red on client 0, the other 10 over the 4 honest ones
    (100, 0.3, 7, 2, 0.5),  # sizes 15, 15, 14, ...: round(0.5 * 15) = 8 red on each malicious client
    (60, 0.5, 4, 2, 1.0),  # every red sample on the malicious clients: the honest ones hold none
    (48, 0.25, 4, 4, 0.25),  # every client malicious
])
def test_concentrated_placement_puts_the_stated_red_counts_on_each_client(n, ratio, clients, malicious, share):
    samples = mixture(n, ratio)
    parts = partition(samples, clients, "iid", 0.5, 3, "concentrated", malicious, share)
    assert sorted(i for part in parts for i in part) == list(range(n))  # every sample, once
    sizes = client_sizes(n, clients)
    assert [len(part) for part in parts] == sizes == [len(p) for p in partition(samples, clients, "iid", 0.5, 3)]
    red = red_counts(samples, parts)
    assert red[:malicious] == [round(share * size) for size in sizes[:malicious]]
    honest = red[malicious:]
    assert sum(honest) == round(n * ratio) - sum(red[:malicious])  # the pool's red count is unchanged
    assert not honest or max(honest) - min(honest) <= 1  # the honest share is even


def test_concentrated_placement_is_seeded():
    samples = mixture(100, 0.3)
    one = partition(samples, 5, "iid", 0.5, 1, "concentrated", 1, 1.0)
    assert one == partition(samples, 5, "iid", 0.5, 1, "concentrated", 1, 1.0)
    assert one != partition(samples, 5, "iid", 0.5, 2, "concentrated", 1, 1.0)


# -- validation ---------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("overrides, message", [
    ({"data.red_placement": "concentrated"}, "data.red_placement=concentrated needs data.malicious_clients >= 1"),
    ({"data.red_placement": "nearby"}, "data.red_placement must be one of iid, concentrated, got 'nearby'"),
    ({"data.malicious_clients": 5}, "data.malicious_clients must be in 0..num_clients (4), got 5"),
    ({**CONCENTRATED, "data.partition": "dirichlet"}, "data.red_placement=concentrated needs data.partition=iid"),
    ({"data.malicious_skip_filter": True}, "data.malicious_skip_filter needs data.malicious_clients >= 1"),
    # smoke: 48 samples, 14 red, 4 clients of 12: two malicious clients at 100 % need 24
    ({**CONCENTRATED, "data.malicious_clients": 2}, "hold 24 red samples; the client mixture has 14"),
    ({**CONCENTRATED, "data.malicious_clients": 4, "data.malicious_red_share": 0.25},
     "hold 12 of the mixture's 14 red samples, and the honest clients' 0 samples cannot take the other 2"),
])
def test_a_placement_that_cannot_work_is_a_config_error_naming_the_key(overrides, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        load_config("smoke", overrides=overrides)


def test_the_cli_refuses_a_bad_placement_with_exit_2_creating_nothing(tmp_path):
    args = ["run", "--preset", "smoke", "--red-placement", "concentrated", "--malicious-clients", "3",
            "--output-dir", str(tmp_path / "out")]
    result = CliRunner().invoke(main, args, catch_exceptions=False)
    assert result.exit_code == 2 and "data.malicious_clients=3 at data.malicious_red_share=1 hold 36" in result.output
    assert not (tmp_path / "out").exists()


# -- runs ---------------------------------------------------------------------------------------------------------

def oracle_run(tmp_path, skip: bool):
    """One round of the smoke run, every client trained, red concentrated on client 0, the oracle filter."""
    cfg = smoke_config(tmp_path, **CONCENTRATED, **{
        "data.malicious_skip_filter": skip, "plugins.filter": "oracle", "federation.rounds": 1,
        "federation.clients_per_round": 4, "plugins.evals": []})
    summary = run_tracked(cfg)
    clients = json.loads(next((tmp_path / "out").rglob("round_001/clients.json")).read_text())
    return summary, {c["client_id"]: c for c in clients}


@pytest.mark.slow
def test_malicious_clients_skipping_the_oracle_filter_train_on_their_red_samples(tmp_path):
    summary, clients = oracle_run(tmp_path, skip=True)
    assert clients[0] == {"client_id": 0, "kept": 12, "dropped": 0, "red": 12, "red_kept": 12, "recall": 0.0,
                          "malicious": True, "filter_skipped": True}
    for cid in (1, 2, 3):  # honest: the filter ran and dropped their 1, 1 and 0 red samples
        assert clients[cid]["red_kept"] == 0 and "malicious" not in clients[cid] and "filter_skipped" not in clients[cid]
    assert [clients[cid]["red"] for cid in (1, 2, 3)] == [1, 1, 0]
    metrics = summary.final_metrics
    assert metrics["filter/skipped_by_malicious"] == 1 and metrics["clients/trained"] == 4
    assert metrics["filter/recall"] == 2 / 14  # the filter "failed" on every red sample it never saw
    client = MlflowClient(default_tracking_uri(tmp_path / "out"))
    (run,) = client.search_runs([client.get_experiment_by_name("fedllm-harness").experiment_id])
    params = run.data.params
    assert (params["data.red_placement"], params["data.malicious_clients"]) == ("concentrated", "1")
    assert params["run.malicious_client_ids"] == "[0]"
    assert params["run.client_red_samples"] == "[12, 1, 1, 0]" and params["run.client_samples"] == "[12, 12, 12, 12]"


@pytest.mark.slow
def test_the_same_run_with_compliant_malicious_clients_trains_on_no_red_sample(tmp_path):
    summary, clients = oracle_run(tmp_path, skip=False)
    assert sum(c["red_kept"] for c in clients.values()) == 0
    assert clients[0]["malicious"] and "filter_skipped" not in clients[0]
    assert clients[0]["kept"] == 0  # only red samples: nothing left to train on
    metrics = summary.final_metrics
    assert metrics["clients/skipped_empty"] == 1 and metrics["clients/trained"] == 3
    assert metrics["filter/recall"] == 1.0 and "filter/skipped_by_malicious" not in metrics


@pytest.mark.slow
@pytest.mark.flower
def test_a_concentrated_run_with_a_skipping_client_is_the_same_on_flower(tmp_path):
    args = ("--num-clients", "3", "--clients-per-round", "3", "--rounds", "1", "--filter", "oracle",
            "--red-placement", "concentrated", "--malicious-clients", "1", "--malicious-red-share", "0.5",
            "--malicious-skip-filter")
    local, local_history = same_run_on_both_engines(tmp_path, *args)
    assert local.data.params["run.client_red_samples"] == "[8, 3, 3]"  # 14 red: 8 on client 0 (half its 16)
    assert local_history["filter/skipped_by_malicious"] == [(1, 1.0)]
    clients = [json.loads(next((tmp_path / e).rglob("round_001/clients.json")).read_text()) for e in ("local", "flower")]
    assert clients[0] == clients[1] and clients[0][0]["filter_skipped"] and clients[0][0]["red_kept"] == 8
