"""`harness filter train` and `harness filter eval`: fine-tune a safety filter and score it (Table 2)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import click

from harness import registry as plugin_registry
from harness.cli.common import data_option, fail, parse_options
from harness.guard.card import TRAIN_PROMPTS, record_held_out, write_train_prompts
from harness.data.spec import DataSpec
from harness.guard.labelled import SPLITS, labelled_set
from harness.guard.metrics import detection_auc, detection_intervals, detection_report
from harness.guard.settings import FilterTrainSettings
from harness.models import ModelLoadError
from harness.tracking import ensure_experiment, resolve_tracking_uri

COLUMNS = ("accuracy", "precision", "recall", "hmean")
AUC = "roc_auc"


def _labelled(data: tuple[str, ...], split: str, held_out: float, max_per_class: int | None, seed: int):
    try:
        return labelled_set([DataSpec.parse(d) for d in data], split, held_out, max_per_class, seed)
    except ValueError as exc:
        fail(str(exc))


def _log_mlflow(uri: str | None, output_dir: str, experiment: str, run_name: str, params: dict,
                metrics: dict[str, float], text: dict[str, str]) -> str:
    from mlflow.tracking import MlflowClient

    uri = resolve_tracking_uri(uri, output_dir)
    client = MlflowClient(uri)
    run = client.create_run(ensure_experiment(client, experiment, output_dir, uri), run_name=run_name)
    run_id = run.info.run_id
    for key, value in params.items():
        client.log_param(run_id, key, str(value)[:6000])
    for key, value in metrics.items():
        client.log_metric(run_id, key, float(value))
    for name, content in text.items():
        client.log_text(run_id, content, name)
    client.set_terminated(run_id)
    return run_id


def format_table(rows: list[tuple[str, dict[str, float]]]) -> str:
    """Plain-text Table 2: one row per filter, accuracy/precision/recall/Hmean and ROC AUC in percent (AUC n/a for
    a filter without scores); then each rate's 95 % interval where the metrics hold one (``NAME_low``/``NAME_high``)."""
    width = max([len("filter")] + [len(name) for name, _ in rows])
    columns = (*COLUMNS, AUC)
    lines = [f"{'filter':<{width}}  " + "  ".join(f"{c:>9}" for c in columns) + f"  {'n':>5}"]
    for name, m in rows:
        cells = [f"{100 * m[c]:>9.1f}" if c in m else f"{'n/a':>9}" for c in columns]
        lines.append(f"{name:<{width}}  " + "  ".join(cells) + f"  {int(m['n']):>5}")
    intervals = [(name, [f"{c} [{100 * m[c + '_low']:.1f}, {100 * m[c + '_high']:.1f}]" for c in columns
                         if c + "_low" in m]) for name, m in rows]
    if any(cells for _, cells in intervals):
        lines += ["", "95 % intervals (Wilson; Hmean and ROC AUC: bootstrap over samples):"]
        lines += [f"{name:<{width}}  " + "  ".join(cells) for name, cells in intervals if cells]
    return "\n".join(lines)


def detection_metrics(harmful: list[bool], flagged: list[bool], scores: list[float] | None) -> dict[str, float]:
    """Table 2's metrics of one filter: the detection report, the ROC AUC of its scores, and 95 % intervals."""
    metrics = detection_report(harmful, flagged).as_metrics()
    auc = detection_auc(harmful, scores) if scores is not None else None
    if auc is not None:
        metrics[AUC] = auc
    for name, interval in detection_intervals(harmful, flagged, scores).items():
        metrics[f"{name}_low"], metrics[f"{name}_high"] = interval.low, interval.high
    return metrics


labelled_data_option = data_option(
    multiple=True, required=True,
    help="Labelled source (square, hh-rlhf, demo, a .json/.jsonl file or a hub id), as `harness run --data` takes "
         "it; repeat to mix.")
held_out_option = click.option("--held-out", type=float, default=0.2, show_default=True,
                               help="Fraction of prompts (by hash) held out for evaluation.")
