"""The `harness` command line: ``main`` and its subcommands, one module each, imported only when invoked.

Light on purpose: ``harness --help`` imports this package's ``common`` module, click and the config schema only.
"""

from __future__ import annotations

import logging
import os

import click

from harness.cli.common import LazyGroup

# Subcommand name -> ("module:attr", the first paragraph of its help, which `harness --help` shows;
# tests/test_cli_startup.py checks that the two agree).
COMMANDS: dict[str, tuple[str, str]] = {
    "cai": ("harness.cli.cai:command", "Constitutional AI: red/critique/revision data for the cai* alignment plugins."),
    "data": ("harness.cli.data:command", "Data sets: disjoint splits of a labelled source for clients, the guard and CAI."),
    "eval": ("harness.cli.eval:command",
             "Evaluate a model (optionally with a LoRA adapter) on eval plugins and log it as an MLflow run."),
    "filter": ("harness.cli.filter:command", "Train and evaluate safety filters (pre_local_train plugins)."),
    "leaderboard": ("harness.cli.leaderboard:command",
                    "Read finished runs from MLflow and write leaderboard.md, leaderboard.csv, leaderboard.html and plots/*.svg."),
    "plugin": ("harness.cli.plugin:command", "Write a new plugin package (`harness plugins` lists the installed ones)."),
    "plugins": ("harness.cli.plugins:command", "List every installed plugin: kind, name, version and source package."),
    "run": ("harness.cli.run:command", "Run one federated fine-tuning job and log it to MLflow."),
    "safety-tune": ("harness.cli.safety:command",
                    "Safety-tune BASE with the harness's LoRA loop (recipe: harness/safe_base/recipe.py, docs/safe-base.md)."),
    "suite": ("harness.suite:command",
              "Run the paper's tables (resumable: finished runs are reused) and build their leaderboard."),
}


@click.group(cls=LazyGroup, lazy=COMMANDS)
@click.version_option(package_name="fedllm-harness", prog_name="harness")
@click.option("-v", "--verbose", is_flag=True, help="Log at INFO level (also accepted after the subcommand).")
def main(verbose: bool) -> None:
    """fedllm-harness: benchmark responsible federated LLM fine-tuning."""
    from harness.redaction import redact_logs

    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    redact_logs()  # no secret in a log line (a plugin may log what a judge answered)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
