"""Issue #19 item 4: failures that can never be resumed are caught before anything is trained or checkpointed
(config ranges, non-UTF-8 text, hook results that are not numbers), and ``--resume`` takes the eval settings
that do not change what was trained."""

from __future__ import annotations


import numpy as np
import pytest
from click.testing import CliRunner
from mlflow.tracking import MlflowClient

from harness.checkpoint import CheckpointStore
from harness.cli import main
from harness.cli.run import resume_overrides
from harness.config import ConfigError, load_config
from harness.data.samples import DataError, to_sample
from harness.engine import HookResultError, RoundEngine
from harness.hookspecs import hookimpl
from harness.tracking import default_tracking_uri
from harness.types import AggregateResult, AlignResult, EvalResult
from harness.default_plugins.aggregators.fedavg import FedAvg
from harness.default_plugins.evals.heldout_nll import HeldOutNLL
from tests.helpers import aggregate_failing_in_round_2, smoke_config, untracked_engine


def cli(*args: str):
    return CliRunner().invoke(main, ["run", *args], catch_exceptions=False)


# -- config values, up front ----------------------------------------------------------------------------------

@pytest.mark.parametrize("key, value, message", [
    ("federation.lr", float("inf"), "federation.lr must be a finite number, got inf"),
    ("federation.lr", float("nan"), "federation.lr must be a finite number, got nan"),
    ("federation.lr", 0.0, r"federation.lr must be in \(0, 10\], got 0.0"),
    ("federation.lr_min", 0.5, r"federation.lr_min must be in \[0, lr\]"),
    ("federation.lr_min", -1e-6, r"federation.lr_min must be in \[0, 10\], got -1e-06"),
    ("federation.clip_update_norm", float("inf"), "federation.clip_update_norm must be a finite number"),
    ("federation.clip_update_norm", 0.0, r"federation.clip_update_norm must be in \(0, 1000000\] \(or null"),
    ("federation.rounds", 0, "federation.rounds must be in 1..1,000,000, got 0"),
    ("federation.local_steps", 0, "federation.local_steps must be in 1..1,000,000, got 0"),
    ("federation.batch_size", -1, "federation.batch_size must be in 1..65,536, got -1"),
    ("federation.clients_per_round", 5, r"federation.clients_per_round must be in 1..num_clients \(4\), got 5"),
    ("federation.seed", -1, "federation.seed must be in 0..4,294,967,295, got -1"),
    ("data.harmful_ratio", 1.5, r"data.harmful_ratio must be in \[0, 1\], got 1.5"),
    ("data.dirichlet_alpha", 0.0, r"data.dirichlet_alpha must be in \(0, 1000000\], got 0.0"),
    ("data.dirichlet_alpha", float("inf"), "data.dirichlet_alpha must be a finite number"),
    ("data.heldout_samples", -1, "data.heldout_samples must be in 0..10,000,000, got -1"),
    ("model.lora_alpha", 0, "model.lora_alpha must be in 1..65,536, got 0"),
    ("model.lora_r", 0, "model.lora_r must be in 1..4,096, got 0"),
    ("model.lora_dropout", 1.0, r"model.lora_dropout must be in \[0, 1\)"),
    ("model.max_length", 4, "model.max_length must be in 8..1,048,576, got 4"),
    ("model.target_modules", [], "model.target_modules must name at least one module"),
    ("plugins.eval_limit", -5, r"plugins.eval_limit must be in 1..10,000,000 \(or null for the full eval sets\), got -5"),
    ("plugins.eval_limit", 0, "plugins.eval_limit must be in 1..10,000,000"),
    ("plugins.eval_every", -1, r"plugins.eval_every must be in 0..1,000,000 \(0: only after the last round\), got -1"),
])
def test_every_config_value_is_checked_up_front_naming_the_key(key, value, message):
    with pytest.raises(ConfigError, match=message):
        load_config("smoke", overrides={key: value})


def test_good_edge_values_pass():
    cfg = load_config("smoke", overrides={"plugins.eval_limit": None, "federation.lr_min": 0.0, "data.harmful_ratio": 1.0,
                                          "plugins.eval_every": 0, "federation.clip_update_norm": None})
    assert cfg.plugins.eval_limit is None and cfg.federation.lr_min == 0.0


