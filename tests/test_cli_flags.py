"""One flag per concept across subcommands (issue #18 item 5): run takes --eval-opt, --max-length and
--data SOURCE=PATH as eval and filter do; --limit (alias --eval-limit), --eval a,b and --data SOURCE[=PATH] read
the same wherever they exist; the leaderboard's MLflow search is --where."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from harness.cli import main
from harness.cli.common import split_names
from harness.cli.run import resolve_run_config
from harness.data.spec import DataSpec
from harness.suite import _settings


def test_run_takes_eval_options_max_length_and_source_with_path():
    cfg = resolve_run_config("smoke", None, (), ("hhh",), {"data": "square=../d/square.json", "max_length": 64}, {},
                             ("hhh.sets=[bigbench]",))
    assert (cfg.data.source, cfg.data.path, cfg.model.max_length) == ("square", "../d/square.json", 64)
    assert cfg.plugins.eval_options == {"hhh": {"sets": ["bigbench"]}}


def test_run_refuses_an_eval_option_for_an_eval_it_does_not_run(tmp_path):
    result = CliRunner().invoke(main, ["run", "--preset", "smoke", "--eval", "hhh", "--eval-opt", "advbench.rule=x",
                                       "--output-dir", str(tmp_path)])
    assert result.exit_code == 2 and "EVAL one of hhh" in result.output and not any(tmp_path.iterdir())


def test_run_refuses_a_path_given_twice(tmp_path):
    result = CliRunner().invoke(main, ["run", "--preset", "smoke", "--data", "square=a.json", "--data-path", "b.json",
                                       "--output-dir", str(tmp_path)])
    assert result.exit_code == 2 and "not both" in result.output


def test_leaderboard_search_is_where_and_eval_data_dir_is_eval_data():
    assert "--where" in CliRunner().invoke(main, ["leaderboard", "--help"]).output
    assert "--eval-data" in CliRunner().invoke(main, ["eval", "--help"]).output


def parsed(*argv: str) -> dict:
    """The parameters ``harness ARGV`` parses to (the command is not run)."""
    names = [a for a in argv if not a.startswith("-")][:2]
    command = main.get_command(None, names[0])
    args = list(argv[1:])
    if hasattr(command, "commands"):  # a group: the subcommand's parameters
        command, args = command.get_command(None, names[1]), list(argv[2:])
    return command.make_context(names[0], args).params


@pytest.mark.parametrize("command", [["run"], ["eval", "--model", "tiny-random", "--eval", "hhh"]])
@pytest.mark.parametrize("flag", ["--limit", "--eval-limit"])
def test_limit_and_its_alias_eval_limit_mean_the_same_in_run_and_eval(command, flag):
    assert parsed(*command, flag, "3")["eval_limit"] == 3


def test_run_limit_sets_the_eval_limit():
    cfg = resolve_run_config("smoke", None, (), (), {"eval_limit": 3}, {})
    assert cfg.plugins.eval_limit == 3


@pytest.mark.parametrize("command", [["run"], ["eval", "--model", "tiny-random"], ["suite", "paper-table1"]])
def test_eval_is_repeatable_and_comma_separated_everywhere(command):
    assert split_names(parsed(*command, "--eval", "hhh,advbench", "--eval", "mtbench")["evals"]) == [
        "hhh", "advbench", "mtbench"]


def test_suite_settings_split_comma_separated_evals():
    settings = _settings("smoke", 1, (), ("hhh,advbench", "mtbench"), (), "out", None, None, None, False)
    assert settings.evals == ("hhh", "advbench", "mtbench")


@pytest.mark.parametrize("command", [["run"], ["filter", "train", "--out", "o"], ["filter", "eval"],
                                     ["data", "split", "--out", "o"]])
def test_data_takes_source_or_source_path_everywhere(command):
    def specs(value: str) -> list[DataSpec]:
        params = parsed(*command, "--data", value)
        given = params["data"] if "data" in params else params["source"]
        return [DataSpec.parse(text) for text in (given if isinstance(given, tuple) else [given])]

    assert specs("square=../d/square") == [DataSpec("square", "../d/square")] and specs("demo") == [DataSpec("demo")]


def test_filter_data_is_repeatable_to_mix_sources():
    assert parsed("filter", "eval", "--data", "square=a", "--data", "demo")["data"] == ("square=a", "demo")


@pytest.mark.parametrize("command", [["run", "--preset", "smoke"], ["filter", "eval"], ["data", "split", "--out", "o"]])
def test_a_malformed_data_spec_is_the_same_usage_error_everywhere(command, tmp_path):
    result = CliRunner().invoke(main, [*command, "--data", "square="])
    assert result.exit_code == 2 and "is not SOURCE or SOURCE=PATH" in result.output


@pytest.mark.parametrize("flag", ["--data-dir", "--data"])
def test_safety_tune_names_its_data_folder_data_dir(flag):
    assert parsed("safety-tune", "--out", "o", flag, "../d")["data_dir"] == "../d"
