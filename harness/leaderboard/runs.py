"""Reading a board's runs from MLflow with ``search_runs``: finished runs only, with the histories the board needs."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from harness.leaderboard.board import Board, BoardError
from harness.leaderboard.items import has_items

if TYPE_CHECKING:  # mlflow loads when a board is read, not for `harness leaderboard --help`
    from mlflow.tracking import MlflowClient

FINISHED = "FINISHED"


@dataclass
class RunRecord:
    """One finished MLflow run as the board sees it."""

    run_id: str
    experiment_id: str
    name: str
    start_time: int
    tags: dict[str, str]
    params: dict[str, str]
    latest: dict[str, float]  # each metric's value at its last step
    history: dict[str, list[tuple[int, float]]] = field(default_factory=dict)  # metric -> [(round, value)]

    def field(self, key: str) -> str | None:
        """A 'tags.NAME' or 'params.NAME' value, None when the run lacks it."""
        kind, _, name = key.partition(".")
        return (self.tags if kind == "tags" else self.params).get(name)


def history_metrics(board: Board) -> set[str]:
    """Metrics whose per-round values the board needs (round plots, columns not reduced to 'last', item data)."""
    needed = set(board.round_plots)
    for col in board.columns:
        if col.reduce != "last" or col.combine == "minus":  # minus pairs its metrics round by round
            needed.update(col.metrics)
        elif col.combine in ("metric", "balanced"):  # the last round names the artifact with the per-item scores
            needed.update(m for m in col.metrics if has_items(m))
    return needed


def _experiment_ids(client: MlflowClient, board: Board) -> list[str]:
    ids, missing = [], []
    for name in board.experiments:
        exp = client.get_experiment_by_name(name)
        (ids.append(exp.experiment_id) if exp is not None else missing.append(name))
    if not ids:
        known = ", ".join(e.name for e in client.search_experiments()) or "(none)"
        raise BoardError(f"board {board.name}: no experiment named {', '.join(missing)} in this store; it has: {known}")
    return ids


def fetch_runs(client: MlflowClient, board: Board) -> list[RunRecord]:
    """Every FINISHED run of the board's experiments that matches its filter (failed and running runs are left out)."""
    from mlflow.exceptions import MlflowException

    status = f"attributes.status = '{FINISHED}'"
    query = f"{status} and {board.filter}" if board.filter else status  # MLflow has no parentheses
    ids = _experiment_ids(client, board)
    records, token = [], None
    while True:
        try:
            page = client.search_runs(ids, filter_string=query, max_results=1000, page_token=token)
        except MlflowException as exc:
            raise BoardError(f"board {board.name}: MLflow rejected the filter {board.filter!r}: {exc.message}") from exc
        records += [_record(run) for run in page if run.info.status == FINISHED]
        token = page.token
        if not token:
            break
    wanted = history_metrics(board)
    for record in records:
        for key in wanted & set(record.latest):
            record.history[key] = [(m.step, m.value) for m in client.get_metric_history(record.run_id, key)]
    return records


def _record(run) -> RunRecord:
    return RunRecord(
        run_id=run.info.run_id,
        experiment_id=run.info.experiment_id,
        name=run.info.run_name or run.info.run_id,
        start_time=run.info.start_time or 0,
        tags=dict(run.data.tags),
        params=dict(run.data.params),
        latest=dict(run.data.metrics),
    )