@pytest.mark.parametrize("args, message", [
    (["--lr", "inf"], "federation.lr must be a finite number, got inf"),
    (["--set", "federation.lr=.inf"], "federation.lr must be a finite number, got inf"),
    (["--eval-limit", "-5"], "plugins.eval_limit must be in 1..10,000,000"),
])
def test_the_cli_exits_2_before_creating_anything(tmp_path, args, message):
    result = cli("--preset", "smoke", *args, "--output-dir", str(tmp_path / "out"))
    assert result.exit_code == 2 and message in result.output and "Traceback" not in result.output
    assert not (tmp_path / "out").exists()


# -- text fields ----------------------------------------------------------------------------------------------

def test_a_lone_surrogate_is_a_data_error_naming_the_row():
    with pytest.raises(DataError, match=r"rows.jsonl row 3: field 'response' is not valid Unicode text: surrogates"):
        to_sample({"prompt": "hi", "response": "a\ud800b"}, "rows.jsonl", 3)


def test_a_jsonl_row_with_an_escaped_lone_surrogate_exits_2_creating_nothing(tmp_path):
    rows = tmp_path / "rows.jsonl"
    rows.write_text('{"prompt": "hello", "response": "fine", "is_harmful": false}\n'
                    '{"prompt": "bad \\ud800 text", "response": "x", "is_harmful": true}\n')
    result = cli("--preset", "smoke", "--data", str(rows), "--output-dir", str(tmp_path / "out"))
    assert result.exit_code == 2, result.output
    assert "row 2: field 'prompt' is not valid Unicode text" in result.output
    assert not (tmp_path / "out").exists()


# -- hook results, before the checkpoint ----------------------------------------------------------------------

class EvalReturning:
    """An extra eval answering every ``evaluate`` call with ``metrics``/``artifacts``."""

    def __init__(self, metrics, artifacts=None):
        self.metrics, self.artifacts = metrics, artifacts or {}

    @hookimpl
    def evaluate(self, server_round, model, limit):
        return EvalResult(dict(self.metrics), dict(self.artifacts))


class AggregatorMetrics:
    def __init__(self, metrics):
        self.metrics = metrics

    @hookimpl(tryfirst=True)
    def aggregate(self, server_round, global_state, updates, num_clients_total):
        return AggregateResult({n: t.clone() for n, t in global_state.items()}, dict(self.metrics))


class AlignerMetrics:
    @hookimpl(tryfirst=True)
    def post_aggregate(self, server_round, model):
        return AlignResult(None, {"shift": "large"})


def engine_with(tmp_path, *extra, **overrides) -> RoundEngine:
    cfg = smoke_config(tmp_path, **{"federation.rounds": 2, "federation.local_steps": 1, "plugins.eval_limit": 2,
                                    **overrides})
    return untracked_engine(cfg, *extra)


def pending_values(engine: RoundEngine) -> list:
    store = engine.checkpoints
    return [v for d in store.complete() for log in [store.load(d).pending_log or {}]
            for v in [*log.get("metrics", {}).values(), *log.get("artifacts", {}).values()]]


@pytest.mark.parametrize("plugin, hook, message", [
    (EvalReturning({"eval/x": "0.5"}), "evaluate", "metric 'eval/x' = '0.5' of type str; metrics must be numbers"),
    (EvalReturning({"eval/x": float("inf")}), "evaluate", "metric 'eval/x' = inf; metrics must be finite"),
    (EvalReturning({"eval/x": [1.0]}), "evaluate", "of type list"),
    (EvalReturning({"eval/x": 1.0}, {"out.txt": b"bytes"}), "evaluate", "artifact 'out.txt' of type bytes"),
    (AggregatorMetrics({"weight": "heavy"}), "aggregate", "metric 'weight' = 'heavy' of type str"),
    (AlignerMetrics(), "post_aggregate", "metric 'shift' = 'large' of type str"),
], ids=["eval-str", "eval-inf", "eval-list", "artifact-bytes", "agg-str", "align-str"])
def test_a_bad_hook_result_fails_the_round_naming_the_plugin_and_is_never_checkpointed(tmp_path, plugin, hook, message):
    engine = engine_with(tmp_path, plugin)
    with pytest.raises(HookResultError, match=message) as caught:
        engine.run()
    assert caught.value.plugin_fault.hook == hook
    assert type(plugin).__name__ in caught.value.plugin_fault.plugin
    assert "fix the plugin and --resume" in str(caught.value)
    assert engine.checkpoints.load_latest().next_round == 1  # round 0's checkpoint only; round 1 never saved
    assert all(isinstance(v, (bool, int, float, str)) and not isinstance(v, bytes) for v in pending_values(engine))
    assert not any(v in ("0.5", "heavy", "large") for v in pending_values(engine))