tracking_options = [
    click.option("--tracking-uri", help="MLflow tracking URI (default: sqlite store in the output dir)."),
    click.option("--output-dir", default="harness-runs", show_default=True, type=click.Path(file_okay=False)),
]


def _with(options):
    def wrap(f):
        for option in reversed(options):
            f = option(f)
        return f
    return wrap


@click.group("filter")
def command() -> None:
    """Train and evaluate safety filters (pre_local_train plugins)."""


@command.command("train")
@click.option("--filter", "filter_name", default="lg3", show_default=True, help="Trainable filter plugin.")
@click.option("--base", help="Base model (lg3: smollm2-135m, a hub id or path; embed-lr: an encoder dir).")
@labelled_data_option
@click.option("--out", required=True, type=click.Path(file_okay=False), help="Where the trained filter goes.")
@held_out_option
@click.option("--max-per-class", type=int, help="Cap on safe and on unsafe training samples (balanced).")
@click.option("--epochs", type=int, default=5, show_default=True)
@click.option("--lr", type=float, default=2e-4, show_default=True)
@click.option("--batch-size", type=int, default=8, show_default=True)
@click.option("--max-steps", type=int, help="Stop after this many optimizer steps.")
@click.option("--lora-r", type=int, default=8, show_default=True)
@click.option("--max-length", type=int, default=1024, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--eval-per-class", type=click.IntRange(min=0), default=50, show_default=True,
              help="After training, score this many (at most --max-per-class) safe and unsafe held-out samples "
                   "and store accuracy, precision and recall in the filter's card (a run refuses an lg3 guard "
                   "whose recall is < 0.1); 0: skip.")
@click.option("--experiment", default="filter-train", show_default=True)
@_with(tracking_options)
def train(filter_name, base, data, out, held_out, max_per_class, epochs, lr, batch_size, max_steps, lora_r,
          max_length, seed, eval_per_class, experiment, tracking_uri, output_dir) -> None:
    """Fine-tune a filter on the train split of a balanced labelled set; use it with --filter-model OUT.

    OUT also gets train_prompts.sha256 (the digest of every distinct normalised training prompt, for overlap
    checks; no text) and, in the filter's card, its detection metrics on the held-out split."""
    try:  # the name, the settings and the data before the plugin's module (and torch) loads
        plugin_registry.check_selectable("filter", filter_name)
        settings = FilterTrainSettings(epochs, lr, batch_size, max_steps, lora_r, max_length, seed)
    except (plugin_registry.PluginError, ValueError) as exc:
        fail(str(exc))
    samples = _labelled(data, "train", held_out, max_per_class, seed)
    try:
        factory = plugin_registry.load_factory("filter", filter_name)
    except plugin_registry.PluginError as exc:
        fail(str(exc))
    if not hasattr(factory, "train"):
        fail(f"filter plugin {filter_name!r} cannot be trained (it has no train method)")
    click.echo(f"training {filter_name} on {len(samples)} samples ({len(samples) // 2} safe + {len(samples) // 2} unsafe)")
    try:
        metrics = factory.train(samples, Path(out), base, settings)
    except (ModelLoadError, ValueError) as exc:
        fail(str(exc))
    n_prompts = write_train_prompts(Path(out), [s.prompt for s in samples])
    click.echo(f"{n_prompts} distinct training prompts hashed to {Path(out) / TRAIN_PROMPTS}")
    if eval_per_class:
        per_class = min(eval_per_class, max_per_class or eval_per_class)
        report = _held_out_report(filter_name, factory, out, data, held_out, per_class, max_length, seed)
        if report is not None:
            metrics.update({f"held_out/{k}": report[k] for k in (*COLUMNS, "n")})
    params = {"filter": filter_name, "base": base, "data": ",".join(data), "held_out": held_out, **settings.__dict__}
    run_id = _log_mlflow(tracking_uri, output_dir, experiment, f"train-{filter_name}", params, metrics, {})
    click.echo(json.dumps(metrics, indent=1))
    click.echo(f"saved to {out} (mlflow run {run_id}); use it with --filter {filter_name} --filter-model {out}")


