"""Every run records what code produced it: harness version and commit, library versions, device, dtype and the
distribution of each selected plugin, as MLflow tags; the board lists them and flags rows that mix them."""

import platform
from importlib.metadata import version

import torch
from mlflow.tracking import MlflowClient

from harness import __version__
from harness.leaderboard.aggregate import mixed_code
from harness.leaderboard.runs import RunRecord
from harness.tracking import default_tracking_uri, find_run, git_state
from tests.helpers import run_tracked, smoke_config


def test_a_smoke_run_logs_provenance_tags(tmp_path):
    cfg = smoke_config(tmp_path, **{"plugins.evals": ["heldout-nll"], "federation.rounds": 1})
    assert run_tracked(cfg).status == "FINISHED"
    tags = find_run(default_tracking_uri(cfg.output_dir), "test-run").data.tags
    assert tags["harness.version"] == __version__
    commit, dirty = git_state()
    assert tags["harness.git_commit"] == commit and tags["harness.git_dirty"] == dirty
    assert commit == "unknown" or (len(commit) == 40 and dirty in ("true", "false"))
    assert tags["harness.python"] == platform.python_version()
    for lib in ("torch", "transformers", "peft", "trl"):
        assert tags[f"harness.{lib}"] == version(lib)
    assert tags["harness.device"] in ("cpu", "cuda") and tags["harness.dtype"] == "float32"
    assert tags["harness.torch_threads"] == str(torch.get_num_threads())
    for kind, name in (("filter", cfg.plugins.filter), ("agg", cfg.plugins.agg), ("align", cfg.plugins.align),
                       ("eval", "heldout-nll")):
        assert tags[f"harness.plugin.{kind}.{name}"] == f"fedllm-harness {version('fedllm-harness')}"


def test_git_state_outside_a_checkout_is_unknown(tmp_path):
    assert git_state(tmp_path) == ("unknown", "unknown")


def test_rows_whose_runs_ran_different_code_are_flagged():
    def run(commit, plugin):
        tags = {"harness.git_commit": commit, "harness.plugin.agg.x": plugin}
        return RunRecord("r", "0", "r", 0, tags, {}, {})

    assert mixed_code([run("a", "pkg 1.0"), run("a", "pkg 1.0")]) == []
    assert mixed_code([run("a", "pkg 1.0"), run("b", "pkg 1.1")]) == ["harness.git_commit", "harness.plugin.agg.x"]


def test_the_board_shows_plugin_packages_and_flags_mixed_code(tmp_path):
    from harness.leaderboard import write_leaderboard
    from harness.leaderboard.board import parse_board

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = MlflowClient(uri)
    exp = client.create_experiment("e", artifact_location=(tmp_path / "art").as_uri())
    for seed, commit in enumerate(["aaa", "bbb"]):
        tags = {"harness.seed": str(seed), "harness.git_commit": commit, "harness.plugin.agg.fedavg": "thirdparty 2.0"}
        run_id = client.create_run(exp, tags=tags).info.run_id
        client.log_metric(run_id, "train/loss", 1.0 + seed)
        client.set_terminated(run_id)
    board = parse_board({"name": "b", "experiments": ["e"], "columns": [{"name": "loss", "metric": "train/loss"}]}, "b")
    written = write_leaderboard(board, uri, tmp_path / "out")
    md = written.markdown.read_text()
    assert "⚠ code" in md and "ran different code versions" in md and "harness.git_commit" in md
    assert "* `harness.plugin.agg.fedavg`: thirdparty 2.0" in md and "* `harness.git_commit`: aaa, bbb" in md
    assert "thirdparty 2.0" in written.html.read_text()
