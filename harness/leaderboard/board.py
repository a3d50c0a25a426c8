"""Board definitions: which MLflow runs, which columns, how to sort, what to plot (read from small YAML files)."""

from __future__ import annotations

import dataclasses
import json
import logging
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

import harness
from harness.config import strict_load

REDUCERS = ("last", "mean", "min", "max", "sum")
COMBINERS = ("metric", "hmean", "sum", "minus", "balanced")
BETTER = ("higher", "lower", None)
DEFAULT_METHOD = ("tags.harness.filter", "tags.harness.agg", "tags.harness.align")

log = logging.getLogger(__name__)


class BoardError(ValueError):
    """A board file is missing or malformed; the message names the file and the key."""


@dataclass(frozen=True)
class Column:
    """One leaderboard column: a metric (or a combination of metrics) reduced over rounds, then over seeds."""

    name: str
    metrics: tuple[str, ...]
    # metric: the one metric; hmean / sum: of all metrics; minus: the first less the rest; balanced: [harmful
    # requests refused, benign requests refused] -> the balanced accuracy of "refuse iff harmful"
    # (harness.evals.discrimination), per-item over both sets
    combine: str = "metric"
    reduce: str = "last"  # over the rounds of one run: last | mean | min | max | sum
    better: str | None = None  # higher | lower | None (no arrow)
    format: str = ".4g"

    @property
    def header(self) -> str:
        arrow = {"higher": " ↑", "lower": " ↓"}.get(self.better or "", "")
        return self.name + arrow


@dataclass(frozen=True)
class Scatter:
    x: str  # column names
    y: str


@dataclass(frozen=True)
class Baseline:
    """The row(s) other rows are compared with: rows whose fields equal ``match`` (None: the run lacks the field);
    with ``same``, each row is compared with the baseline row that agrees with it on those fields."""

    name: str
    match: tuple[tuple[str, str | None], ...]
    same: tuple[str, ...] = ()


@dataclass(frozen=True)
class Board:
    name: str
    experiments: tuple[str, ...]
    columns: tuple[Column, ...]
    title: str = ""
    filter: str = ""  # an MLflow search_runs filter string
    method: tuple[str, ...] = DEFAULT_METHOD  # run fields ("tags.X" / "params.X") that name a method
    seed: str = "tags.harness.seed"
    sort_column: str | None = None
    sort_descending: bool = True
    round_plots: tuple[str, ...] = ()  # metrics plotted against the round, one line per method
    scatter: Scatter | None = None  # safety vs helpfulness, one point per method
    notes: str = ""
    pins: tuple[tuple[str, str | None], ...] = ()  # (field, value): every run has value; None: all runs agree
    baselines: tuple[Baseline, ...] = ()
    headlines: bool = False  # also a column per headline metric the runs' eval plugins declare (with_headlines)

    def column(self, name: str) -> Column:
        for col in self.columns:
            if col.name == name:
                return col
        raise BoardError(f"board {self.name}: no column named {name!r} (columns: {', '.join(self.names)})")

    @property
    def names(self) -> list[str]:
        return [c.name for c in self.columns]

    def with_headlines(self, tags: Iterable[str | None]) -> Board:
        """This board plus a column per metric the runs' eval plugins declare as headline for the board (``tags``:
        each run's ``harness.headline`` tag, :func:`harness.tracking.headline_tag`) that no column reads yet."""
        shown = {m for col in self.columns for m in col.metrics}
        names = set(self.names)
        added = []
        for tag in tags:
            try:
                declared = json.loads(tag or "[]")
                found = [(d["metric"], d["label"], d["better"] or None, d["format"]) for d in declared if d["board"]]
            except (ValueError, TypeError, KeyError):
                log.warning("board %s: ignoring a malformed harness.headline tag %r", self.name, tag)
                continue
            for metric, label, better, fmt in found:
                if metric not in shown:
                    shown.add(metric)
                    name = label if label not in names else f"{label} ({metric})"
                    names.add(name)
                    added.append(Column(name, (metric,), better=better, format=fmt))
        return dataclasses.replace(self, columns=self.columns + tuple(added)) if added else self

    def narrowed(self, experiments: tuple[str, ...] = (), extra_filter: str = "") -> Board:
        """This board reading other experiments and/or with one more filter clause (and-ed)."""
        clauses = [c for c in (self.filter, extra_filter) if c]
        return dataclasses.replace(
            self, experiments=tuple(experiments) or self.experiments, filter=" and ".join(clauses)
        )


