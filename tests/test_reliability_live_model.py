"""Issue #35, item 2: an eval plugin that writes into the live model it is lent fails the run naming the plugin,
before the round is checkpointed; the earlier checkpoints stay intact and ``--resume`` finishes the run."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from click.testing import CliRunner
from mlflow.tracking import MlflowClient

from harness.adapters import ReadOnlyStateError
from harness.checkpoint import CheckpointStore
from harness.cli import main
from harness.default_plugins.evals.heldout_nll import HeldOutNLL
from harness.hookspecs import hookimpl
from harness.tracking import default_tracking_uri
from tests.helpers import smoke_config, untracked_engine

RUN = "live-model"
FLAGS = ["--preset", "smoke", "--rounds", "3", "--local-optimizer", "sgd", "--run-name", RUN, "--no-progress"]
HELDOUT_EVALUATE = HeldOutNLL.evaluate  # smoke runs heldout-nll every round


@hookimpl
def evaluate_writing_nan_in_round_2(self, server_round, model, limit):
    """heldout-nll's ``evaluate``, after filling every weight of the model it is given with NaN in round 2."""
    if server_round == 2:
        with torch.no_grad():
            for p in model.model.parameters():
                p.fill_(float("nan"))
    return HELDOUT_EVALUATE(self, server_round, model, limit)


@pytest.mark.slow
def test_an_eval_writing_nan_into_the_live_model_fails_the_run_naming_it_and_loses_nothing(tmp_path, monkeypatch):
    out = tmp_path / "out"
    monkeypatch.setattr(HeldOutNLL, "evaluate", evaluate_writing_nan_in_round_2)
    failed = CliRunner().invoke(main, ["run", *FLAGS, "--output-dir", str(out)], catch_exceptions=False)
    monkeypatch.undo()

    assert failed.exit_code == 1, failed.output
    assert ("plugin eval:heldout-nll (fedllm-harness " in failed.output and "raised in hook evaluate: "
            "ReadOnlyStateError: changed the weights of the model it was given" in failed.output)
    assert "--resume" in failed.output and "Traceback" not in failed.output
    client = MlflowClient(default_tracking_uri(out))
    (run,) = client.search_runs([client.get_experiment_by_name("fedllm-harness").experiment_id])
    assert run.info.status == "FAILED"
    assert [m.step for m in client.get_metric_history(run.info.run_id, "time/round_seconds")] == [1]
    store = CheckpointStore(out / "runs" / RUN)
    newest = store.load(store.complete()[0])
    assert newest.next_round == 2  # round 1's checkpoint, intact; round 2 was never checkpointed
    assert all(torch.isfinite(t).all() for d in store.complete() for t in store.load(d).global_state.values())
    assert not (out / "runs" / RUN / "final_adapter").exists()

    resumed = CliRunner().invoke(main, ["run", "--resume", RUN, "--output-dir", str(out), "--no-progress"],
                                 catch_exceptions=False)
    assert resumed.exit_code == 0, resumed.output
    assert client.get_run(run.info.run_id).info.status == "FINISHED"
    assert [m.step for m in client.get_metric_history(run.info.run_id, "time/round_seconds")] == [1, 2, 3]


class WritesOneBaseWeight:
    """An eval that scales one base weight through ``.data`` (no autograd, no version bump of the parameter)."""

    @hookimpl
    def evaluate(self, server_round, model, limit):
        base = next(p for n, p in model.model.named_parameters() if not p.requires_grad)
        base.data.mul_(2.0)


class WritesTheAdapterThroughNumpy:
    """An eval that writes one LoRA value through a numpy view, bypassing torch entirely."""

    @hookimpl
    def evaluate(self, server_round, model, limit):
        next(iter(model.params.values())).detach().numpy().reshape(-1)[0] += 1.0


@pytest.mark.parametrize("plugin, tensor", [(WritesOneBaseWeight(), "embed_tokens"),
                                            (WritesTheAdapterThroughNumpy(), "lora_")],
                         ids=["base-data", "adapter-numpy"])
def test_any_write_into_the_model_an_eval_is_given_is_caught_and_named(tmp_path, plugin, tensor):
    cfg = smoke_config(tmp_path, **{"federation.rounds": 1, "federation.local_steps": 1})
    with pytest.raises(ReadOnlyStateError, match=f"changed the weights .*{tensor}.* in hook evaluate") as caught:
        untracked_engine(cfg, plugin).run()
    assert type(plugin).__name__ in str(caught.value.plugin_fault)
    assert not (Path(cfg.output_dir) / "runs" / "test-run" / "final_adapter").exists()