def test_a_bad_pretrained_eval_metric_fails_before_the_round_0_checkpoint(tmp_path):
    engine = engine_with(tmp_path, EvalReturning({"eval/x": "n/a"}), **{"plugins.eval_pretrained": True})
    with pytest.raises(HookResultError, match="metric 'eval/x'"):
        engine.run()
    assert not engine.checkpoints.complete()
    assert not (engine.run_dir / "pretrained_metrics.json").exists()


def test_numpy_and_nan_metrics_are_accepted_as_floats(tmp_path):
    engine = engine_with(tmp_path, EvalReturning({"eval/np": np.float32(0.25), "eval/nan": float("nan"),
                                                  "eval/flag": True, "eval/n": np.int64(3)}),
                         **{"federation.rounds": 1})
    summary = engine.run()
    assert summary.status == "FINISHED"
    assert summary.final_metrics["eval/np"] == 0.25 and type(summary.final_metrics["eval/np"]) is float
    assert summary.final_metrics["eval/n"] == 3.0 and np.isnan(summary.final_metrics["eval/nan"])


# -- --resume overrides ---------------------------------------------------------------------------------------

def overrides(sets=(), evals=(), **flags):
    base = {k: None for k in ("rounds", "lr", "eval_every", "eval_limit", "filter_name", "tracking_uri", "output_dir")}
    return resume_overrides(None, None, tuple(sets), tuple(evals), (), (), (), {**base, **flags})


def test_resume_takes_eval_settings():
    got = overrides(sets=["plugins.eval_options.heldout-nll.batch_size=2", "plugins.eval_pretrained=true"],
                    evals=["heldout-nll"], eval_every=1, eval_limit=3, output_dir="x")
    assert got == {"plugins.eval_every": 1, "plugins.eval_limit": 3, "plugins.evals": ["heldout-nll"],
                   "plugins.eval_options.heldout-nll.batch_size": 2, "plugins.eval_pretrained": True}


def test_resume_refuses_training_settings_with_the_reason(tmp_path):
    result = cli("--resume", "r", "--lr", "0.1", "--eval-limit", "2", "--set", "federation.rounds=9",
                 "--set", "plugins.eval_every=1", "--output-dir", str(tmp_path))
    assert result.exit_code == 2
    assert "drop --lr, --set federation.rounds: these settings decide what the checkpointed rounds trained" in result.output
    assert "--eval-limit" not in result.output.split("drop ")[1].split(":")[0]


@pytest.mark.slow
def test_a_run_failed_in_round_2_resumes_with_another_eval_limit(tmp_path, monkeypatch):
    out = tmp_path / "out"
    monkeypatch.setattr(FedAvg, "aggregate", aggregate_failing_in_round_2)
    flags = ["--preset", "smoke", "--local-steps", "1", "--run-name", "rv", "--no-progress", "--output-dir", str(out)]
    failed = cli(*flags)
    assert failed.exit_code == 1 and "raised in hook aggregate: RuntimeError: injected" in failed.output
    assert "continue it with: harness run --resume" in failed.output
    monkeypatch.undo()
    limits = []
    evaluate = HeldOutNLL.evaluate

    @hookimpl
    def recording(self, server_round, model, limit):
        limits.append((server_round, limit))
        return evaluate(self, server_round, model, limit)

    monkeypatch.setattr(HeldOutNLL, "evaluate", recording)
    resumed = cli("--resume", "rv", "--eval-limit", "3", "--output-dir", str(out), "--no-progress")
    assert resumed.exit_code == 0, resumed.output
    assert limits == [(2, 3)]  # round 2 (of 2) evaluated with the override
    client = MlflowClient(default_tracking_uri(out))
    (run,) = client.search_runs([client.get_experiment_by_name("fedllm-harness").experiment_id])
    assert run.info.status == "FINISHED"
    saved = (out / "runs" / "rv" / "config.yaml").read_text()
    assert "eval_limit: 16" in saved  # the saved config is the run's own; the override was for this session
    assert CheckpointStore(out / "runs" / "rv").load_latest().next_round == 3
