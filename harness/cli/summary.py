"""What `harness run` prints when a run ends: the safety headline first (harmful refused, benign refused, their
discrimination score), then what each method did, the run's identity, the metrics the evals declare as headline
(:class:`harness.types.Headline`), and where to look next. Every final metric is listed with ``-v``."""

from __future__ import annotations

import logging

import click

from harness.config import RunConfig

Rows = list[tuple[str, str]]

log = logging.getLogger(__name__)

# Method metrics that say how long or how big, not what the method did (they are on the board and in MLflow).
COST_SUFFIXES = ("seconds", "_bytes", "_source")
FILTER_COUNTS = ("filter/kept", "filter/dropped")


def _values(final: dict[str, float], prefix: str) -> str:
    shown = [(k.removeprefix(prefix), v) for k, v in sorted(final.items())
             if k.startswith(prefix) and not k.endswith(COST_SUFFIXES)]
    return ", ".join(f"{k} {v:.4g}" for k, v in shown)


def run_totals(uri: str, run_id: str | None, keys: tuple[str, ...] = FILTER_COUNTS) -> dict[str, float]:
    """Each of ``keys`` summed over the run's rounds, from its MLflow history; empty when the store cannot say."""
    if run_id is None:
        return {}
    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient

    try:
        client = MlflowClient(uri)
        return {key: sum(m.value for m in client.get_metric_history(run_id, key)) for key in keys}
    except (MlflowException, OSError) as exc:
        log.debug("no metric history for run %s: %s", run_id, exc)
        return {}


def _filter_line(name: str, final: dict[str, float], totals: dict[str, float]) -> str:
    counts = totals if totals.get("filter/kept", 0) + totals.get("filter/dropped", 0) else final
    kept, dropped = int(counts.get("filter/kept", 0)), int(counts.get("filter/dropped", 0))
    when = " over the run" if counts is totals else " in the last round"
    if name == "none":
        return f"every client sample kept ({kept}{when})"
    line = f"dropped {dropped} of {kept + dropped} client samples{when}"
    quality = [f"{k} {final[f'filter/{k}']:.3f}" for k in ("precision", "recall") if f"filter/{k}" in final]
    return line + (f" (last round against the red labels: {', '.join(quality)})" if quality else "")


def method_rows(cfg: RunConfig, final: dict[str, float], totals: dict[str, float] | None = None) -> Rows:
    """One line per method of the run: the filter's drops over the run (``totals``, else its last round), the
    aggregator's and aligner's own last-round metrics (``agg/``, ``align/``) and a selected attack's (``attack/``)."""
    plugins = cfg.plugins
    rows = [("METHODS", "")]
    rows.append((f"filter {plugins.filter}", _filter_line(plugins.filter, final, totals or {})))
    rows.append((f"aggregator {plugins.agg}", _values(final, "agg/") or "-"))
    rows.append((f"aligner {plugins.align}", _values(final, "align/") or "none"))
    if plugins.attack != "none":
        rows.append((f"attack {plugins.attack}", _values(final, "attack/") or "-"))
    return rows


def run_rows(cfg: RunConfig, summary, run_id: str | None) -> Rows:
    return [
        ("RUN", ""),
        ("status", summary.status),
        ("rounds", str(summary.rounds_completed)),
        ("wall time", f"{summary.wall_seconds:.1f} s"),
        ("plugins", f"filter={cfg.plugins.filter} agg={cfg.plugins.agg} align={cfg.plugins.align}"
                    + (f" attack={cfg.plugins.attack}" if cfg.plugins.attack != "none" else "")),
        ("mlflow run", run_id or "-"),
        ("adapter", str(summary.adapter_path)),
    ]


def next_lines(uri: str, run_id: str | None) -> list[str]:
    """How to see this run beside the others, and in the MLflow UI."""
    return ["next:",
            f"  harness leaderboard --tracking-uri {uri} --out board   # every run of the store, one row per method",
            f"  mlflow ui --backend-store-uri {uri} --host 127.0.0.1   # this run: {run_id or '-'}"]


def print_summary(cfg: RunConfig, summary, run_id: str | None, uri: str) -> None:
    from harness.evals.report import headline_rows, safety_rows  # numpy and the leaderboard: only at the end of a run
    from harness.registry import headlines

    final, pretrained = summary.final_metrics, summary.pretrained_metrics
    blocks = [headline_rows(final, pretrained), method_rows(cfg, final, run_totals(uri, run_id)),
              run_rows(cfg, summary, run_id), safety_rows(final, pretrained, headlines(cfg.plugins.evals))]
    if logging.getLogger().isEnabledFor(logging.INFO):
        blocks.append([("ALL FINAL METRICS", "")] + [(k, f"{v:.4g}") for k, v in sorted(final.items())])
    rows = [row for block in blocks for row in block]
    width = max(len(k) for k, _ in rows)
    rule = "-" * (width + 40)
    click.echo("\n" + rule)
    for i, block in enumerate(b for b in blocks if b):
        if i:
            click.echo("")
        for key, value in block:
            click.echo(f"{key:<{width}}  {value}".rstrip())
    if not logging.getLogger().isEnabledFor(logging.INFO):
        click.echo(f"\n({len(final)} final metrics: add -v to list them, or open the run in MLflow)")
    click.echo(rule)
    for line in next_lines(uri, run_id):
        click.echo(line)
