"""`harness eval`: a pretrained model or a saved adapter scored through the CLI, checked in MLflow."""

import json
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner
from mlflow.tracking import MlflowClient

from harness.cli import main
from harness.config import ModelConfig
from harness.evals.files import DATA_ENV
from harness.evals.loaders import choice_prompt
from harness.model_handle import GlobalModel
from harness.models import attach_lora, load_base
from harness.tracking import default_tracking_uri
from harness.default_plugins.evals.hhh import HHH


@pytest.fixture(autouse=True)
def restore_data_env(monkeypatch):
    monkeypatch.setenv(DATA_ENV, "/nonexistent")  # `--data` sets it; monkeypatch puts it back


def harness_eval(out: Path, *args: str, code: int = 0):
    result = CliRunner().invoke(main, ["eval", "--model", "tiny-random", "--output-dir", str(out), *args])
    assert result.exit_code == code, result.output
    return result


def logged(out: Path, run_name: str):
    client = MlflowClient(default_tracking_uri(out))
    exp = client.get_experiment_by_name("fedllm-harness")
    (run,) = client.search_runs([exp.experiment_id], f"attributes.run_name = '{run_name}'")
    return client, run


def artifact(client, run, path: str, tmp_path: Path) -> str:
    return Path(client.download_artifacts(run.info.run_id, path, str(tmp_path))).read_text()


def first_item_logps(tmp_path, client, run) -> tuple[float, float]:
    row = json.loads(artifact(client, run, "round_000/hhh_scores.jsonl", tmp_path).splitlines()[0])
    return row["orders"][0]["logp_A"], row["orders"][0]["logp_B"]


def test_pretrained_and_adapter_runs_are_logged_and_score_the_right_weights(tmp_path, shared_data):
    cfg = ModelConfig(name="tiny-random", lora_r=4, lora_alpha=8, lora_dropout=0.0, max_length=256)
    base, tok = load_base(cfg)
    model = GlobalModel(attach_lora(base, cfg, seed=0), tok, cfg.max_length)
    with torch.no_grad():
        for name, p in model.params.items():
            p.add_(torch.randn_like(p) * 0.5)
    model.model.save_pretrained(str(tmp_path / "adapter"))
    item = HHH(data=str(shared_data)).load("bigbench")[0]
    prompt = choice_prompt(item.context, *item.options)
    with_adapter = model.completion_logprobs([prompt, prompt], [" (A)", " (B)"])
    with model.base_only():
        pretrained = model.completion_logprobs([prompt, prompt], [" (A)", " (B)"])
    assert with_adapter != pytest.approx(pretrained)

    out = tmp_path / "out"
    common = ["--eval", "hhh", "--eval-opt", "hhh.sets=[bigbench]", "--eval-limit", "1", "--eval-data", str(shared_data)]
    shown = harness_eval(out, *common, "--eval", "advbench", "--eval-opt", "advbench.max_new_tokens=3",
                         "--run-name", "row1")
    assert "hhh/bigbench/accuracy" in shown.output and "advbench/harmless_rate" in shown.output
    harness_eval(out, *common, "--adapter", str(tmp_path / "adapter"), "--run-name", "tuned")

    client, run = logged(out, "row1")
    assert run.info.status == "FINISHED"
    assert run.data.params["eval.adapter"] == "none (pretrained base)"
    assert [m.step for m in client.get_metric_history(run.info.run_id, "advbench/harmless_rate")] == [0]
    responses = artifact(client, run, "round_000/advbench_responses.jsonl", tmp_path).splitlines()
    assert len(responses) == 1 and set(json.loads(responses[0])) >= {"goal", "response", "refusal_strict"}
    assert first_item_logps(tmp_path, client, run) == pytest.approx(tuple(pretrained), abs=1e-4)

    client, run = logged(out, "tuned")
    assert run.data.params["eval.adapter"] == str(tmp_path / "adapter")
    assert first_item_logps(tmp_path, client, run) == pytest.approx(tuple(with_adapter), abs=1e-4)
    assert json.loads((out / "runs" / "tuned" / "eval_metrics.json").read_text())["hhh/bigbench/items"] == 1


@pytest.mark.parametrize("args, message", [
    (["--eval", "advbnch"], "unknown eval plugin 'advbnch' (did you mean 'advbench'?); installed eval plugins: advbench"),
    (["--eval", "hhh", "--judge-url", "http://x/v1"], "--judge-* options only apply to --eval mtbench"),
    (["--eval", "hhh", "--eval-opt", "advbench.rule=strict"], "EVAL one of hhh"),
    (["--eval", "hhh", "--adapter", "."], "is not a saved LoRA adapter (no adapter_config.json"),
    (["--eval", "advbench", "--eval-opt", "advbench.rule=loose"], "unknown refusal rule 'loose'"),
])
def test_bad_input_is_named(tmp_path, args, message):
    result = harness_eval(tmp_path / "out", *args, code=2)
    assert message in result.output


def test_missing_data_fails_the_run_with_the_path(tmp_path):
    out = tmp_path / "out"
    result = harness_eval(out, "--eval", "advbench", "--eval-data", str(tmp_path), "--run-name", "nodata", code=1)
    assert f"{tmp_path}/advbench/harmful_behaviors.csv does not exist" in result.output
    _, run = logged(out, "nodata")
    assert run.info.status == "FAILED"


def test_evals_run_inside_a_federated_run(tmp_path, shared_data, monkeypatch):
    monkeypatch.setenv(DATA_ENV, str(shared_data))
    out = tmp_path / "out"
    args = ["run", "--preset", "smoke", "--rounds", "1", "--eval", "hhh", "--eval-limit", "1", "--output-dir", str(out),
            "--run-name", "fed", "--no-progress", "--set", "plugins.eval_options.hhh.sets=[cai438]"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    client, run = logged(out, "fed")
    assert [m.step for m in client.get_metric_history(run.info.run_id, "hhh/cai438/accuracy")] == [1]
    assert len(artifact(client, run, "round_001/hhh_scores.jsonl", tmp_path).splitlines()) == 1
