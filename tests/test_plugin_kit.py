"""The plugin author's kit (issue #36 item 6): metric prefixes kept once, headline metrics in the summary and on the
default board, ``--eval +NAME``, the warning for evals outside the overlap check, ``harness.InputError`` exits 2.

Third-party plugins come from a distribution written into a temporary folder on ``sys.path`` (a module and a
``.dist-info`` with its entry points), so the harness finds them by entry point as it would an installed package."""

from __future__ import annotations

import logging
import sys
import textwrap
from types import SimpleNamespace

import pytest
from click.testing import CliRunner
from mlflow.tracking import MlflowClient

from harness import registry
from harness.cli import main
from harness.cli.run import resolve_run_config
from harness.cli.summary import print_summary
from harness.config import load_config
from harness.engine import prefixed
from harness.leaderboard import load_board, write_leaderboard
from harness.tracking import HEADLINE_TAG, default_tracking_uri, headline_tag
from harness.types import Headline

TOY = '''
from pathlib import Path

from harness import InputError
from harness.hookspecs import hookimpl
from harness.types import AggregateResult, AlignResult, EvalResult, Headline


class ToyAgg:
    @hookimpl
    def aggregate(self, server_round, global_state, updates, num_clients_total):
        return AggregateResult(dict(global_state), {"agg/krum_selected": 1.0, "plain": 2.0})


class ToyAlign:
    @hookimpl
    def post_aggregate(self, server_round, model):
        return AlignResult(None, {"align/kept": 1.0, "steps": 0.0})


class ToyEval:  # no declare_prompts: outside the overlap check
    headline = (Headline("toy/score", "toy score", items="toy/items"),
                Headline("toy/seconds", "toy time", "lower", format=".1f", board=False))

    @hookimpl
    def evaluate(self, server_round, model, limit):
        return EvalResult({"toy/score": 0.75, "toy/items": 4.0, "toy/seconds": 1.25})


class BadHeadline(ToyEval):
    headline = ("toy/score",)


class NeedsData:
    def __init__(self, data: str = "missing.jsonl"):
        if not Path(data).is_file():
            raise InputError(f"{data} does not exist")


class Crashes:
    def __init__(self):
        raise FileNotFoundError("missing.jsonl")


class FailsInHook:
    @hookimpl
    def on_run_start(self, run):
        raise InputError("toy data is malformed")

    @hookimpl
    def evaluate(self, server_round, model, limit):
        return None
'''

ENTRY_POINTS = {
    "fedllm_harness.aggregators": {"toy-agg": "ToyAgg"},
    "fedllm_harness.alignment": {"toy-align": "ToyAlign"},
    "fedllm_harness.evals": {"toy-eval": "ToyEval", "bad-headline": "BadHeadline", "needs-data": "NeedsData",
                             "crashes": "Crashes", "fails-in-hook": "FailsInHook"},
}


@pytest.fixture()
def toy_plugins(tmp_path, monkeypatch):
    """The distribution ``toy-kit`` 1.0 (module ``toy_kit``) on ``sys.path`` for this test only."""
    site = tmp_path / "site"
    info = site / "toy_kit-1.0.dist-info"
    info.mkdir(parents=True)
    (site / "toy_kit.py").write_text(TOY)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: toy-kit\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text("".join(
        f"[{group}]\n" + "".join(f"{name} = toy_kit:{cls}\n" for name, cls in eps.items())
        for group, eps in ENTRY_POINTS.items()))
    monkeypatch.syspath_prepend(str(site))
    yield
    sys.modules.pop("toy_kit", None)


def test_a_prefix_the_plugin_wrote_is_kept_once():
    assert prefixed("agg/", {"agg/krum_selected": 1.0, "c_norm": 2.0, "aggregate": 3.0}) == {
        "agg/krum_selected": 1.0, "agg/c_norm": 2.0, "agg/aggregate": 3.0}


def test_plus_name_adds_to_the_presets_evals():
    def evals(*values, eval_opt=()):
        return resolve_run_config("smoke", None, (), values, {}, {}, eval_opt).plugins.evals

    assert load_config("smoke").plugins.evals == ["heldout-nll"]
    assert evals("+advbench") == ["heldout-nll", "advbench"]
    assert evals("+advbench,+heldout-nll", "+advbench") == ["heldout-nll", "advbench"]
    assert evals("hhh", "+advbench") == ["hhh", "advbench"]  # plain names still replace the preset's
    assert evals("advbench") == ["advbench"]
    cfg = resolve_run_config("smoke", None, (), ("+advbench",), {}, {}, ("advbench.items=4",))
    assert cfg.plugins.eval_options["advbench"] == {"items": 4}
    result = CliRunner().invoke(main, ["run", "--preset", "smoke", "--eval", "+"])
    assert result.exit_code == 2 and "a plugin name must follow the +" in result.output


def test_builtin_evals_declare_the_summarys_lines_without_widening_the_default_board():
    declared = registry.headlines(["advbench", "over-refusal", "hhh", "mtbench", "heldout-nll"])
    assert [h.metric for h in declared] == [
        "advbench/harmless_rate_openfedllm", "over_refusal/refusal_rate_openfedllm", "hhh/bigbench/accuracy",
        "hhh/cai438/accuracy", "mtbench/score", "heldout/nll", "heldout/nll_harmful"]
    board = load_board("default")
    assert board.headlines and board.with_headlines([headline_tag([h for h in registry.installed_names("eval")
                                                                   if h != "lm-eval"])]) == board


