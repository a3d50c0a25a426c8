"""`harness eval`: score a model (pretrained, or with a saved LoRA adapter) on eval plugins, logged to MLflow.

    harness eval --model smollm2-135m --eval advbench --eval hhh --eval-limit 50
    harness eval --model meta-llama/Llama-3.1-8B-Instruct --adapter runs/x/final_adapter \\
        --eval mtbench --judge-url http://localhost:8000/v1 --judge-model Qwen/Qwen2.5-72B-Instruct

The result is one MLflow run whose metrics and artifacts sit at round 0 (``round_000/``).
Without ``--adapter`` the pretrained base is scored (the paper's table, row 1).
"""

from __future__ import annotations

import json
import os
import re
import time
from contextlib import nullcontext
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from harness import registry as plugin_registry
from harness.cli.common import (Choice, eval_option, eval_option_overrides, fail, limit_option, parse_options,
                                split_names)
from harness.config import PRESETS, ConfigError, RunConfig, load_config, run_dir
from harness.evals.files import DATA_ENV, EvalDataError
from harness.evals.judges import JudgeError
from harness.types import RunInfo, RunSummary

if TYPE_CHECKING:
    from harness.model_handle import GlobalModel

JUDGE_FLAGS = {"judge_url": "judge_url", "judge_model": "judge_model", "judge_key_env": "judge_api_key_env",
               "judge_hf_model": "judge_hf_model"}


def eval_config(model: str, evals, limit, max_length, preset, sets, eval_opts, judge, tracking) -> RunConfig:
    overrides: dict[str, Any] = parse_options(sets, "--set")
    overrides.update({"model.name": model, "plugins.evals": list(evals), "plugins.eval_limit": limit})
    if max_length is not None:
        overrides["model.max_length"] = max_length
    overrides.update({key: value for key, value in tracking.items() if value is not None})
    from harness.tracking import experiment_from_env

    if experiment := experiment_from_env(overrides):  # $MLFLOW_TRACKING_URI: see resolve_tracking_uri()
        overrides["tracking.experiment"] = experiment
    overrides.update(eval_option_overrides(eval_opts, list(evals)))
    chosen = {JUDGE_FLAGS[k]: v for k, v in judge.items() if v is not None}
    if chosen and "mtbench" not in evals:
        fail("--judge-* options only apply to --eval mtbench")
    overrides.update({f"plugins.eval_options.mtbench.{k}": v for k, v in chosen.items()})
    try:
        return load_config(preset, None, overrides)
    except ConfigError as exc:
        fail(str(exc))


def load_model(cfg: RunConfig, adapter: str | None) -> GlobalModel:
    """The base model with ``adapter`` loaded (trainable, like a run's global model) or a fresh, unused LoRA."""
    from peft import PeftModel

    from harness.model_handle import GlobalModel
    from harness.models import ModelLoadError, attach_lora, load_base

    try:
        base, tokenizer = load_base(cfg.model)
    except ModelLoadError as exc:
        fail(str(exc))
    if adapter is None:
        return GlobalModel(attach_lora(base, cfg.model, cfg.federation.seed), tokenizer, cfg.model.max_length)
    try:
        peft_model = PeftModel.from_pretrained(base, adapter, is_trainable=True)
    except (ValueError, RuntimeError, OSError, KeyError) as exc:
        fail(f"cannot load adapter {adapter} onto {cfg.model.name}: {exc}")
    return GlobalModel(peft_model, tokenizer, cfg.model.max_length)


def check_inputs(cfg: RunConfig, adapter: str | None) -> None:
    """The model name and the adapter dir, checked before the plugins or the model load (exit 2 at once)."""
    from harness.models import ModelLoadError, check_model_name

    try:
        check_model_name(cfg.model.name)
    except ModelLoadError as exc:
        fail(str(exc))
    if adapter is not None and not (Path(adapter) / "adapter_config.json").is_file():
        fail(f"--adapter {adapter} is not a saved LoRA adapter (no adapter_config.json in it)")


def build_plugins(cfg: RunConfig):
    """The MLflow tracker and a plugin manager with the selected evals (bad names or options exit 2)."""
    from harness.session import tracked_plugins
    from harness.tracking import resolve_tracking_uri

    try:
        for name in cfg.plugins.evals:
            plugin_registry.check_selectable("eval", name)
        return tracked_plugins(cfg, resolve_tracking_uri(cfg.tracking.uri, cfg.output_dir), kinds=("eval",))
    except plugin_registry.PluginError as exc:
        fail(str(exc))


def heldout_split(cfg: RunConfig) -> list:
    """The server-held split a run of ``cfg`` would draw (for ``heldout-nll``), so the pretrained row is scored on the
    same samples as the run with the same seed; empty when ``data.heldout_samples`` is 0."""
    if not cfg.data.heldout_samples:
        return []
    from harness.data.draw import draw_run_data
    from harness.data.samples import DataError

    try:
        return draw_run_data(cfg)[1]
    except DataError as exc:
        fail(str(exc))


