"""`harness leaderboard`: build a board's md, csv and html from the runs in an MLflow store."""

from __future__ import annotations

from pathlib import Path

import click

from harness.cli.common import fail
from harness.config import RunConfig
from harness.leaderboard import BoardError, load_board, write_leaderboard
from harness.leaderboard.tables import DEFAULT_MLFLOW_UI
from harness.tracking import env_experiment, resolve_tracking_uri


@click.command("leaderboard")
@click.option("--board", default="default", show_default=True,
              help="Board YAML file, or a board name looked up in ./leaderboards and the checkout's leaderboards/.")
@click.option("--tracking-uri", help="MLflow tracking URI (default: $MLFLOW_TRACKING_URI, else the sqlite store "
              "`harness run` writes).")
@click.option("--experiment", "experiments", multiple=True,
              help="Read these experiments instead of the board's (default: $MLFLOW_EXPERIMENT_NAME if set).")
@click.option("--where", "extra_filter", default="", metavar="MLFLOW_SEARCH",
              help="Extra MLflow search filter, and-ed with the board's (e.g. \"params.`federation.seed` = '0'\").")
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False), help="Output directory.")
@click.option("--mlflow-ui", default=DEFAULT_MLFLOW_UI, show_default=True, help="Base URL of the run links.")
@click.option("--screenshot", is_flag=True, help="Also render leaderboard.png in headless Chromium.")
def command(board, tracking_uri, experiments, extra_filter, out_dir, mlflow_ui, screenshot) -> None:
    """Read finished runs from MLflow and write leaderboard.md, leaderboard.csv, leaderboard.html and plots/*.svg."""
    try:
        env = env_experiment()
        spec = load_board(board).narrowed(tuple(experiments) or ((env,) if env else ()), extra_filter)
        written = write_leaderboard(spec, resolve_tracking_uri(tracking_uri, RunConfig.output_dir), out_dir, mlflow_ui)
    except BoardError as exc:
        fail(str(exc))
    used = sum(len(r.runs) for r in written.rows)
    click.echo(f"{len(written.rows)} rows (one per setting) from {written.runs} finished runs"
               + (f" ({written.runs - used} older re-runs of a seed replaced by newer ones)" if written.runs > used else ""))
    for path in (written.markdown, written.csv, written.html, *written.plots):
        click.echo(str(path))
    if screenshot:
        from harness.leaderboard.browser import BrowserError, HeadlessPage

        try:
            with HeadlessPage(written.html) as page:
                shot = page.screenshot(Path(out_dir) / "leaderboard.png")
                errors = page.errors
        except BrowserError as exc:
            fail(f"screenshot: {exc}", 1)
        click.echo(str(shot))
        for error in errors:
            click.echo(f"warning: page console error: {error}", err=True)