def _take(data: dict[str, Any], key: str, kind: type | tuple[type, ...], where: str, default: Any = None) -> Any:
    value = data.pop(key, default)
    if value is not default and not isinstance(value, kind):
        expected = kind.__name__ if isinstance(kind, type) else " or ".join(k.__name__ for k in kind)
        raise BoardError(f"{where}: {key} must be {expected}, got {type(value).__name__} {value!r}")
    return value


def _no_extra(data: dict[str, Any], where: str, known: str) -> None:
    if data:
        raise BoardError(f"{where}: unknown key {next(iter(data))!r} (known keys: {known})")


def _column(raw: Any, where: str) -> Column:
    if not isinstance(raw, dict):
        raise BoardError(f"{where}: a column must be a mapping, got {raw!r}")
    data = dict(raw)
    name = _take(data, "name", str, where)
    if not name:
        raise BoardError(f"{where}: a column needs a name")
    where = f"{where} ({name})"
    given = [k for k in COMBINERS if k in data]
    if len(given) != 1:
        raise BoardError(f"{where}: give exactly one of metric: NAME, hmean: [A, B], sum: [A, B], minus: [A, B] or "
                         "balanced: [HARMFUL_REFUSED, BENIGN_REFUSED]")
    combine = given[0]
    metrics = data.pop(combine)
    metrics = [metrics] if combine == "metric" else metrics
    if not isinstance(metrics, list) or not metrics or not all(isinstance(m, str) and m for m in metrics):
        raise BoardError(f"{where}: {combine} must name {'a metric' if combine == 'metric' else 'a list of metrics'}")
    reduce = _take(data, "reduce", str, where, "last")
    better = _take(data, "better", str, where)
    fmt = _take(data, "format", str, where, ".4g")
    if combine == "minus" and len(metrics) < 2:
        raise BoardError(f"{where}: minus needs a metric and at least one to subtract from it")
    if combine == "balanced" and len(metrics) != 2:
        raise BoardError(f"{where}: balanced needs two metrics: the share of harmful requests refused, then the "
                         "share of benign requests refused")
    _no_extra(data, where, "name, metric | hmean | sum | minus | balanced, reduce, better, format")
    if reduce not in REDUCERS:
        raise BoardError(f"{where}: reduce must be one of {', '.join(REDUCERS)}, got {reduce!r}")
    if better not in BETTER:
        raise BoardError(f"{where}: better must be 'higher' or 'lower', got {better!r}")
    try:
        format(1.5, fmt)
    except ValueError as exc:
        raise BoardError(f"{where}: format {fmt!r} is not a Python number format ({exc})") from exc
    return Column(name, tuple(metrics), combine, reduce, better, fmt)


def parse_board(data: Any, source: str) -> Board:
    """Build a :class:`Board` from a parsed YAML mapping; ``source`` names it in errors."""
    if not isinstance(data, dict):
        raise BoardError(f"{source}: top level must be a mapping, got {type(data).__name__}")
    data = dict(data)
    name = _take(data, "name", str, source)
    experiments = _take(data, "experiments", list, source)
    raw_columns = _take(data, "columns", list, source)
    if not name or not experiments or not raw_columns:
        raise BoardError(f"{source}: name, experiments (a list) and columns (a list) are required")
    columns = tuple(_column(c, f"{source}: columns[{i}]") for i, c in enumerate(raw_columns))
    if len({c.name for c in columns}) != len(columns):
        raise BoardError(f"{source}: column names must be unique")
    sort = _take(data, "sort", dict, source, {})
    plots = _take(data, "plots", dict, source, {})
    method = _take(data, "method", list, source, list(DEFAULT_METHOD))
    for key in method + [data.get("seed", "tags.harness.seed")]:
        if not isinstance(key, str) or not key.startswith(("tags.", "params.")):
            raise BoardError(f"{source}: method and seed entries must be 'tags.NAME' or 'params.NAME', got {key!r}")
    board = Board(
        name=name,
        experiments=tuple(str(e) for e in experiments),
        columns=columns,
        title=_take(data, "title", str, source, ""),
        filter=_take(data, "filter", str, source, ""),
        method=tuple(method),
        seed=_take(data, "seed", str, source, "tags.harness.seed"),
        sort_column=_take(sort, "column", str, f"{source}: sort"),
        sort_descending=_take(sort, "order", str, f"{source}: sort", "descending") == "descending",
        round_plots=tuple(_take(plots, "rounds", list, f"{source}: plots", [])),
        scatter=_scatter(_take(plots, "scatter", dict, f"{source}: plots"), source),
        notes=_take(data, "notes", str, source, ""),
        pins=_pins(_take(data, "pin", (list, dict), source, []), source),
        baselines=_baselines(data.pop("baseline", None), data.pop("baselines", None), source),
        headlines=_take(data, "headlines", bool, source, False),
    )
    _no_extra(sort, f"{source}: sort", "column, order")
    _no_extra(plots, f"{source}: plots", "rounds, scatter")
    _no_extra(data, source, "name, title, experiments, filter, method, seed, columns, sort, plots, notes, pin, "
              "baseline, baselines, headlines")
    for referenced in [board.sort_column] + ([board.scatter.x, board.scatter.y] if board.scatter else []):
        if referenced is not None:
            board.column(referenced)
    return board