def test_headline_declarations_are_checked():
    with pytest.raises(ValueError, match="better must be"):
        Headline("x/y", "x", better="up")
    with pytest.raises(ValueError):
        Headline("x/y", "x", format="%d")


def test_default_board_adds_a_column_per_declared_headline():
    board = load_board("default")
    tag = '[{"metric":"toy/score","label":"Toy","better":"higher","items":null,"format":".2f","board":true},' \
          '{"metric":"toy/seconds","label":"Toy s","better":"lower","items":null,"format":".1f","board":false},' \
          '{"metric":"heldout/nll","label":"nll","better":"lower","items":null,"format":".3f","board":true}]'
    grown = board.with_headlines([tag, tag, None, "not json"])
    (added,) = grown.columns[len(board.columns):]
    assert (added.name, added.metrics, added.better, added.format) == ("Toy", ("toy/score",), "higher", ".2f")
    clash = '[{"metric":"toy/x","label":"AdvBench","better":"","items":null,"format":".3f","board":true}]'
    assert board.with_headlines([clash]).columns[-1].name == "AdvBench (toy/x)"
    assert board.with_headlines([clash]).columns[-1].better is None


def test_third_party_headline_is_in_the_summary(toy_plugins, capsys):
    cfg = load_config("smoke", overrides={"plugins.evals": ["heldout-nll", "toy-eval"]})
    final = {"heldout/nll": 2.0, "toy/score": 0.75, "toy/items": 4.0, "toy/seconds": 1.25}
    summary = SimpleNamespace(status="FINISHED", rounds_completed=1, wall_seconds=1.0, adapter_path=None,
                              final_metrics=final, pretrained_metrics={"toy/score": 0.5, "toy/items": 4.0})
    print_summary(cfg, summary, None, "sqlite:///never-opened.db")
    lines = [" ".join(line.split()) for line in capsys.readouterr().out.splitlines()]
    assert "toy score (n=4) 0.500 [0.150, 0.850] -> 0.750 [0.301, 0.954]" in lines
    assert "toy time (lower is better) - -> 1.2" in lines
    assert "held-out nll, acceptable replies (lower is better) - -> 2.000" in lines


def test_a_third_party_plugin_in_a_run(toy_plugins, tmp_path, caplog):
    """Prefixes kept once, ``--eval +NAME``, the overlap warning, the summary and the board, in one smoke run."""
    out = tmp_path / "out"
    args = ["run", "--preset", "smoke", "--rounds", "1", "--no-progress", "--output-dir", str(out), "--run-name", "r",
            "--agg", "toy-agg", "--align", "toy-align", "--eval", "+toy-eval"]
    with caplog.at_level(logging.WARNING, logger="harness.engine"):
        result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    warned = [r.getMessage() for r in caplog.records if "declare_prompts" in r.getMessage()]
    assert len(warned) == 1 and warned[0].startswith("eval plugin(s) toy-eval do not implement declare_prompts")
    assert any(line.startswith("toy score (n=4)") for line in result.output.splitlines())
    uri = default_tracking_uri(out)
    client = MlflowClient(uri)
    (run,) = client.search_runs([client.get_experiment_by_name("fedllm-harness").experiment_id])
    metrics = set(run.data.metrics)
    assert {"agg/krum_selected", "agg/plain", "align/kept", "align/steps", "toy/score", "heldout/nll"} <= metrics
    assert not any(m.startswith(("agg/agg/", "align/align/")) for m in metrics)
    assert '"metric":"toy/score"' in run.data.tags[HEADLINE_TAG]
    board = write_leaderboard(load_board("default"), uri, tmp_path / "board")
    assert "toy score" in board.markdown.read_text() and "toy time" not in board.markdown.read_text()


def test_input_error_exits_2_with_its_message(toy_plugins, workdir):
    result = CliRunner().invoke(main, ["run", "--preset", "smoke", "--eval", "needs-data"])
    assert result.exit_code == 2, result.output
    assert "Error: eval plugin 'needs-data': missing.jsonl does not exist" in result.output
    result = CliRunner().invoke(main, ["run", "--preset", "smoke", "--eval", "crashes"])
    assert result.exit_code == 1 and "failed to start: FileNotFoundError" in result.output  # not bad input
    result = CliRunner().invoke(main, ["run", "--preset", "smoke", "--eval", "bad-headline"])
    assert result.exit_code == 2 and "headline must be a tuple of harness.types.Headline" in result.output


def test_input_error_in_a_hook_exits_2_naming_the_plugin(toy_plugins, workdir):
    result = CliRunner().invoke(main, ["run", "--preset", "smoke", "--no-progress", "--eval", "fails-in-hook"])
    assert result.exit_code == 2, result.output
    assert "eval:fails-in-hook (toy-kit 1.0) raised in hook on_run_start" in result.output
    assert "toy data is malformed" in result.output and "Traceback" not in result.output
