"""The threats suite (issue #37): its rows' configs, its claims between named rows, and per-eval schedules."""

from __future__ import annotations

import pytest
from mlflow.tracking import MlflowClient

from harness.config import ConfigError, load_config
from harness.leaderboard import load_board, write_leaderboard
from harness.leaderboard.row_claims import RowClaim, row_claims_markdown, suite_row
from harness.suite import SuiteError, SuiteSettings, row_config, run_suite, threats
from tests.helpers import run_tracked, smoke_config
from tests.test_leaderboard_claims import log_run


def test_every_row_is_a_valid_config_with_its_attack_and_defense(tmp_path):
    suite = threats("guards/g")
    settings = SuiteSettings(preset="harmful", seeds=1, output_dir=str(tmp_path),
                             overrides={"federation.clients_per_round": 2})
    configs = {row.name: row_config(suite, settings, row, 0, "sqlite://", ("advbench", "heldout-nll"))
               for row in suite.rows}
    assert len(configs) == 34 and len({c.tracking.run_name for c in configs.values()}) == 34
    assert all(c.federation.clients_per_round == 2 for c in configs.values())  # --set over the suite's settings
    m2, dp = configs["filter-m2"], configs["dp-strong-m0"]
    assert (m2.data.red_placement, m2.data.malicious_clients, m2.data.malicious_skip_filter) == ("concentrated", 2, True)
    assert m2.plugins.filter == "lg3" and m2.plugins.filter_options["model"] == "guards/g"
    assert configs["fedavg-m0"].data.red_placement == "iid" and configs["fedavg-m0"].data.malicious_clients == 0
    assert (dp.privacy.noise_multiplier, dp.privacy.clip_norm) == (1.0, configs["norm-bound-m1"].plugins.agg_options["max_norm"])
    assert configs["multi-krum-m1"].plugins.agg_options == {"num_malicious": 1}
    central = configs["centralized+filter+cai"]
    assert central.federation.centralized and (central.plugins.filter, central.plugins.align) == ("lg3", "cai50")
    assert configs["cai-m2"].plugins.eval_schedule == {"heldout-nll": 1}


def test_the_suite_settings_apply_under_the_users_set(tmp_path):
    suite = threats()
    cfg = row_config(suite, SuiteSettings(preset="harmful", output_dir=str(tmp_path)), suite.rows[0], 0, "sqlite://", ())
    assert cfg.federation.clients_per_round == 5


def test_row_claims_find_rows_by_run_name_and_test_them(tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = MlflowClient(uri)
    exp = client.create_experiment("threats", artifact_location=(tmp_path / "art").as_uri())
    for seed in (0, 1):
        log_run(client, exp, "none", "none", [1] * 30 + [0] * 10, benign=[0] * 20, seed=seed,
                name=f"threats-harmful-fedavg-m0-s{seed}", extra={"data.malicious_clients": "0"})
        log_run(client, exp, "none", "none", [1] * 5 + [0] * 35, benign=[0] * 20, seed=seed,
                name=f"threats-harmful-fedavg-m2-s{seed}", extra={"data.malicious_clients": "2"})
        log_run(client, exp, "none", "none", [1] * 6 + [0] * 34, benign=[0] * 20, seed=seed, agg="median",
                name=f"threats-harmful-median-m2-s{seed}", extra={"data.malicious_clients": "2"})
    board = load_board("threats")
    rows = write_leaderboard(board, uri, tmp_path / "board").rows
    assert sorted(suite_row(r, "threats-harmful-") for r in rows) == ["fedavg-m0", "fedavg-m2", "median-m2"]
    claims = [RowClaim("malicious clients lower safety", "fedavg-m2", "fedavg-m0", -1),
              RowClaim("median restores safety", "median-m2", "fedavg-m2", +1),
              RowClaim("a row that did not run", "multi-krum-m2", "fedavg-m2", +1)]
    text = row_claims_markdown(board, rows, "threats-harmful-", claims, "AdvBench", ["Over-refusal"],
                               {"median-m2": "fedavg-m2", "fedavg-m2": "fedavg-m0"})
    lines = text.splitlines()
    malicious = next(line for line in lines if line.startswith("| malicious"))
    assert "−0.625" in malicious.replace("-0.625", "−0.625") and malicious.endswith("**yes** |")
    assert "-0.625, -0.625" in malicious  # both seeds
    median = next(line for line in lines if line.startswith("| median"))
    assert "not significant" in median  # one goal more per seed: the right sign, p >= 0.05
    assert next(line for line in lines if line.startswith("| a row")).endswith("no data |")
    assert "| median-m2 − fedavg-m2 |" in text and "| fedavg-m2 − fedavg-m0 |" in text


def test_an_eval_with_its_own_schedule_runs_every_round_the_others_at_the_end(tmp_path):
    cfg = smoke_config(tmp_path, **{"federation.rounds": 2, "plugins.evals": ["heldout-nll", "advbench"],
                                    "plugins.eval_every": 0,
                                    "plugins.eval_schedule": {"heldout-nll": 1}, "data.heldout_samples": 8,
                                    "plugins.eval_options": {"heldout-nll": {"num_items": 4},
                                                             "advbench": {"items": 2, "max_new_tokens": 4}}})
    run_tracked(cfg)
    client = MlflowClient(f"sqlite:///{tmp_path / 'out' / 'mlflow.db'}")
    run = client.search_runs([client.get_experiment_by_name(cfg.tracking.experiment).experiment_id])[0]
    steps = lambda key: [m.step for m in client.get_metric_history(run.info.run_id, key)]  # noqa: E731
    assert steps("heldout/nll") == [1, 2]
    assert steps("advbench/harmless_rate_strict") == [2]


@pytest.mark.parametrize("schedule, message", [
    ({"mtbench": 1}, "plugins.eval_schedule names eval 'mtbench', which is not in plugins.evals"),
    ({"heldout-nll": -1}, r"plugins.eval_schedule.heldout-nll must be a number of rounds in 0..1,000,000 \(0: only"),
    ({"heldout-nll": 1.5}, "plugins.eval_schedule.heldout-nll: expected int, got float 1.5"),
])
def test_a_bad_eval_schedule_is_a_config_error_naming_it(schedule, message):
    with pytest.raises(ConfigError, match=message):
        load_config("smoke", overrides={"plugins.evals": ["heldout-nll"], "plugins.eval_schedule": schedule})


def test_a_row_that_cannot_run_fails_the_suite_before_any_run_or_store(tmp_path):
    out = tmp_path / "out"
    settings = SuiteSettings(preset="smoke", seeds=1, rows=("fedavg-m0", "fedavg-m2"), output_dir=str(out),
                             overrides={"federation.clients_per_round": 4, "federation.num_clients": 4})
    with pytest.raises(SuiteError, match="row fedavg-m2: data.malicious_clients=2 at data.malicious_red_share=1 hold "
                                         "24 red samples; the client mixture has 14"):
        run_suite(threats(), settings)
    assert not out.exists()
