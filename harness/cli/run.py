"""`harness run`: one federated fine-tuning job from flags, a preset or a config file, or ``--resume`` of one."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click

from harness import registry as plugin_registry
from harness.cli.common import (Choice, chosen_evals, data_option, eval_option, eval_option_overrides, fail,
                                limit_option, parse_options, split_names)
from harness.cli.job import execute, has_checkpoint
from harness.cli.summary import print_summary
from harness.config import CLIPPINGS, PRESETS, ConfigError, RunConfig, load_config
from harness.data.placement import PLACEMENTS
from harness.data.spec import DataSpec
from harness.runner import ENGINES, EngineOptions, prepare

# Flag -> dotted config key for `harness run`.
RUN_FLAGS: dict[str, str] = {
    "model": "model.name",
    "max_length": "model.max_length",
    "data": "data.source",
    "data_path": "data.path",
    "num_samples": "data.num_samples",
    "harmful_ratio": "data.harmful_ratio",
    "partition": "data.partition",
    "red_placement": "data.red_placement",
    "malicious_clients": "data.malicious_clients",
    "malicious_red_share": "data.malicious_red_share",
    "malicious_skip_filter": "data.malicious_skip_filter",
    "centralized": "federation.centralized",
    "num_clients": "federation.num_clients",
    "rounds": "federation.rounds",
    "clients_per_round": "federation.clients_per_round",
    "local_steps": "federation.local_steps",
    "batch_size": "federation.batch_size",
    "lr": "federation.lr",
    "local_optimizer": "federation.local_optimizer",
    "seed": "federation.seed",
    "clip_update_norm": "federation.clip_update_norm",
    "dp_noise": "privacy.noise_multiplier",
    "dp_clip": "privacy.clip_norm",
    "dp_delta": "privacy.delta",
    "dp_clipping": "privacy.clipping",
    "filter_name": "plugins.filter",
    "filter_model": "plugins.filter_options.model",
    "agg": "plugins.agg",
    "align": "plugins.align",
    "attack": "plugins.attack",
    "eval_every": "plugins.eval_every",
    "eval_limit": "plugins.eval_limit",
    "tracking_uri": "tracking.uri",
    "tracking_fallback_local": "tracking.fallback_local",
    "experiment": "tracking.experiment",
    "run_name": "tracking.run_name",
    "output_dir": "output_dir",
}


def data_flags(flags: dict[str, Any]) -> dict[str, Any]:
    """``--data SOURCE=PATH`` (as every ``--data`` takes it) -> ``--data SOURCE --data-path PATH``."""
    if flags.get("data") is None:
        return flags
    spec = DataSpec.parse(flags["data"])
    if spec.path is None:
        return flags
    if flags.get("data_path") is not None:
        fail(f"--data {flags['data']}: give the path either as SOURCE=PATH or with --data-path, not both")
    return flags | {"data": spec.source, "data_path": spec.path}


def resolve_run_config(preset, config_file, sets, evals, flags, plugin_opts, eval_opt=()) -> RunConfig:
    overrides = parse_options(sets, "--set")
    overrides.update({RUN_FLAGS[k]: v for k, v in data_flags(flags).items() if v is not None})
    for kind, pairs in plugin_opts.items():
        for key, value in parse_options(pairs, f"--{kind}-opt").items():
            overrides[f"plugins.{kind}_options.{key}"] = value
    from harness.tracking import experiment_from_env

    if experiment := experiment_from_env(overrides, config_file):  # $MLFLOW_TRACKING_URI: see tracking_uri()
        overrides["tracking.experiment"] = experiment
    try:
        cfg = load_config(preset, config_file, overrides)
        if evals:  # plain names replace the config's evals, +NAME adds to them
            overrides["plugins.evals"] = chosen_evals(evals, cfg.plugins.evals)
        if eval_opt:  # NAME.KEY=VALUE: NAME must be one of the evals the run selects
            overrides.update(eval_option_overrides(eval_opt, overrides.get("plugins.evals", cfg.plugins.evals)))
        if evals or eval_opt:
            cfg = load_config(preset, config_file, overrides)
        return cfg
    except ConfigError as exc:
        fail(str(exc))


def check_plugins(cfg: RunConfig) -> None:
    """Exit 2, listing the installed names, if any selected plugin is not installed."""
    try:
        for kind, name, _ in plugin_registry.selection(cfg):
            plugin_registry.check_selectable(kind, name)
    except plugin_registry.UnknownPluginError as exc:
        fail(str(exc))


def tracking_uri(uri: str | None, output_dir: str, fallback_local: bool = False) -> str:
    """The tracking URI to use; exit 2 when an http(s) server does not answer and no fallback was asked for."""
    from harness.tracking import TrackingUnreachableError, resolve_tracking_uri

    try:
        return resolve_tracking_uri(uri, output_dir, fallback_local)
    except TrackingUnreachableError as exc:
        fail(str(exc))


@click.command("run")
@click.option("--preset", type=Choice(PRESETS), default=None, help="Base settings (default: demo).")
@click.option("--config", "config_file", type=click.Path(dir_okay=False), help="YAML config file.")
@click.option("--set", "sets", multiple=True, metavar="KEY=VALUE", help="Override any config key, e.g. federation.rounds=3.")
@click.option("--filter", "filter_name", help="Safety filter plugin (pre_local_train).")
@click.option("--filter-model", help="Filter model (e.g. a guard trained by `harness filter train`); = --filter-opt model=.")
@click.option("--agg", help="Aggregator plugin.")
@click.option("--align", help="Alignment plugin (post_aggregate).")
@click.option("--attack", help="Model-poisoning attack plugin of the malicious clients (client_fit_end; needs "
                               "--malicious-clients).")
@eval_option(help="Eval plugin (e.g. advbench, hhh, mtbench, lm-eval:TASK), replacing the preset's; +NAME adds one to them")
@click.option("--eval-opt", multiple=True, metavar="EVAL.KEY=VALUE", help="Eval plugin option, e.g. advbench.rule=strict.")
@click.option("--filter-opt", multiple=True, metavar="KEY=VALUE", help="Option for the filter plugin.")
@click.option("--agg-opt", multiple=True, metavar="KEY=VALUE", help="Option for the aggregator plugin.")
@click.option("--align-opt", multiple=True, metavar="KEY=VALUE", help="Option for the alignment plugin.")
@click.option("--attack-opt", multiple=True, metavar="KEY=VALUE", help="Option for the attack plugin, e.g. factor=10.")
@click.option("--model", help="Hub id, local path, smollm2-135m, smollm2-135m-safe or tiny-random.")
@click.option("--max-length", type=int, help="Token limit of a training sample and an eval prompt (model.max_length).")
@data_option(help="demo, square, hh-rlhf (=PATH: its local file/dir), a .jsonl/.json file or a hub dataset id.")
@click.option("--data-path", help="Local file/dir for square or hh-rlhf.")
@click.option("--num-samples", type=int)
@click.option("--harmful-ratio", type=float)
@click.option("--partition", type=click.Choice(["iid", "dirichlet"]))
@click.option("--red-placement", type=click.Choice(PLACEMENTS),
              help="iid (default): every client the same red share; concentrated: red on the malicious clients.")
@click.option("--malicious-clients", type=int, help="Clients 0..K-1 are malicious (docs/data.md).")
@click.option("--malicious-red-share", type=float, help="Red share of each malicious client's samples (concentrated).")
@click.option("--malicious-skip-filter", is_flag=True, default=None,
              help="Malicious clients skip the safety filter (pre_local_train) and train on every sample.")
@click.option("--centralized", is_flag=True, default=None,
              help="One client holding every client's data, with the federated run's sample visits (docs/data.md).")
@click.option("--num-clients", type=int)
@click.option("--rounds", type=int)
@click.option("--clients-per-round", type=int)
@click.option("--local-steps", type=int)
@click.option("--batch-size", type=int)
@click.option("--lr", type=float)
@click.option("--local-optimizer", type=click.Choice(["adamw", "sgd"]))
@click.option("--seed", type=int)
@click.option("--clip-update-norm", type=float, help="Clip each client's update (local - global) to this L2 norm.")
@click.option("--dp-clip", type=float, help="DP-FedAvg: clip each client's update to L2 norm C (docs/privacy.md).")
@click.option("--dp-noise", type=float, help="DP-FedAvg: noise multiplier σ, std σ·C/m; needs --dp-clip.")
@click.option("--dp-delta", type=float, help="DP-FedAvg: δ of privacy/epsilon (default 1/num_clients^1.1).")
@click.option("--dp-clipping", type=click.Choice(CLIPPINGS), help="DP-FedAvg: who clips the updates (default server).")
@click.option("--eval-every", type=int)
@limit_option()
@click.option("--tracking-uri", help="MLflow tracking URI (default: $MLFLOW_TRACKING_URI, else sqlite store in the output dir).")
@click.option("--tracking-fallback-local", is_flag=True, default=None,
              help="If the http(s) tracking server does not answer, log to the local sqlite store instead of failing.")
@click.option("--experiment", help="MLflow experiment name (default: $MLFLOW_EXPERIMENT_NAME, else fedllm-harness).")
@click.option("--run-name")
@click.option("--output-dir", type=click.Path(file_okay=False))
@click.option("--progress/--no-progress", default=None,
              help="Progress bars (default: when stderr is a terminal; piped or logged output gets none).")
@click.option("--engine", type=click.Choice(ENGINES),
              help="local (default): one process; flower: Flower's Simulation Engine, one Ray worker process per "
                   "--flower-workers. A resumed run keeps the engine it ran on.")
@click.option("--flower-workers", type=click.IntRange(min=1), default=2, show_default=True,
              help="Client processes for --engine flower.")
@click.option("--resume", "resume_key", metavar="RUN_ID",
              help="Continue an interrupted run (MLflow run id or run name) from its last checkpoint, with its saved config.")
def command(preset, config_file, sets, evals, eval_opt, filter_opt, agg_opt, align_opt, attack_opt, progress, engine,
        flower_workers, resume_key, **flags) -> None:
    """Run one federated fine-tuning job and log it to MLflow."""
    progress = sys.stderr.isatty() if progress is None else progress
    if resume_key:
        overrides = resume_overrides(preset, config_file, sets, evals, filter_opt, agg_opt, align_opt, flags,
                                     attack_opt)
        overrides.update(eval_option_overrides(eval_opt, overrides.get("plugins.evals", [])))
        resume_run(resume_key, flags["tracking_uri"], flags["output_dir"], progress, engine, flower_workers, overrides)
        return
    cfg = resolve_run_config(
        preset, config_file, sets, evals, flags,
        {"filter": filter_opt, "agg": agg_opt, "align": align_opt, "attack": attack_opt}, eval_opt,
    )
    check_plugins(cfg)
    from harness.data.samples import DataError
    from harness.data.sources import check_local_file
    from harness.models import ModelLoadError, check_model_name
    from harness.tracking import TrackingError

    try:  # before the tracking store exists: a bad data file or model path creates nothing
        check_local_file(cfg.data.source)
        check_model_name(cfg.model.name)
    except (DataError, ModelLoadError) as exc:
        fail(str(exc))
    uri = tracking_uri(cfg.tracking.uri, cfg.output_dir, cfg.tracking.fallback_local)
    try:
        job = prepare(cfg, uri, EngineOptions(engine or "local", progress, flower_workers=flower_workers))
    except (plugin_registry.PluginError, TrackingError) as exc:
        fail(str(exc), getattr(exc, "exit_code", 2))
    print_summary(cfg, execute(job.start, job.tracker), job.tracker.run_id, uri)


# Settings a resumed run may change: they decide what is evaluated and shown, or how long a hook may take, never
# what is trained.
RESUME_KEYS = ("plugins.evals", "plugins.eval_options", "plugins.eval_every", "plugins.eval_schedule",
               "plugins.eval_limit", "plugins.eval_pretrained", "plugins.hook_timeout_s")


def resume_overrides(preset, config_file, sets, evals, filter_opt, agg_opt, align_opt, flags,
                     attack_opt=()) -> dict[str, Any]:
    """The dotted overrides ``--resume`` accepts (eval settings: :data:`RESUME_KEYS`); exit 2 naming the others.

    Everything else (model, data, federation, the filter/agg/align/attack plugins and their options, preset, config
    file) decides what the checkpointed rounds trained, so continuing with another value would mix two runs.
    ``--progress``, ``--tracking-uri`` and ``--output-dir`` only say where to find the run and how to show it."""
    given = [("--preset", preset), ("--config", config_file), ("--filter-opt", filter_opt), ("--agg-opt", agg_opt),
             ("--align-opt", align_opt), ("--attack-opt", attack_opt)]
    refused = [name for name, value in given if value not in (None, ())]
    overrides: dict[str, Any] = {}
    for flag, value in flags.items():
        if value is None or flag in ("tracking_uri", "output_dir"):
            continue
        if RUN_FLAGS[flag] in RESUME_KEYS:
            overrides[RUN_FLAGS[flag]] = value
        else:
            refused.append("--filter" if flag == "filter_name" else f"--{flag.replace('_', '-')}")
    for key, value in parse_options(sets, "--set").items():
        if any(key == k or key.startswith(k + ".") for k in RESUME_KEYS):
            overrides[key] = value
        else:
            refused.append(f"--set {key}")
    if evals:
        overrides["plugins.evals"] = split_names(evals)
        if any(name.startswith("+") for name in overrides["plugins.evals"]):
            fail("--resume: --eval +NAME adds to a preset's evals; name every eval the resumed run should run")
    if refused:
        fail(f"--resume continues a run with its saved config; drop {', '.join(refused)}: these settings decide what "
             f"the checkpointed rounds trained (a resumed run may change only {', '.join(RESUME_KEYS)}, and "
             "--progress)")
    return overrides


def resume_run(key: str, uri: str | None, output_dir: str | None, progress: bool, engine: str | None,
               flower_workers: int, overrides: dict[str, Any] | None = None) -> None:
    """Reload a run's saved config and MLflow run, then continue it from its newest checkpoint on its engine (a
    run stopped before its first checkpoint starts again, as a new MLflow run); ``overrides`` (eval settings, see
    :func:`resume_overrides`) apply to this session, not to the saved config."""
    from harness.tracking import RunNotFoundError, TrackingError, find_run

    uri = tracking_uri(uri, output_dir or RunConfig().output_dir)
    try:
        found = find_run(uri, key)
    except TrackingError as exc:
        fail(str(exc))
    except RunNotFoundError as exc:
        found = None
        run_dir = lost_run_dir(key, output_dir or RunConfig().output_dir)
        if run_dir is None:
            fail(str(exc))
        recorded = engine or "local"
    if found is not None:
        if found.info.status == "FINISHED":
            fail(f"run {found.info.run_id} ({found.info.run_name}) already finished; nothing to resume")
        recorded = found.data.tags.get("harness.engine", "local")
        if recorded == "flower-deployment":
            fail(f"run {found.info.run_id} ({found.info.run_name}) ran on Flower's Deployment Engine; --resume "
                 f"continues local and Flower Simulation runs only: start the run again with flwr run")
        if engine not in (None, recorded):
            fail(f"run {found.info.run_id} ({found.info.run_name}) ran on --engine {recorded}; resume it there "
                 f"(drop --engine {engine})")
        run_dir = Path(found.data.tags.get("harness.run_dir", ""))
    try:
        cfg = load_config(file=run_dir / "config.yaml", overrides=overrides)
    except ConfigError as exc:
        fail(f"cannot resume run {found.info.run_id if found else key}: {exc}")
    cfg.output_dir, cfg.tracking.run_name, cfg.tracking.uri = str(run_dir.parent.parent), run_dir.name, uri
    check_plugins(cfg)
    started = has_checkpoint(run_dir)
    if not started:
        click.echo(f"warning: run {key!r} has no checkpoint in {run_dir}: it stopped before its first one, so nothing "
                   "was trained; starting it again from its saved config as a new MLflow run", err=True)
    elif found is None:
        click.echo(f"warning: the MLflow store {uri} has no run {key!r} (was the store deleted?); continuing the run "
                   f"in {run_dir} from its newest checkpoint as a new MLflow run of that name (the rounds logged "
                   "before are not in it)", err=True)
    try:
        job = prepare(cfg, uri, EngineOptions(recorded, progress, resume=started, flower_workers=flower_workers),
                      run_id=found.info.run_id if found and started else None)
    except (plugin_registry.PluginError, TrackingError) as exc:
        fail(str(exc), getattr(exc, "exit_code", 2))
    print_summary(cfg, execute(job.start, job.tracker), job.tracker.run_id, uri)


def lost_run_dir(name: str, output_dir: str) -> Path | None:
    """``output_dir/runs/NAME`` when it holds a run (its saved config) that its MLflow store does not know: the
    store lost it, or the run stopped before its MLflow run was created; else None."""
    from harness.config import check_run_name, run_dir

    try:
        check_run_name(name)
    except ConfigError:
        return None
    path = run_dir(output_dir, name)
    return path if (path / "config.yaml").is_file() else None
