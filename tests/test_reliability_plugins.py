"""Issue #19 items 2 and 8 (plugins): an ambiguous plugin name, and plugins that fail to import, to start, or
to register, each give a clear error naming the plugin and its distribution (fake entry points, no install)."""

from __future__ import annotations

import json
from importlib.metadata import EntryPoint

import pytest
from click.testing import CliRunner
from mlflow.tracking import MlflowClient

from harness import registry
from harness.cli import main
from harness.hookspecs import hookimpl
from harness.tracking import default_tracking_uri
from harness.types import AggregateResult

GROUP = registry.KINDS["agg"]
HERE = __name__


class ThirdPartyFedAvg:
    """A third-party 'fedavg' that keeps the global adapter and leaves a marker metric."""

    @hookimpl
    def aggregate(self, server_round, global_state, updates, num_clients_total):
        return AggregateResult(state=dict(global_state), metrics={"thirdparty_marker": 7.0})


class FailsToStart:
    def __init__(self):
        raise RuntimeError("cannot reach the parameter server")


class WrongSignature:
    @hookimpl
    def aggregate(self, server_round, not_a_hook_argument):
        return None


class FakeDist:
    def __init__(self, name: str, version: str):
        self.metadata, self.version = {"Name": name}, version


def fake(name: str, target: str, dist: str = "my-pkg", version: str = "2.0") -> EntryPoint:
    return EntryPoint(name, f"{HERE}:{target}", GROUP)._for(FakeDist(dist, version))


@pytest.fixture()
def extra_aggs(monkeypatch):
    """Install fake third-party aggregator entry points next to the real ones: ``extra_aggs(ep, ...)``."""
    real = registry.entry_points

    def install(*eps: EntryPoint) -> None:
        def entry_points(group: str):
            return list(real(group=group)) + (list(eps) if group == GROUP else [])

        monkeypatch.setattr(registry, "entry_points", entry_points)

    return install


def run_cli(out, *extra: str):
    args = ["run", "--preset", "smoke", "--rounds", "1", "--set", "plugins.evals=[]", "--output-dir", str(out),
            "--no-progress", *extra]
    return CliRunner().invoke(main, args)


def only_run(out):
    client = MlflowClient(default_tracking_uri(out))
    (run,) = client.search_runs([client.get_experiment_by_name("fedllm-harness").experiment_id])
    return run


def test_an_ambiguous_name_is_an_error_naming_both_distributions(tmp_path, extra_aggs):
    extra_aggs(fake("fedavg", "ThirdPartyFedAvg"))
    with pytest.raises(registry.AmbiguousPluginError, match=r"registered by fedllm-harness, my-pkg.*"
                                                            r"fedllm-harness:fedavg or my-pkg:fedavg"):
        registry.check_selectable("agg", "fedavg")
    result = run_cli(tmp_path / "out", "--agg", "fedavg")
    assert result.exit_code == 2, result.output
    assert "'fedavg' is ambiguous: it is registered by fedllm-harness, my-pkg" in result.output
    assert not (tmp_path / "out").exists()  # refused before anything is created


@pytest.mark.parametrize("chosen, dist, marker", [("my-pkg:fedavg", "my-pkg 2.0", True),
                                                  ("fedllm-harness:fedavg", "fedllm-harness", False)])
def test_dist_colon_name_selects_one_and_the_run_records_its_distribution(tmp_path, extra_aggs, chosen, dist, marker):
    extra_aggs(fake("fedavg", "ThirdPartyFedAvg"))
    result = run_cli(tmp_path / "out", "--agg", chosen)
    assert result.exit_code == 0, result.output
    run = only_run(tmp_path / "out")
    assert run.data.tags["harness.agg"] == chosen
    assert run.data.tags[f"harness.plugin.agg.{chosen}"].startswith(dist)
    assert ("agg/thirdparty_marker" in run.data.metrics) is marker


