"""`harness filter train` -> `harness filter eval` on ../shared/data, for lg3 (tiny-random) and embed-lr.

The tiny-random round trip checks the machinery: the guard trains (its loss falls), is saved,
loads through --filter-model with its adapter (its scores differ from the base's) and is scored
beside its base in one table and in MLflow. Whether fine-tuning beats the base is checked on
smollm2-135m: a CI-sized fine-tune, and the guard shipped in plugins/filters/guards (trained on a GPU).
"""

import json
import re
from pathlib import Path

import pytest
from click.testing import CliRunner
from mlflow.tracking import MlflowClient

from harness.cli import main
from harness.guard.labelled import DataSpec, labelled_set
from harness.tracking import default_tracking_uri
from harness.default_plugins.filters.lg3 import LlamaGuardFilter


SHIPPED_GUARD = Path(__file__).resolve().parents[1] / "plugins" / "filters" / "guards" / "smollm2-135m-lg3"


def invoke(*args: str) -> str:
    result = CliRunner().invoke(main, list(args), catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.output


def table_row(output: str, name: str) -> list[float]:
    """[accuracy, precision, recall, hmean, roc_auc, n] of filter ``name`` in the printed table (AUC n/a: nan)."""
    found = re.search(re.escape(name) + r"\s+([\d.]+)\s+([\d.]+)\s+([\d.]+)\s+([\d.]+)\s+([\d.]+|n/a)\s+(\d+)\s*$",
                      output, re.M)
    assert found, f"no table row for {name} in:\n{output}"
    return [float("nan") if x == "n/a" else float(x) for x in found.groups()]


@pytest.mark.slow
def test_lg3_train_then_eval_against_its_base_on_held_out_square(shared_data, tmp_path):
    data = f"square={shared_data / 'square'}"
    out, guard = tmp_path / "runs", tmp_path / "guard"
    invoke("filter", "train", "--base", "tiny-random", "--data", data, "--out", str(guard), "--max-per-class", "16",
           "--epochs", "1", "--batch-size", "4", "--lr", "1e-2", "--max-length", "1536", "--output-dir", str(out))
    card = json.loads((guard / "guard.json").read_text())
    assert card["base"] == "tiny-random" and card["metrics"]["train/steps"] == 8
    assert card["metrics"]["train/last_loss"] < card["metrics"]["train/first_loss"]
    assert (guard / "adapter_model.safetensors").is_file() and (guard / "train_prompts.sha256").is_file()
    assert card["held_out"]["n"] == 32  # --eval-per-class is capped at --max-per-class
    output = invoke("filter", "eval", "--filter-model", "tiny-random", "--filter-model", str(guard), "--data", data,
                    "--max-per-class", "12", "--filter-opt", "max_length=1536", "--output-dir", str(out))
    names = ["lg3:tiny-random", f"lg3:{guard}"]
    base, tuned = (table_row(output, name) for name in names)
    assert base[5] == tuned[5] == 24
    held_out = labelled_set([DataSpec.parse(data)], "test", max_per_class=2)
    scores = {name: LlamaGuardFilter(model=name, max_length=1536).scorer.score(held_out)
              for name in ("tiny-random", str(guard))}
    assert scores["tiny-random"] != pytest.approx(scores[str(guard)], abs=1e-4)
    client = MlflowClient(default_tracking_uri(out))
    runs = client.search_runs([client.get_experiment_by_name("filter-eval").experiment_id])
    assert sorted(r.info.run_name for r in runs) == sorted(names)
    hmeans = sorted(r.data.metrics["hmean"] for r in runs)
    assert hmeans == pytest.approx(sorted([base[3] / 100, tuned[3] / 100]), abs=1e-3)


@pytest.mark.slow
def test_embed_lr_round_trip_detects_unsafe_square_responses(shared_data, tmp_path):
    data = f"square={shared_data / 'square'}"
    out, head = tmp_path / "runs", tmp_path / "head"
    invoke("filter", "train", "--filter", "embed-lr", "--data", data, "--out", str(head), "--batch-size", "32",
           "--output-dir", str(out))
    output = invoke("filter", "eval", "--filter", "embed-lr", "--filter-model", str(head), "--data", data,
                    "--output-dir", str(out))
    accuracy, precision, recall, hmean, auc, n = table_row(output, f"embed-lr:{head}")
    assert n == 100  # 50 safe + 50 unsafe held-out SQuARe responses
    card = json.loads((head / "embed_lr.json").read_text())
    assert card["held_out"]["n"] == n and card["held_out"]["recall"] == pytest.approx(recall / 100, abs=1e-3)
    assert len((head / "train_prompts.sha256").read_text().splitlines()) == 195  # 330 train responses to 195 questions
    assert accuracy > 50 and hmean > 50  # above the chance level of a balanced set (53.0 / 55.2 when written)
    assert auc > 50 and "95 % intervals" in output  # the head's scores rank unsafe replies above safe ones


@pytest.mark.slow
def test_smollm2_guard_fine_tuned_beats_its_base_on_held_out_square(shared_data, tmp_path):
    """The base SmolLM2 never answers 'unsafe' (Hmean 0); 8 LoRA steps on the train split already make
    it flag held-out unsafe replies, and the shipped 5-epoch guard does too (its numbers: its README)."""
    data = f"square={shared_data / 'square'}"
    out, guard = tmp_path / "runs", tmp_path / "guard"
    invoke("filter", "train", "--base", "smollm2-135m", "--data", data, "--out", str(guard), "--max-per-class", "16",
           "--max-steps", "8", "--batch-size", "4", "--lr", "1e-3", "--max-length", "448", "--eval-per-class", "4",
           "--output-dir", str(out))
    models = ["smollm2-135m", str(guard), str(SHIPPED_GUARD)]
    output = invoke("filter", "eval", *[arg for m in models for arg in ("--filter-model", m)], "--data", data,
                    "--max-per-class", "10", "--filter-opt", "max_length=448", "--output-dir", str(out))
    base, tuned, shipped = (table_row(output, f"lg3:{m}") for m in models)
    assert base[5] == tuned[5] == shipped[5] == 20
    assert base[3] == 0.0  # the base guard flags nothing
    assert tuned[3] > base[3] and shipped[3] > base[3]
