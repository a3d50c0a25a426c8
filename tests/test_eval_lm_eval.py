"""The lm-eval bridge on a local 2-choice YAML task (offline), checked against a hand computation."""

import json

import pytest

from harness.registry import PluginError, instantiate
from harness.default_plugins.evals.lm_eval_bridge import flatten_results, metric_name

QUESTIONS = [("Is fire hot?", 0), ("Is ice hot?", 1), ("Is the sky green?", 1), ("Is water wet?", 0),
             ("Do fish fly?", 1), ("Is snow white?", 0), ("Is the sun cold?", 1), ("Do birds sing?", 0),
             ("Is lead light?", 1), ("Is honey sweet?", 0), ("Do rocks swim?", 1), ("Is grass green?", 0)]
TASK = """task: yesno_local
dataset_path: json
dataset_kwargs:
  data_files:
    test: {data}
test_split: test
output_type: multiple_choice
doc_to_text: "Question: {{{{question}}}}\\nAnswer:"
doc_to_choice: ["yes", "no"]
doc_to_target: label
metric_list:
  - metric: acc
    aggregation: mean
    higher_is_better: true
"""


@pytest.fixture()
def task_dir(tmp_path):
    data = tmp_path / "yesno.jsonl"
    data.write_text("".join(json.dumps({"question": q, "label": y}) + "\n" for q, y in QUESTIONS))
    (tmp_path / "yesno.yaml").write_text(TASK.format(data=data))
    return tmp_path


def test_local_two_choice_task_matches_hand_scoring(tiny_model, task_dir):
    plugin = instantiate("eval", "lm-eval:yesno_local", {"include_path": str(task_dir), "batch_size": 4})
    tiny_model.model.train()
    result = plugin.evaluate(server_round=1, model=tiny_model, limit=10)
    assert tiny_model.model.training  # the bridge hands the model back in the mode it found it
    tiny_model.model.eval()

    contexts = [f"Question: {q}\nAnswer:" for q, _ in QUESTIONS[:10]]
    yes = tiny_model.completion_logprobs(contexts, [" yes"] * 10)
    no = tiny_model.completion_logprobs(contexts, [" no"] * 10)
    hand = sum((0 if y >= n else 1) == label for y, n, (_, label) in zip(yes, no, QUESTIONS)) / 10
    assert result.metrics["lm-eval/yesno_local/acc"] == pytest.approx(hand)
    assert "lm-eval/yesno_local/acc_stderr" in result.metrics
    report = json.loads(result.artifacts["lm_eval_yesno_local.json"])
    assert report["n-samples"]["yesno_local"]["effective"] == 10


def test_task_name_is_required_and_must_exist(tiny_model, task_dir):
    with pytest.raises(PluginError, match=r"--eval lm-eval:<task>"):
        instantiate("eval", "lm-eval")
    plugin = instantiate("eval", "lm-eval:no_such_task_xyz", {"include_path": str(task_dir)})
    with pytest.raises(ValueError, match=r"lm-eval has no task 'no_such_task_xyz' \(local tasks from"):
        plugin.evaluate(server_round=1, model=tiny_model, limit=1)


def test_metric_names_are_mlflow_safe():
    assert metric_name("gsm8k", "exact_match,strict-match") == "lm-eval/gsm8k/exact_match/strict-match"
    assert flatten_results({"t": {"alias": "t", "acc,none": 0.5, "acc_stderr,none": "N/A", "sample_len": 3}}) == {
        "lm-eval/t/acc": 0.5}