def run_evals(cfg: RunConfig, pm, model: GlobalModel, adapter: str | None) -> dict[str, float]:
    """Call every selected eval once (round 0), logged as one MLflow run; returns the metrics."""
    from harness.evals.discrimination import derived_metrics
    from harness.redaction import redact_result

    slug = re.sub(r"[^A-Za-z0-9_.-]+", "-", cfg.model.name).strip("-")
    run_name = cfg.tracking.run_name or f"eval-{slug}-{datetime.now(timezone.utc):%Y%m%d-%H%M%S}"
    out = run_dir(cfg.output_dir, run_name)
    params = cfg.flat_params() | {"eval.adapter": adapter or "none (pretrained base)", "eval.standalone": True}
    info = RunInfo(run_name, out, cfg, params, heldout=heldout_split(cfg))
    started = time.perf_counter()
    metrics: dict[str, float] = {}
    try:
        pm.hook.on_run_start(run=info)  # the evals read (and check) their files here
        artifacts: dict[str, str] = {}
        with model.base_only() if adapter is None else nullcontext():
            for result in pm.hook.evaluate(server_round=0, model=model, limit=cfg.plugins.eval_limit):
                redact_result(result)  # a judge may echo its key
                metrics.update(result.metrics)
                artifacts.update(result.artifacts)
        metrics.update(derived_metrics(metrics))
        metrics["time/eval_seconds"] = time.perf_counter() - started
        pm.hook.on_round_end(server_round=0, metrics=metrics, artifacts=artifacts)
    except BaseException as exc:
        pm.hook.on_run_end(run=info, summary=RunSummary(
            "FAILED", 0, metrics, None, time.perf_counter() - started, error=f"{type(exc).__name__}: {exc}"))
        if isinstance(exc, (EvalDataError, JudgeError)):
            fail(str(exc), 1)
        raise
    pm.hook.on_run_end(run=info, summary=RunSummary("FINISHED", 0, metrics, None, time.perf_counter() - started))
    out.mkdir(parents=True, exist_ok=True)
    (out / "eval_metrics.json").write_text(json.dumps(metrics, indent=1, sort_keys=True))
    return metrics


@click.command("eval")
@click.option("--model", required=True, help="Hub id, local path, smollm2-135m or tiny-random.")
@click.option("--adapter", type=click.Path(file_okay=False), help="Saved LoRA adapter dir; default: the pretrained base.")
@eval_option(required=True)
@limit_option()
@click.option("--eval-opt", multiple=True, metavar="EVAL.KEY=VALUE", help="Eval plugin option, e.g. advbench.rule=strict.")
@click.option("--eval-data", type=click.Path(file_okay=False),
              help=f"Benchmark data dir laid out like shared/data (sets ${DATA_ENV}).")
@click.option("--judge-url", help="MT-Bench judge: OpenAI-compatible base URL, e.g. http://localhost:8000/v1.")
@click.option("--judge-model", help="MT-Bench judge: model name served at --judge-url.")
@click.option("--judge-key-env", help="MT-Bench judge: environment variable holding the API key (never logged).")
@click.option("--judge-hf-model", help="MT-Bench judge: a local HF model instead of an endpoint.")
@click.option("--max-length", type=int, help="Prompt token limit for generation (model.max_length).")
@click.option("--preset", type=Choice(PRESETS), default=None, help="Base settings (default: demo).")
@click.option("--set", "sets", multiple=True, metavar="KEY=VALUE", help="Override any config key.")
@click.option("--tracking-uri", help="MLflow tracking URI (default: $MLFLOW_TRACKING_URI, else sqlite store in the output dir).")
@click.option("--experiment", help="MLflow experiment name (default: $MLFLOW_EXPERIMENT_NAME, else fedllm-harness).")
@click.option("--run-name")
@click.option("--output-dir", type=click.Path(file_okay=False))
def command(model, adapter, evals, eval_limit, eval_opt, eval_data, max_length, preset, sets, tracking_uri, experiment,
            run_name, output_dir, **judge) -> None:
    """Evaluate a model (optionally with a LoRA adapter) on eval plugins and log it as an MLflow run."""
    evals = tuple(split_names(evals))
    tracking = {"tracking.uri": tracking_uri, "tracking.experiment": experiment, "tracking.run_name": run_name,
                "output_dir": output_dir}
    cfg = eval_config(model, evals, eval_limit, max_length, preset, sets, eval_opt, judge, tracking)
    if eval_data is not None:
        if not Path(eval_data).is_dir():
            fail(f"--eval-data {eval_data} is not a directory")
        os.environ[DATA_ENV] = str(Path(eval_data).resolve())
    check_inputs(cfg, adapter)
    tracker, pm = build_plugins(cfg)
    metrics = run_evals(cfg, pm, load_model(cfg, adapter), adapter)
    width = max(len(k) for k in metrics)
    click.echo(f"mlflow run  {tracker.run_id}")
    for key, value in sorted(metrics.items()):
        click.echo(f"{key:<{width}}  {value:.4g}")
