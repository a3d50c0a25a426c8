"""The `harness` command line."""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import os
import shlex
import signal
import threading
from pathlib import Path
from typing import Any

import click

from harness import registry as plugin_registry
from harness.session import tracked_plugins
from harness.cli_common import LazyGroup, eval_option_overrides, fail, parse_options, split_names
from harness.config import PRESETS, ConfigError, RunConfig, load_config

# Flag -> dotted config key for `harness run`.
RUN_FLAGS: dict[str, str] = {
    "model": "model.name",
    "max_length": "model.max_length",
    "data": "data.source",
    "data_path": "data.path",
    "num_samples": "data.num_samples",
    "harmful_ratio": "data.harmful_ratio",
    "partition": "data.partition",
    "num_clients": "federation.num_clients",
    "rounds": "federation.rounds",
    "clients_per_round": "federation.clients_per_round",
    "local_steps": "federation.local_steps",
    "batch_size": "federation.batch_size",
    "lr": "federation.lr",
    "local_optimizer": "federation.local_optimizer",
    "seed": "federation.seed",
    "clip_update_norm": "federation.clip_update_norm",
    "filter_name": "plugins.filter",
    "filter_model": "plugins.filter_options.model",
    "agg": "plugins.agg",
    "align": "plugins.align",
    "eval_every": "plugins.eval_every",
    "eval_limit": "plugins.eval_limit",
    "tracking_uri": "tracking.uri",
    "tracking_fallback_local": "tracking.fallback_local",
    "experiment": "tracking.experiment",
    "run_name": "tracking.run_name",
    "output_dir": "output_dir",
}


def data_flags(flags: dict[str, Any]) -> dict[str, Any]:
    """``--data SOURCE=PATH`` (as ``harness filter`` takes it) -> ``--data SOURCE --data-path PATH``."""
    source, sep, path = (flags.get("data") or "").partition("=")
    if not sep:
        return flags
    if flags.get("data_path") is not None:
        fail(f"--data {flags['data']}: give the path either as SOURCE=PATH or with --data-path, not both")
    return flags | {"data": source, "data_path": path}


def resolve_run_config(preset, config_file, sets, evals, flags, plugin_opts, eval_opt=()) -> RunConfig:
    overrides = parse_options(sets, "--set")
    overrides.update({RUN_FLAGS[k]: v for k, v in data_flags(flags).items() if v is not None})
    if evals:
        overrides["plugins.evals"] = split_names(evals)
    for kind, pairs in plugin_opts.items():
        for key, value in parse_options(pairs, f"--{kind}-opt").items():
            overrides[f"plugins.{kind}_options.{key}"] = value
    from harness.tracking import experiment_from_env

    if experiment := experiment_from_env(overrides, config_file):  # $MLFLOW_TRACKING_URI: see tracking_uri()
        overrides["tracking.experiment"] = experiment
    try:
        cfg = load_config(preset, config_file, overrides)
        if eval_opt:  # NAME.KEY=VALUE: NAME must be one of the evals the config selects
            overrides.update(eval_option_overrides(eval_opt, cfg.plugins.evals))
            cfg = load_config(preset, config_file, overrides)
        return cfg
    except ConfigError as exc:
        fail(str(exc))


def check_plugins(cfg: RunConfig) -> None:
    """Exit 2, listing the installed names, if any selected plugin is not installed."""
    p = cfg.plugins
    try:
        for kind, name in [("filter", p.filter), ("agg", p.agg), ("align", p.align)] + [("eval", e) for e in p.evals]:
            plugin_registry.check_selectable(kind, name)
    except plugin_registry.UnknownPluginError as exc:
        fail(str(exc))


def input_errors() -> tuple[type[Exception], ...]:
    """Errors that mean bad input (data, model, eval data, checkpoint): exit 2 with their message."""
    from harness.checkpoint import CheckpointError
    from harness.data.samples import DataError
    from harness.evals.files import EvalDataError
    from harness.models import ModelLoadError

    return DataError, ModelLoadError, EvalDataError, CheckpointError