def run_field(key: str) -> str:
    """'tags.X' and 'params.X' as given; a bare config key ('model.name') means 'params.model.name'."""
    return key if key.startswith(("tags.", "params.")) else f"params.{key}"


def _scalar(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, bool):
        return str(value)  # as MLflow stores a logged Python bool
    return str(value)


def _pins(raw: list | dict, source: str) -> tuple[tuple[str, str | None], ...]:
    items = raw.items() if isinstance(raw, dict) else ((key, None) for key in raw)
    pins = []
    for key, value in items:
        if not isinstance(key, str) or not key or isinstance(value, (list, dict)):
            raise BoardError(f"{source}: pin must list fields (model.name, tags.X, params.X) or map them to values")
        pins.append((run_field(key), _scalar(value)))
    return tuple(pins)


def _baselines(single: Any, several: Any, source: str) -> tuple[Baseline, ...]:
    if single is not None and several is not None:
        raise BoardError(f"{source}: give baseline or baselines, not both")
    raw = [single] if single is not None else several or []
    if not isinstance(raw, list):
        raise BoardError(f"{source}: baselines must be a list")
    out = []
    for i, entry in enumerate(raw):
        where = f"{source}: baselines[{i}]"
        if not isinstance(entry, dict):
            raise BoardError(f"{where}: a baseline must be a mapping with name, match and optionally same")
        data = dict(entry)
        name = _take(data, "name", str, where, "baseline")
        match = _take(data, "match", dict, where)
        same = _take(data, "same", list, where, [])
        _no_extra(data, where, "name, match, same")
        if not match:
            raise BoardError(f"{where}: match must map fields to the baseline's values")
        out.append(Baseline(name, tuple((run_field(k), _scalar(v)) for k, v in match.items()),
                            tuple(run_field(k) for k in same)))
    if len({b.name for b in out}) != len(out):
        raise BoardError(f"{source}: baseline names must be unique")
    return tuple(out)


def _scatter(raw: dict[str, Any] | None, source: str) -> Scatter | None:
    if raw is None:
        return None
    data = dict(raw)
    x, y = _take(data, "x", str, f"{source}: plots.scatter"), _take(data, "y", str, f"{source}: plots.scatter")
    _no_extra(data, f"{source}: plots.scatter", "x, y")
    if not x or not y:
        raise BoardError(f"{source}: plots.scatter needs x and y column names")
    return Scatter(x, y)


def board_dirs() -> list[Path]:
    """Where board names are looked up: ./leaderboards, then the shipped boards: the package data
    ``harness/boards`` of an installed wheel, the checkout's leaderboards/ otherwise (the same files)."""
    package = Path(harness.__file__).resolve().parent
    shipped = package / "boards" if (package / "boards").is_dir() else package.parent / "leaderboards"
    return [Path.cwd() / "leaderboards", shipped]


def find_board(name_or_path: str) -> Path:
    """A board file given its path or its name (``paper-table1`` -> leaderboards/paper-table1.yaml)."""
    path = Path(name_or_path)
    if path.suffix in (".yaml", ".yml"):
        if not path.is_file():
            raise BoardError(f"board file {path} does not exist")
        return path
    tried = [d / f"{name_or_path}.yaml" for d in board_dirs()]
    for candidate in tried:
        if candidate.is_file():
            return candidate
    raise BoardError(f"no board named {name_or_path!r}; looked for {', '.join(map(str, tried))}")


def load_board(name_or_path: str) -> Board:
    path = find_board(name_or_path)
    try:
        data = strict_load(path.read_text(), str(path))
    except yaml.YAMLError as exc:
        raise BoardError(f"board file {path} is not valid YAML: {exc}") from exc
    return parse_board(data, str(path))

