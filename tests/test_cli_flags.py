"""One flag per concept across subcommands (issue #18 item 5): run takes --eval-opt, --max-length and
--data SOURCE=PATH as eval and filter do; the leaderboard's MLflow search is --where."""

from __future__ import annotations

from click.testing import CliRunner

from harness.cli import main
from harness.cli.run import resolve_run_config


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