class Interrupted(KeyboardInterrupt):
    """SIGINT or SIGTERM arrived while ``harness run`` ran: raised where the main thread was, so the engine's
    failure path runs (last checkpoint flushed, MLflow run marked KILLED)."""

    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)
UNWRITABLE = (errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOSPC, errno.EDQUOT)  # before the run: exit 2


@contextlib.contextmanager
def stop_on_signals(tracker):
    """While inside, SIGINT/SIGTERM raise :class:`Interrupted` (and set ``tracker.interrupted``); a second
    signal while the run is being stopped ends the process at once with the signal's default action."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    got: list[int] = []

    def handler(signum, frame):
        if got:
            signal.signal(signum, signal.SIG_DFL)
            os.kill(os.getpid(), signum)
            return
        got.append(signum)
        tracker.interrupted = signum
        raise Interrupted(signum)

    previous = {sig: signal.signal(sig, handler) for sig in STOP_SIGNALS}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def resume_command(tracker, key: str | None = None) -> str:
    """``harness run --resume NAME --output-dir DIR`` (plus ``--tracking-uri`` for a store elsewhere)."""
    from harness.tracking import default_tracking_uri

    output_dir = str(tracker.run_dir.parent.parent) if tracker.run_dir is not None else str(tracker.output_dir)
    words = ["harness", "run", "--resume", key or tracker.run_name or tracker.run_id, "--output-dir", output_dir]
    if tracker.uri != default_tracking_uri(output_dir):
        words += ["--tracking-uri", tracker.uri]
    return " ".join(shlex.quote(w) for w in words)


def execute(engine_run, tracker):
    """Run the job; a failure exits with the failing plugin and error named, and how to resume.

    Once the run started, the engine has marked its MLflow run FAILED with the traceback as ``error.txt`` and
    the newest checkpoint is intact. A plugin whose ``on_run_end`` fails after the run FINISHED exits 1 too, and
    the run stays FINISHED (its training and artifacts are complete; docs/reliability.md). SIGINT/SIGTERM stop
    the run cleanly (MLflow KILLED, exit 130/143); a failing MLflow store is reported in one message (exit 1).
    Other errors before the run started (not bad input) keep their traceback. Every message is redacted (no
    secrets on stderr).
    """
    from harness.redaction import redact

    try:
        with stop_on_signals(tracker):
            summary = engine_run()
    except KeyboardInterrupt as exc:
        report_interrupted(tracker, getattr(exc, "signum", signal.SIGINT))
    except Exception as exc:
        bad_input = isinstance(exc, input_errors())
        fault = getattr(exc, "plugin_fault", None)
        if tracker.failure is not None:
            report_tracking_failure(tracker, exc)
        if tracker.status == "FINISHED" and fault is not None:
            try:
                tracker.client.set_tag(tracker.run_id, "harness.run_end_fault", redact(str(fault))[:5000])
            except Exception:  # noqa: BLE001 - the fault itself is what gets reported
                pass
            fail(redact(f"{plugin_registry.describe_failure(exc)}\nMLflow run {tracker.run_id} is FINISHED: its "
                        f"training completed and the adapter and artifacts are saved in {tracker.run_dir}; only this "
                        f"plugin's {fault.hook} failed, so whatever it does at the end of a run is missing"), 1)
        if isinstance(exc, OSError) and exc.errno in UNWRITABLE and tracker.run_id is None:
            fail(f"cannot write {exc.filename or 'the run'}: {exc.strerror}; nothing was trained: pass a writable "
                 "--output-dir (with room to spare) and start the run again")
        if tracker.status != "FAILED" and not bad_input:
            raise
        message = str(exc) if bad_input and not hasattr(exc, "plugin_fault") else plugin_registry.describe_failure(exc)
        if tracker.status == "FAILED":
            next_step = (f"after fixing the cause continue it with: {resume_command(tracker, tracker.run_id)}"
                         if has_checkpoint(tracker.run_dir) else
                         "it failed before its first checkpoint, so nothing was trained: fix the cause and start it again")
            if getattr(exc, "resumable", True) is False:  # the fix is a new option, and --resume keeps the config
                next_step = "--resume cannot fix this (a resumed run keeps its config): start a new run with the fix"
            message += f"\nMLflow run {tracker.run_id} is marked FAILED (traceback in its error.txt); {next_step}"
        fail(redact(message), 2 if bad_input else 1)
    if tracker.failure is not None:  # the run finished; marking it FINISHED in MLflow failed
        report_tracking_failure(tracker, None)
    return summary


def report_interrupted(tracker, signum: int) -> None:
    """One line for a run stopped by SIGINT (exit 130) or SIGTERM (exit 143), with the resume command."""
    from harness.redaction import redact

    name = signal.Signals(signum).name
    if tracker.run_id is None or not has_checkpoint(tracker.run_dir):
        what = "before its first checkpoint; nothing was trained, start it again"
        if tracker.run_id is not None:
            what += f" (MLflow run {tracker.run_id} is marked {tracker.status or 'KILLED'})"
    else:
        marked = (f"MLflow run {tracker.run_id} is marked KILLED" if tracker.status == "KILLED" else
                  f"MLflow run {tracker.run_id} could not be marked KILLED ({tracker.failure})")
        what = f"its checkpoints in {tracker.run_dir} are intact and {marked}; continue it with: {resume_command(tracker)}"
    fail(redact(f"stopped by {name}: {what}"), 128 + signum)


def report_tracking_failure(tracker, exc: BaseException | None) -> None:
    """One message, no traceback, for an MLflow store that failed during or at the end of the run (exit 1)."""
    from harness.redaction import redact

    lines = [str(tracker.failure)]
    from harness.tracking import TrackingError

    if exc is not None and not isinstance(exc, TrackingError):  # the run failed first, then the tracker
        lines.insert(0, f"the run failed: {plugin_registry.describe_failure(exc)}; then")
    if tracker.status is None and tracker.run_id is not None:
        lines.append(f"MLflow run {tracker.run_id} could not be marked {'FINISHED' if exc is None else 'FAILED'} "
                     "and may still show RUNNING")
    if exc is None:
        lines.append(f"the training finished and its adapter is saved in {tracker.run_dir / 'final_adapter'}; after "
                     f"fixing the store, {resume_command(tracker)} records the end (no round is repeated)")
    elif has_checkpoint(tracker.run_dir):
        lines.append(f"the training stopped; its checkpoints in {tracker.run_dir} are intact: after fixing the "
                     f"tracking store continue it with: {resume_command(tracker)}")
    else:
        lines.append("the run stopped before its first checkpoint, so nothing was trained: fix the tracking store "
                     "and start it again")
    fail(redact("\n".join(lines)), 1)


def has_checkpoint(run_dir: Path | None) -> bool:
    """Whether the run left a checkpoint to resume from."""
    from harness.checkpoint import CheckpointStore

    return run_dir is not None and bool(CheckpointStore(run_dir).complete())


def tracking_uri(uri: str | None, output_dir: str, fallback_local: bool = False) -> str:
    """The tracking URI to use; exit 2 when an http(s) server does not answer and no fallback was asked for."""
    from harness.tracking import TrackingUnreachableError, resolve_tracking_uri

    try:
        return resolve_tracking_uri(uri, output_dir, fallback_local)
    except TrackingUnreachableError as exc:
        fail(str(exc))


def print_summary(cfg: RunConfig, summary, run_id: str | None) -> None:
    rows = [
        ("status", summary.status),
        ("rounds", str(summary.rounds_completed)),
        ("wall time", f"{summary.wall_seconds:.1f} s"),
        ("plugins", f"filter={cfg.plugins.filter} agg={cfg.plugins.agg} align={cfg.plugins.align}"),
        ("mlflow run", run_id or "-"),
        ("adapter", str(summary.adapter_path)),
    ]
    rows += [(k, f"{v:.4g}") for k, v in sorted(summary.final_metrics.items())
             if k.split("/")[0] not in ("comm", "filter", "clients") and not k.startswith("time/") or k in (
                 "time/round_seconds", "time/train_step_seconds", "comm/bytes_up", "filter/dropped")]
    from harness.evals.report import safety_rows

    rows += safety_rows(summary.final_metrics, summary.pretrained_metrics)
    width = max(len(k) for k, _ in rows)
    click.echo("\n" + "-" * (width + 40))
    for key, value in rows:
        click.echo(f"{key:<{width}}  {value}")
    click.echo("-" * (width + 40))


# Subcommands in other modules, imported only when invoked: name -> ("module:attr", the first paragraph of its
# help, which `harness --help` shows; tests/test_cli_startup.py checks that the two agree).
COMMANDS: dict[str, tuple[str, str]] = {
    "cai": ("harness.cli_cai:command", "Constitutional AI: red/critique/revision data for the cai* alignment plugins."),
    "data": ("harness.cli_data:command", "Data sets: disjoint splits of a labelled source for clients, the guard and CAI."),
    "eval": ("harness.cli_eval:command",
             "Evaluate a model (optionally with a LoRA adapter) on eval plugins and log it as an MLflow run."),
    "filter": ("harness.cli_filter:command", "Train and evaluate safety filters (pre_local_train plugins)."),
    "leaderboard": ("harness.cli_leaderboard:command",
                    "Read finished runs from MLflow and write leaderboard.md, leaderboard.csv and leaderboard.html."),
    "safety-tune": ("harness.cli_safety:command",
                    "Safety-tune BASE with the harness's LoRA loop (recipe: harness/safe_base/recipe.py, docs/safe-base.md)."),
    "suite": ("harness.suite:command",
              "Run the paper's tables (resumable: finished runs are reused) and build their leaderboard."),
}


@click.group(cls=LazyGroup, lazy=COMMANDS)
@click.version_option(package_name="fedllm-harness", prog_name="harness")
@click.option("-v", "--verbose", is_flag=True, help="Log at INFO level (also accepted after the subcommand).")
def main(verbose: bool) -> None:
    """fedllm-harness: benchmark responsible federated LLM fine-tuning."""
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


@main.command()
@click.option("--preset", type=click.Choice(PRESETS), default=None, help="Base settings (default: demo).")
@click.option("--config", "config_file", type=click.Path(dir_okay=False), help="YAML config file.")
@click.option("--set", "sets", multiple=True, metavar="KEY=VALUE", help="Override any config key, e.g. federation.rounds=3.")
@click.option("--filter", "filter_name", help="Safety filter plugin (pre_local_train).")
@click.option("--filter-model", help="Filter model (e.g. a guard trained by `harness filter train`); = --filter-opt model=.")
@click.option("--agg", help="Aggregator plugin.")
@click.option("--align", help="Alignment plugin (post_aggregate).")
@click.option("--eval", "evals", multiple=True, help="Eval plugin; repeat or comma-separate for several.")
@click.option("--eval-opt", multiple=True, metavar="EVAL.KEY=VALUE", help="Eval plugin option, e.g. advbench.rule=strict.")
@click.option("--filter-opt", multiple=True, metavar="KEY=VALUE", help="Option for the filter plugin.")
@click.option("--agg-opt", multiple=True, metavar="KEY=VALUE", help="Option for the aggregator plugin.")
@click.option("--align-opt", multiple=True, metavar="KEY=VALUE", help="Option for the alignment plugin.")
@click.option("--model", help="Hub id, local path, smollm2-135m, smollm2-135m-safe or tiny-random.")
@click.option("--max-length", type=int, help="Token limit of a training sample and an eval prompt (model.max_length).")
@click.option("--data", metavar="SOURCE[=PATH]",
              help="demo, square, hh-rlhf (=PATH: its local file/dir), a .jsonl/.json file or a hub dataset id.")
@click.option("--data-path", help="Local file/dir for square or hh-rlhf.")
@click.option("--num-samples", type=int)
@click.option("--harmful-ratio", type=float)
@click.option("--partition", type=click.Choice(["iid", "dirichlet"]))
@click.option("--num-clients", type=int)
@click.option("--rounds", type=int)
@click.option("--clients-per-round", type=int)
@click.option("--local-steps", type=int)
@click.option("--batch-size", type=int)
@click.option("--lr", type=float)
@click.option("--local-optimizer", type=click.Choice(["adamw", "sgd"]))
@click.option("--seed", type=int)
@click.option("--clip-update-norm", type=float, help="Clip each client's update (local - global) to this L2 norm.")
@click.option("--eval-every", type=int)
@click.option("--eval-limit", type=int)
@click.option("--tracking-uri", help="MLflow tracking URI (default: $MLFLOW_TRACKING_URI, else sqlite store in the output dir).")
@click.option("--tracking-fallback-local", is_flag=True, default=None,
              help="If the http(s) tracking server does not answer, log to the local sqlite store instead of failing.")
@click.option("--experiment", help="MLflow experiment name (default: $MLFLOW_EXPERIMENT_NAME, else fedllm-harness).")
@click.option("--run-name")
@click.option("--output-dir", type=click.Path(file_okay=False))
@click.option("--progress/--no-progress", default=True, help="Progress bars.")
@click.option("--engine", type=click.Choice(["local", "flower"]),
              help="local (default): one process; flower: Flower's Simulation Engine, one Ray worker process per "
                   "--flower-workers. A resumed run keeps the engine it ran on.")
@click.option("--flower-workers", type=click.IntRange(min=1), default=2, show_default=True,
              help="Client processes for --engine flower.")
@click.option("--resume", "resume_key", metavar="RUN_ID",
              help="Continue an interrupted run (MLflow run id or run name) from its last checkpoint, with its saved config.")
def run(preset, config_file, sets, evals, eval_opt, filter_opt, agg_opt, align_opt, progress, engine, flower_workers,
        resume_key, **flags) -> None:
    """Run one federated fine-tuning job and log it to MLflow."""
    if resume_key:
        overrides = resume_overrides(preset, config_file, sets, evals, filter_opt, agg_opt, align_opt, flags)
        overrides.update(eval_option_overrides(eval_opt, overrides.get("plugins.evals", [])))
        resume_run(resume_key, flags["tracking_uri"], flags["output_dir"], progress, engine, flower_workers, overrides)
        return
    cfg = resolve_run_config(
        preset, config_file, sets, evals, flags, {"filter": filter_opt, "agg": agg_opt, "align": align_opt}, eval_opt
    )
    check_plugins(cfg)
    from harness.data.samples import DataError
    from harness.data.sources import check_local_file
    from harness.tracking import TrackingError

    try:  # before the tracking store exists: a bad data file creates nothing
        check_local_file(cfg.data.source)
    except DataError as exc:
        fail(str(exc))
    uri = tracking_uri(cfg.tracking.uri, cfg.output_dir, cfg.tracking.fallback_local)
    try:
        tracker, pm = tracked_plugins(cfg, uri)
    except (plugin_registry.PluginError, TrackingError) as exc:
        fail(str(exc), getattr(exc, "exit_code", 2))
    summary = execute(engine_runner(cfg, pm, engine or "local", flower_workers, progress), tracker)
    print_summary(cfg, summary, tracker.run_id)


# Settings a resumed run may change: they decide what is evaluated and shown, never what is trained.
RESUME_KEYS = ("plugins.evals", "plugins.eval_options", "plugins.eval_every", "plugins.eval_limit",
               "plugins.eval_pretrained")


def resume_overrides(preset, config_file, sets, evals, filter_opt, agg_opt, align_opt, flags) -> dict[str, Any]:
    """The dotted overrides ``--resume`` accepts (eval settings: :data:`RESUME_KEYS`); exit 2 naming the others.

    Everything else (model, data, federation, the filter/agg/align plugins and their options, preset, config
    file) decides what the checkpointed rounds trained, so continuing with another value would mix two runs.
    ``--progress``, ``--tracking-uri`` and ``--output-dir`` only say where to find the run and how to show it."""
    refused = [name for name, value in [("--preset", preset), ("--config", config_file), ("--filter-opt", filter_opt),
                                        ("--agg-opt", agg_opt), ("--align-opt", align_opt)] if value not in (None, ())]
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
    if refused:
        fail(f"--resume continues a run with its saved config; drop {', '.join(refused)}: these settings decide what "
             f"the checkpointed rounds trained (a resumed run may change only {', '.join(RESUME_KEYS)}, and "
             "--progress)")
    return overrides


def engine_runner(cfg: RunConfig, pm, engine: str, flower_workers: int, progress: bool, resume: bool = False):
    """The callable that runs the job on ``engine`` (``flower``: the Simulation Engine with ``flower_workers``)."""
    if engine == "flower":
        from harness.flower import simulate

        return lambda: simulate(cfg, pm, workers=flower_workers, progress=progress, resume=resume)
    from harness.engine import RoundEngine

    return RoundEngine(cfg, pm, progress=progress, resume=resume).run


def resume_run(key: str, uri: str | None, output_dir: str | None, progress: bool, engine: str | None,
               flower_workers: int, overrides: dict[str, Any] | None = None) -> None:
    """Reload a run's saved config and MLflow run, then continue it from its newest checkpoint on its engine;
    ``overrides`` (eval settings, see :func:`resume_overrides`) apply to this session, not to the saved config."""
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
        click.echo(f"warning: the MLflow store {uri} has no run {key!r} (was the store deleted?); continuing the run "
                   f"in {run_dir} from its newest checkpoint as a new MLflow run of that name (the rounds logged "
                   "before are not in it)", err=True)
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
    try:
        tracker, pm = tracked_plugins(cfg, uri, run_id=found.info.run_id if found else None)
    except (plugin_registry.PluginError, TrackingError) as exc:
        fail(str(exc), getattr(exc, "exit_code", 2))
    summary = execute(engine_runner(cfg, pm, recorded, flower_workers, progress, resume=True), tracker)
    print_summary(cfg, summary, tracker.run_id)


def lost_run_dir(name: str, output_dir: str) -> Path | None:
    """``output_dir/runs/NAME`` when it holds a run with a checkpoint that its MLflow store lost, else None."""
    from harness.config import check_run_name

    try:
        check_run_name(name)
    except ConfigError:
        return None
    run_dir = Path(output_dir).resolve() / "runs" / name
    return run_dir if (run_dir / "config.yaml").is_file() and has_checkpoint(run_dir) else None


@main.command("plugins")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def list_plugins(as_json: bool) -> None:
    """List every installed plugin: kind, name, version and source package.

    A name that several packages register is marked ambiguous: select it as PACKAGE:NAME (e.g. --agg my-pkg:fedavg).
    """
    found = plugin_registry.discover()
    ambiguous = plugin_registry.ambiguous_names(found)
    if as_json:
        click.echo(json.dumps([p.__dict__ | {"ambiguous": (p.kind, p.name) in ambiguous} for p in found], indent=2))
        return
    header = ("KIND", "NAME", "VERSION", "PACKAGE", "TARGET", "NOTE")
    rows = [header] + [(p.kind, p.name, p.version, p.package, p.target,
                        f"ambiguous: select as {p.package}:{p.name}" if (p.kind, p.name) in ambiguous else "")
                       for p in found]
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    for r in rows:
        click.echo("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip())
