import pytest
from click.testing import CliRunner

from harness import registry
from harness.cli import main
from harness.engine import RoundEngine
from harness.hookspecs import hookimpl
from tests.helpers import smoke_config


class Recorder:
    """Implements every hook; records the order it is called in and what server hooks receive."""

    def __init__(self):
        self.calls = []

    @hookimpl
    def on_run_start(self, run):
        self.calls.append("on_run_start")

    @hookimpl
    def configure_fit(self, server_round, client_id, global_state):
        self.calls.append("configure_fit")

    @hookimpl
    def local_grad_correction(self, client_id, server_round, params, global_state, fit_ins):
        self.calls.append("local_grad_correction")

    @hookimpl
    def client_fit_end(self, client_id, server_round, local_state, global_state, fit_ins, train_info):
        self.calls.append("client_fit_end")

    @hookimpl
    def post_aggregate(self, server_round, model):
        self.calls.append("post_aggregate")

    @hookimpl
    def evaluate(self, server_round, model, limit):
        self.calls.append("evaluate")

    @hookimpl
    def on_round_end(self, server_round, metrics, artifacts):
        self.calls.append("on_round_end")

    @hookimpl
    def on_run_end(self, run, summary):
        self.calls.append(f"on_run_end:{summary.status}")


class SpyFilter:
    def __init__(self):
        self.calls = []

    @hookimpl
    def pre_local_train(self, client_id, samples, server_round):
        self.calls.append("pre_local_train")
        return None


def compress(calls):
    out = []
    for c in calls:
        if not out or out[-1] != c:
            out.append(c)
    return out


def test_hook_order_in_a_run(tmp_path):
    cfg = smoke_config(tmp_path, **{"federation.rounds": 2, "federation.clients_per_round": 1,
                                    "plugins.eval_every": 1, "plugins.evals": ["heldout-nll"]})
    rec, spy = Recorder(), SpyFilter()
    pm = registry.build_manager([("agg", "fedavg", {}), ("eval", "heldout-nll", {})], extra=[rec])
    # the filter spy records into the same list so the order is global
    spy.calls = rec.calls
    pm.register(spy)
    RoundEngine(cfg, pm, progress=False).run()
    one_round = ["pre_local_train", "configure_fit", "local_grad_correction", "client_fit_end",
                 "post_aggregate", "evaluate", "on_round_end"]
    assert compress(rec.calls) == ["on_run_start"] + one_round * 2 + ["on_run_end:FINISHED"]
    assert rec.calls.count("local_grad_correction") == 2 * cfg.federation.local_steps


def test_only_selected_plugins_are_registered():
    pm = registry.build_manager([("filter", "none", {}), ("agg", "fedavg", {}), ("align", "none", {})])
    assert sorted(pm.get_name(p) for p in pm.get_plugins()) == ["agg:fedavg", "align:none", "filter:none"]
    assert len(pm.hook.aggregate.get_hookimpls()) == 1


def test_unknown_plugin_lists_installed_names():
    with pytest.raises(registry.UnknownPluginError, match="installed agg plugins: .*fedavg"):
        registry.instantiate("agg", "no-such-agg")


def test_unknown_plugin_option_is_named():
    with pytest.raises(registry.PluginError, match="no option.*bogus"):
        registry.instantiate("agg", "fedavg", {"bogus": 1})


@pytest.mark.parametrize("flag", ["--filter", "--agg", "--align", "--eval"])
def test_cli_unknown_plugin_exits_2_with_names(flag, workdir):
    result = CliRunner().invoke(main, ["run", "--preset", "smoke", flag, "definitely-not-installed"])
    assert result.exit_code == 2
    assert "definitely-not-installed" in result.output and "installed" in result.output


def test_plugins_command_lists_builtins_with_package_and_version():
    result = CliRunner().invoke(main, ["plugins", "--json"])
    assert result.exit_code == 0
    import json

    rows = json.loads(result.output)
    fedavg = next(r for r in rows if r["kind"] == "agg" and r["name"] == "fedavg")
    assert fedavg["package"] == "fedllm-harness" and fedavg["version"]
    assert {"filter", "agg", "align", "eval"} <= {r["kind"] for r in rows}
    table = CliRunner().invoke(main, ["plugins"]).output
    assert "fedavg" in table and "fedllm-harness" in table