def _held_out_report(filter_name: str, factory, out: str, data: tuple[str, ...], held_out: float, per_class: int,
                     max_length: int, seed: int) -> dict | None:
    """Score the trained filter on the held-out split and record the metrics in its card (None: no such split)."""
    try:
        samples = labelled_set([DataSpec.parse(d) for d in data], "test", held_out, per_class, seed)
    except ValueError as exc:
        click.echo(f"held-out check skipped ({exc}); the card records no held-out recall", err=True)
        return None
    options = {"model": out, **({"max_length": max_length} if filter_name == "lg3" else {})}
    try:
        plugin = plugin_registry.instantiate("filter", filter_name, options)
        verdict = plugin.pre_local_train(client_id=0, samples=samples, server_round=0)
    except (plugin_registry.PluginError, ModelLoadError, ValueError) as exc:
        fail(f"held-out check of {out}: {exc}")
    report = {**detection_report([bool(s.is_harmful) for s in samples], [not k for k in verdict.keep]).as_metrics(),
              "threshold": float(plugin.threshold), "data": ",".join(data), "split": "test", "held_out": held_out}
    card = getattr(factory, "card_file", None)
    if card:
        record_held_out(Path(out) / card, report)
    click.echo(f"held-out ({int(report['n'])} samples): accuracy {report['accuracy']:.3f} precision "
               f"{report['precision']:.3f} recall {report['recall']:.3f}")
    return report


@command.command("eval")
@click.option("--filter", "filter_name", default="lg3", show_default=True, help="Filter plugin to evaluate.")
@click.option("--filter-model", "models", multiple=True,
              help="Filter model (e.g. smollm2-135m, a trained DIR); repeat for one table row each.")
@click.option("--filter-opt", multiple=True, metavar="KEY=VALUE", help="Option for the filter plugin.")
@labelled_data_option
@held_out_option
@click.option("--split", type=click.Choice(SPLITS), default="test", show_default=True)
@click.option("--max-per-class", type=int, help="Cap on safe and on unsafe evaluation samples (balanced).")
@click.option("--categories", is_flag=True, help="lg3: also generate and count the violated S-categories.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--experiment", default="filter-eval", show_default=True)
@_with(tracking_options)
def evaluate(filter_name, models, filter_opt, data, held_out, split, max_per_class, categories, seed, experiment,
             tracking_uri, output_dir) -> None:
    """Accuracy, precision, recall, Hmean and ROC AUC of unsafe detection on a labelled split, with 95 % intervals
    (the paper's Table 2)."""
    samples = _labelled(data, split, held_out, max_per_class, seed)
    options = parse_options(filter_opt, "--filter-opt")
    rows = []
    for model in models or (None,):
        row_options = {**options, **({"model": model} if model else {})}
        name = f"{filter_name}:{model}" if model else filter_name
        try:
            plugin = plugin_registry.instantiate("filter", filter_name, row_options)
            started = time.perf_counter()
            verdict = plugin.pre_local_train(client_id=0, samples=samples, server_round=0)
            scores = plugin.scores(samples) if callable(getattr(plugin, "scores", None)) else None  # cached
        except (plugin_registry.PluginError, ModelLoadError, ValueError) as exc:
            fail(f"{name}: {exc}")
        seconds = time.perf_counter() - started
        metrics = {**detection_metrics([bool(s.is_harmful) for s in samples], [not k for k in verdict.keep], scores),
                   "samples_per_second": len(samples) / seconds}
        text = {"table.txt": format_table([(name, metrics)])}
        if categories and hasattr(plugin, "scorer"):
            counts: dict[str, int] = {}
            for _, codes in plugin.scorer.categories(samples):
                for code in codes:
                    counts[code] = counts.get(code, 0) + 1
            text["categories.json"] = json.dumps(counts, indent=1)
            click.echo(f"{name} categories: {counts}")
        params = {"filter": filter_name, "model": model, "data": ",".join(data), "split": split,
                  "held_out": held_out, "options": json.dumps(options)}
        _log_mlflow(tracking_uri, output_dir, experiment, name, params, metrics, text)
        rows.append((name, metrics))
    click.echo(format_table(rows))
