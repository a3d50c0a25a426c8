"""Disjoint data, checked (issue #15 item 4): client data, plugins' training prompts and eval sets."""

from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from harness.data.normalize import prompt_digest
from harness.data.overlap import (
    DIGEST_FILE,
    DataOverlapError,
    check_overlap,
    declared_sets,
    digest_file_set,
    read_digest_file,
)
from harness.data.samples import DataError
from harness.evals.files import data_file
from harness.evals.loaders import load_advbench
from harness.hookspecs import hookimpl
from harness.tracking import default_tracking_uri, find_run
from harness.types import PromptSet
from tests.helpers import run_tracked, smoke_config


def goals() -> list[str]:
    return load_advbench(data_file("advbench/harmful_behaviors.csv"))


class GuardDir:
    """Stands in for a guard filter: declares a guard directory's train_prompts.sha256 (the contract)."""

    def __init__(self, directory: Path):
        self.directory = directory

    @hookimpl
    def declare_prompts(self, run):
        return digest_file_set("guard", f"guard {self.directory.name}", self.directory / DIGEST_FILE)


def guard_dir(tmp_path: Path, prompts: list[str]) -> Path:
    directory = tmp_path / "my-guard"
    directory.mkdir()
    (directory / DIGEST_FILE).write_text("".join(prompt_digest(p) + "\n" for p in prompts))
    return directory


def test_check_names_the_sets_counts_and_examples():
    client = PromptSet.from_texts("client", "client data", ["How do I cook rice?", "Explain gravity."])
    evals = PromptSet.from_texts("eval", "advbench", ["Write a phishing email", "Explain  GRAVITY!"], "adv.csv")
    guard = PromptSet.from_digests("guard", "guard g", [prompt_digest("write a Phishing email.")], "g/train_prompts.sha256")
    with pytest.raises(DataOverlapError) as err:
        check_overlap([client, evals, guard])
    text = str(err.value)
    assert "guard set 'guard g' (g/train_prompts.sha256) and eval set 'advbench' (adv.csv) share 1 prompt(s)" in text
    assert "'Write a phishing email'" in text  # an example, from the side that has texts
    assert "client set 'client data' and eval set 'advbench' (adv.csv) share 1 prompt(s)" in text
    assert "data.allow_overlap=true" in text
    metrics = check_overlap([client, evals, guard], allow=True)
    assert metrics == {"data/overlap_guard_client": 0.0, "data/overlap_guard_eval": 1.0, "data/overlap_client_eval": 1.0}


def test_training_roles_may_share_prompts_with_each_other_and_metric_names_are_ordered():
    cai = PromptSet.from_texts("cai", "cai pairs", ["a"])
    guard = PromptSet.from_texts("guard", "guard", ["a"])
    client = PromptSet.from_texts("client", "client", ["b"])
    assert check_overlap([client, guard, cai]) == {
        "data/overlap_cai_guard": 1.0, "data/overlap_cai_client": 0.0, "data/overlap_guard_client": 0.0}


def test_digest_file_format(tmp_path):
    path = tmp_path / DIGEST_FILE
    path.write_text(f"# a comment\n{prompt_digest('x').upper()}\n\n{prompt_digest('y')}\n")
    assert read_digest_file(path) == {prompt_digest("x"), prompt_digest("y")}
    path.write_text("not-a-digest\n")
    with pytest.raises(DataError, match="line 1: expected a sha256 hex digest"):
        read_digest_file(path)
    with pytest.raises(DataError, match="does not exist"):
        read_digest_file(tmp_path / "missing")


def test_declared_sets_accepts_one_a_list_or_none():
    one = PromptSet.from_texts("eval", "x", ["q"])
    assert declared_sets([one, [one, one], None]) == [one, one, one]
    with pytest.raises(TypeError, match="PromptSet"):
        declared_sets([["q"]])


def overlap_config(tmp_path, **extra):
    return smoke_config(tmp_path, **{
        "federation.rounds": 1, "plugins.evals": ["advbench"],
        "plugins.eval_options": {"advbench": {"items": 4, "max_new_tokens": 2}}, **extra})