def test_plugins_command_marks_ambiguous_names(extra_aggs):
    extra_aggs(fake("fedavg", "ThirdPartyFedAvg"), fake("keep", "ThirdPartyFedAvg"))
    text = CliRunner().invoke(main, ["plugins"]).output
    fedavg_rows = [line for line in text.splitlines() if line.split()[:2] == ["agg", "fedavg"]]
    assert len(fedavg_rows) == 2
    assert all("ambiguous: select as" in line for line in fedavg_rows)
    assert "my-pkg:fedavg" in fedavg_rows[1] + fedavg_rows[0]
    assert "ambiguous" not in next(line for line in text.splitlines() if line.split()[:2] == ["agg", "keep"])
    rows = json.loads(CliRunner().invoke(main, ["plugins", "--json"]).output)
    assert {(r["name"], r["package"], r["ambiguous"]) for r in rows if r["name"] in ("fedavg", "keep")} == {
        ("fedavg", "fedllm-harness", True), ("fedavg", "my-pkg", True), ("keep", "my-pkg", False)}


def test_selection_parsing_keeps_the_eval_argument():
    assert registry.parse_selection("eval", "lm-eval:hellaswag") == (None, "lm-eval", "hellaswag")
    assert registry.parse_selection("eval", "fedllm-harness:lm-eval:hellaswag") == ("fedllm-harness", "lm-eval",
                                                                                     "hellaswag")
    assert registry.parse_selection("agg", "fedllm_harness:fedavg") == ("fedllm_harness", "fedavg", None)
    with pytest.raises(registry.UnknownPluginError, match="unknown agg plugin 'nobody:fedavg'"):
        registry.check_selectable("agg", "nobody:fedavg")


@pytest.mark.parametrize("target, code, message", [
    ("NoSuchClass", 2, f"agg plugin 'broken' (my-pkg 2.0, {HERE}:NoSuchClass) could not be imported: AttributeError"),
    ("FailsToStart", 1, f"agg plugin 'broken' (my-pkg 2.0, {HERE}:FailsToStart) failed to start: RuntimeError: "
                        "cannot reach the parameter server"),
    ("WrongSignature", 2, f"agg plugin 'broken' (my-pkg 2.0, {HERE}:WrongSignature) has an invalid hook "
                          "implementation"),
])
def test_a_broken_plugin_is_a_clear_error_naming_it_and_its_distribution(tmp_path, extra_aggs, target, code, message):
    extra_aggs(fake("broken", target))
    result = run_cli(tmp_path / "out", "--agg", "broken")
    assert result.exit_code == code, result.output
    assert message in result.output
    assert "Traceback" not in result.output and isinstance(result.exception, SystemExit)


def test_a_plugin_module_that_fails_to_import_is_named(tmp_path, monkeypatch):
    ep = EntryPoint("broken", "tests.no_such_plugin_module:X", GROUP)._for(FakeDist("my-pkg", "2.0"))
    real = registry.entry_points
    monkeypatch.setattr(registry, "entry_points", lambda group: list(real(group=group)) + ([ep] if group == GROUP else []))
    with pytest.raises(registry.PluginError, match=r"agg plugin 'broken' \(my-pkg 2.0, .*\) could not be imported: "
                                                   r"ModuleNotFoundError"):
        registry.instantiate("agg", "broken")


@pytest.mark.parametrize("args, message", [
    (["--agg", "norm-bound", "--agg-opt", "max_norm=0"], "agg plugin 'norm-bound': max_norm must be a finite number > 0"),
    (["--malicious-clients", "1", "--attack", "scale", "--attack-opt", "factor=0"],
     "attack plugin 'scale': factor must be a finite number other than 0"),
])
def test_a_bad_plugin_option_exits_2_before_the_tracking_store_exists(tmp_path, args, message):
    out = tmp_path / "out"
    result = CliRunner().invoke(main, ["run", "--preset", "smoke", *args, "--output-dir", str(out)])
    assert result.exit_code == 2 and message in result.output, result.output
    assert not out.exists()  # no mlflow.db, no run directory
