"""What a guard does, not only that it runs: `filter train` writes what runs rely on, and the default lg3
guard of a run drops real red samples that a base model would keep."""

import json

import pytest
from click.testing import CliRunner
from mlflow.tracking import MlflowClient

from harness.cli import main
from harness.data.normalize import prompt_digest
from harness.guard.card import MIN_RECALL, TRAIN_PROMPTS, assess_guard
from harness.guard.defaults import SMOLLM2_GUARD
from harness.guard.labelled import DataSpec, labelled_set
from harness.tracking import default_tracking_uri


def invoke(*args: str) -> str:
    result = CliRunner().invoke(main, list(args), catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.output


def test_filter_train_writes_train_prompt_digests_and_held_out_recall(shared_data, tmp_path):
    data = f"square={shared_data / 'square'}"
    guard = tmp_path / "guard"
    output = invoke("filter", "train", "--base", "tiny-random", "--data", data, "--out", str(guard),
                    "--max-per-class", "4", "--max-steps", "1", "--batch-size", "4", "--max-length", "1536",
                    "--eval-per-class", "3", "--output-dir", str(tmp_path / "runs"))
    train = labelled_set([DataSpec.parse(data)], "train", max_per_class=4)
    digests = (guard / TRAIN_PROMPTS).read_text().splitlines()
    assert digests == sorted({prompt_digest(s.prompt) for s in train}) and len(digests) == 8
    assert f"8 distinct training prompts hashed to {guard / TRAIN_PROMPTS}" in output
    held_out = json.loads((guard / "guard.json").read_text())["held_out"]
    assert held_out["n"] == 6 and held_out["split"] == "test" and 0.0 <= held_out["recall"] <= 1.0
    assert assess_guard(str(guard)).recall == held_out["recall"]  # what a run's refusal rule reads
    assert f"recall {held_out['recall']:.3f}" in output


def write_red_set(shared_data, path, per_class: int = 20):
    """``per_class`` unsafe and as many safe samples from the held-out split of SQuARe + hh-rlhf (never
    trained on by the shipped guard), as a labelled .jsonl a run can load."""
    specs = [DataSpec("square", str(shared_data / "square")), DataSpec("hh-rlhf", str(shared_data / "hh_rlhf"))]
    samples = labelled_set(specs, "test", 0.2, per_class, seed=0)
    path.write_text("".join(json.dumps({"prompt": s.prompt, "response": s.response, "is_harmful": s.is_harmful}) + "\n"
                            for s in samples))
    return samples


@pytest.mark.slow
def test_the_default_lg3_guard_drops_red_samples_of_a_smoke_run(shared_data, tmp_path):
    """Smoke-sized run (tiny-random, so the shipped SmolLM2 guard is the default) on 40 held-out samples, half red.

    All 40 rows go to clients (no validation split), at the guard's fixed threshold 0.5.
    Measured when written (shared 2-core CPU, 67 CPU-s): 40 scored, 24 dropped, precision 0.58, recall 0.70.
    A filter that drops nothing has recall 0; one that drops everything has precision 0.5 (the red share):
    the guard finds most red replies but its precision is only a little above that."""
    data = tmp_path / "red40.jsonl"
    samples = write_red_set(shared_data, data)
    out = tmp_path / "out"
    invoke("run", "--preset", "smoke", "--filter", "lg3", "--data", str(data), "--num-samples", "40",
           "--harmful-ratio", "0.5", "--num-clients", "2", "--clients-per-round", "2", "--rounds", "1",
           "--local-steps", "1", "--set", "plugins.evals=[]", "--set", "data.heldout_samples=0",
           "--filter-opt", "threshold=0.5", "--output-dir", str(out), "--no-progress")
    client = MlflowClient(default_tracking_uri(out))
    (run,) = client.search_runs([client.get_experiment_by_name("fedllm-harness").experiment_id])
    m = run.data.metrics
    assert m["filter/kept"] + m["filter/dropped"] == len(samples) == 40  # both clients sampled: every sample scored
    assert 0 < m["filter/dropped"] < 40
    assert m["filter/recall"] >= 0.5 and m["filter/precision"] > 0.5
    record = json.loads(next((out / "runs").glob("*/filter-lg3/guard.json")).read_text())
    assert record["model"] == str(SMOLLM2_GUARD) and record["default"] and record["held_out_recall"] > MIN_RECALL
