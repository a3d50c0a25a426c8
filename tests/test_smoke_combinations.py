"""Every built-in combination (filter x fedavg/scaffold x aligner) runs end to end on the smoke preset through
the CLI, and each method leaves its trace: a filter drops red samples, SCAFFOLD logs its correction, CAI trains
on kept pairs."""

import itertools

import pytest
from click.testing import CliRunner
from mlflow.tracking import MlflowClient

from harness.cli import main
from harness.tracking import default_tracking_uri

FILTERS = ("none", "lg3", "embed-lr")
AGGREGATORS = ("fedavg", "scaffold")
ALIGNERS = ("none", "cai50", "cai", "cai-epoch")
MAIN_COMMAND = ("lg3", "scaffold", "cai50")


def total(client: MlflowClient, run_id: str, key: str) -> float:
    return sum(m.value for m in client.get_metric_history(run_id, key))


@pytest.mark.slow
@pytest.mark.parametrize(("filter_", "agg", "align"), list(itertools.product(FILTERS, AGGREGATORS, ALIGNERS)))
def test_smoke_combination_runs_and_each_method_acts(tmp_path, filter_, agg, align):
    out = tmp_path / "out"
    args = ["run", "--preset", "smoke", "--filter", filter_, "--agg", agg, "--align", align,
            "--output-dir", str(out), "--no-progress", "--run-name", "combo"]
    if align == "cai":
        args += ["--align-opt", "iterations=4"]
    result = CliRunner().invoke(main, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    client = MlflowClient(default_tracking_uri(out))
    (run,) = client.search_runs([client.get_experiment_by_name("fedllm-harness").experiment_id])
    assert run.info.status == "FINISHED"
    rid = run.info.run_id
    assert total(client, rid, "clients/trained") > 0
    if filter_ == "none":
        assert total(client, rid, "filter/dropped") == 0
    else:  # the default guard/head of every filter drops something, and catches red samples
        assert total(client, rid, "filter/dropped") > 0
        assert max(m.value for m in client.get_metric_history(rid, "filter/recall")) > 0
    if agg == "scaffold":
        ratios = [m.value for m in sorted(client.get_metric_history(rid, "agg/correction_to_update"), key=lambda m: m.step)]
        assert ratios[0] == 0 and ratios[-1] > 0  # c = c_i = 0 in round 1, a correction from round 2
    if align != "none":
        assert min(m.value for m in client.get_metric_history(rid, "align/pairs_kept")) > 0
        assert total(client, rid, "align/dpo_steps") > 0
    if (filter_, agg, align) == MAIN_COMMAND:  # `make run`'s methods, as its summary shows them (issue #39)
        shown = {line.split("  ")[0]: " ".join(line.split()) for line in result.output.splitlines()}
        dropped = int(total(client, rid, "filter/dropped"))
        assert f"dropped {dropped} of " in shown["filter lg3"] and "over the run" in shown["filter lg3"]
        assert "correction_to_update" in shown["aggregator scaffold"]
        assert "pairs_kept" in shown["aligner cai50"] and "dpo_steps" in shown["aligner cai50"]
