"""Per-item eval outputs of a run, read back from its MLflow artifacts (for intervals and paired tests).

An eval plugin stores its items at ``round_NNN/<file>`` of the round whose metric it logged:

* ``advbench/harmless_rate[_RULE]``, ``advbench/guard_harmless_rate``: ``advbench_responses.jsonl``, one 0/1 per
  goal (``refusal_RULE``; the headline rate uses the rule in ``plugins.eval_options.advbench.rule``, default
  :data:`harness.evals.refusal.HEADLINE_RULE`; ``guard_safe``).
* ``over_refusal/refusal_rate[_RULE]``: ``over_refusal_responses.jsonl``, one 0/1 per benign prompt (``refusal_RULE``;
  the headline uses ``plugins.eval_options.over-refusal.rule``, default ``strict``).
* ``hhh/SET/accuracy``: ``hhh_scores.jsonl``, per item the share of its two orders answered right (0, ½, 1).
* ``mtbench/score``: ``mtbench_judgments.jsonl``, one 1-10 rating per (question, turn) with a rating.

Items are keyed so that two runs' items pair up (AdvBench goal index, HHH set and index, MT-Bench question and
turn). The item mean must reproduce the logged metric; when it does not (or the file is absent), the run has no
item data for that metric and the board falls back to per-seed statistics.
"""

from __future__ import annotations

import json
import logging
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from harness.evals.refusal import HEADLINE_RULE

if TYPE_CHECKING:  # mlflow loads when a board is read, not for `harness leaderboard --help`
    from mlflow.tracking import MlflowClient

    from harness.leaderboard.runs import RunRecord

log = logging.getLogger(__name__)

Items = dict[str, float]  # item key -> score
TOLERANCE = 1e-6


def _refusals(metric: str, run: RunRecord, rows: list[dict]) -> Items | None:
    """AdvBench's harmless rates and over-refusal's refusal rates: one 0/1 per prompt."""
    eval_name = "advbench" if metric.startswith("advbench/") else "over-refusal"
    headline = "advbench/harmless_rate" if eval_name == "advbench" else "over_refusal/refusal_rate"
    if metric == "advbench/guard_harmless_rate":
        fields = ["guard_safe"]
    elif metric.startswith(headline + "_"):
        fields = [f"refusal_{metric.removeprefix(headline + '_')}"]
    else:  # the headline rate: the configured rule first, then any rule that reproduces the logged value
        rule = run.params.get(f"plugins.eval_options.{eval_name}.rule", HEADLINE_RULE)  # both evals' default
        fields = [f"refusal_{rule}"] + sorted({k for row in rows for k in row if k.startswith("refusal_")})
    for name in fields:
        if rows and all(name in row for row in rows):
            items = {str(i): float(bool(row[name])) for i, row in enumerate(rows)}
            if _reproduces(items, run, metric):
                return items
    return None


def _hhh(metric: str, run: RunRecord, rows: list[dict]) -> Items | None:
    name = metric.split("/")[1]
    items = {f"{name}:{row['index']}": sum(bool(o["right"]) for o in row["orders"]) / len(row["orders"])
             for row in rows if row.get("set") == name and row.get("orders")}
    return items if items and _reproduces(items, run, metric) else None


def _mtbench(metric: str, run: RunRecord, rows: list[dict]) -> Items | None:
    items = {f"{row['question_id']}:{row['turn']}": float(row["rating"]) for row in rows if row.get("rating") is not None}
    return items if items and _reproduces(items, run, metric) else None


def _reproduces(items: Items, run: RunRecord, metric: str) -> bool:
    logged = run.latest.get(metric)
    return logged is not None and abs(sum(items.values()) / len(items) - logged) <= TOLERANCE


def source(metric: str) -> tuple[str, Callable[[str, RunRecord, list[dict]], Items | None]] | None:
    """(artifact file, parser) of a metric that has per-item data, None for the others."""
    if metric.startswith(("advbench/harmless_rate", "advbench/guard_harmless_rate")):
        return "advbench_responses.jsonl", _refusals
    if metric.startswith("over_refusal/refusal_rate"):
        return "over_refusal_responses.jsonl", _refusals
    parts = metric.split("/")
    if len(parts) == 3 and parts[0] == "hhh" and parts[2] == "accuracy":
        return "hhh_scores.jsonl", _hhh
    if metric == "mtbench/score":
        return "mtbench_judgments.jsonl", _mtbench
    return None


def has_items(metric: str) -> bool:
    return source(metric) is not None


class ItemStore:
    """Reads (and caches) runs' per-item artifacts from an MLflow store."""

    def __init__(self, client: MlflowClient | None):
        self.client = client
        self._files: dict[tuple[str, str], list[dict] | None] = {}

    def rows(self, run: RunRecord, path: str) -> list[dict] | None:
        key = (run.run_id, path)
        if key not in self._files:
            self._files[key] = self._download(run.run_id, path)
        return self._files[key]

    def _download(self, run_id: str, path: str) -> list[dict] | None:
        from mlflow.exceptions import MlflowException

        if self.client is None:
            return None
        try:
            with tempfile.TemporaryDirectory(prefix="harness-board-") as tmp:
                local = Path(self.client.download_artifacts(run_id, path, tmp))
                return [json.loads(line) for line in local.read_text().splitlines() if line.strip()]
        except (MlflowException, OSError, ValueError) as exc:
            log.debug("run %s has no readable %s: %s", run_id, path, exc)
            return None

    def items(self, run: RunRecord, metric: str) -> Items | None:
        """The run's per-item scores behind ``metric`` at its last logged round, None when there are none."""
        found = source(metric)
        steps = [step for step, _ in run.history.get(metric, [])]
        if found is None or metric not in run.latest or not steps:
            return None
        artifact, parse = found
        rows = self.rows(run, f"round_{max(steps):03d}/{artifact}")
        return None if rows is None else parse(metric, run, rows)