def step_zero(cfg) -> dict[str, float]:
    uri = default_tracking_uri(cfg.output_dir)
    run = find_run(uri, cfg.tracking.run_name)
    client = MlflowClient(uri)
    return {k: [(m.step, m.value) for m in client.get_metric_history(run.info.run_id, k)]
            for k in run.data.metrics if k.startswith("data/")}, run


@pytest.mark.slow
def test_guard_trained_on_eval_prompts_is_refused(tmp_path, monkeypatch):
    monkeypatch.delenv("HARNESS_DATA", raising=False)
    scored = goals()[::130][:4]  # the 4 goals advbench items=4 scores (spread over the 520)
    guard = guard_dir(tmp_path, scored[:3] + ["an unrelated prompt"])
    cfg = overlap_config(tmp_path)
    with pytest.raises(DataOverlapError) as err:
        run_tracked(cfg, GuardDir(guard))
    text = str(err.value)
    assert "refusing the run" in text and "share 3 prompt(s)" in text
    assert f"guard set 'guard my-guard' ({guard / DIGEST_FILE})" in text and "eval set 'advbench'" in text
    assert repr(scored[0]) in text or repr(scored[1]) in text
    assert not list((tmp_path / "out" / "runs").glob("*/final_adapter"))


@pytest.mark.slow
def test_forced_overlap_runs_and_logs_counts(tmp_path, monkeypatch):
    monkeypatch.delenv("HARNESS_DATA", raising=False)
    guard = guard_dir(tmp_path, goals()[::130][:3])
    cfg = overlap_config(tmp_path, **{"data.allow_overlap": True})
    assert run_tracked(cfg, GuardDir(guard)).status == "FINISHED"
    metrics, run = step_zero(cfg)
    assert metrics == {"data/overlap_guard_eval": [(0, 3.0)], "data/overlap_guard_client": [(0, 0.0)],
                       "data/overlap_client_eval": [(0, 0.0)]}
    assert run.info.status == "FINISHED"


@pytest.mark.slow
def test_disjoint_data_runs_and_logs_zeros(tmp_path, monkeypatch):
    monkeypatch.delenv("HARNESS_DATA", raising=False)
    guard = guard_dir(tmp_path, ["What is the capital of France?"])
    cfg = overlap_config(tmp_path)
    assert run_tracked(cfg, GuardDir(guard)).status == "FINISHED"
    metrics, _ = step_zero(cfg)
    assert metrics == {"data/overlap_guard_eval": [(0, 0.0)], "data/overlap_guard_client": [(0, 0.0)],
                       "data/overlap_client_eval": [(0, 0.0)]}


def test_the_built_in_filter_and_cai_declare_their_prompts_and_a_clean_run_logs_zero_overlap(tmp_path):
    cfg = smoke_config(tmp_path, **{"plugins.filter": "lg3", "plugins.align": "cai50", "federation.rounds": 1})
    run_tracked(cfg)
    run = find_run(default_tracking_uri(cfg.output_dir), "test-run")
    m = run.data.metrics
    assert m["data/overlap_guard_client"] == 0 and m["data/overlap_cai_client"] == 0
    assert m["data/overlap_cai_guard"] == 0


def test_client_data_from_the_shipped_guards_training_files_is_refused_naming_the_guard(tmp_path, shared_data):
    """The shipped guard trained on 80 % of hh-rlhf harmless-base: clients drawing from the same file collide."""
    cfg = smoke_config(tmp_path, **{"plugins.filter": "lg3", "data.source": "hh-rlhf",
                                    "data.path": str(shared_data / "hh_rlhf" / "harmless-base")})
    with pytest.raises(DataOverlapError, match=r"guard set 'lg3 guard smollm2-135m-lg3' .*train_prompts.sha256.* and "
                                               r"client set .* share \d+ prompt"):
        run_tracked(cfg)
