"""From runs to leaderboard rows: one row per setting (the whole resolved config except the seed), one value per
run and column, mean over seeds with a 95 % interval, and paired tests of each row against the board's baselines."""

from __future__ import annotations

import functools
import math
import statistics
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from harness.config import older_run_settings, param_text
from harness.evals.discrimination import balanced
from harness.leaderboard.board import Baseline, Board, BoardError, Column
from harness.leaderboard.items import Items
from harness.leaderboard.runs import RunRecord
from harness.leaderboard.stats import (
    Interval,
    PairedTest,
    balanced_newcombe,
    bootstrap_mean,
    mcnemar_exact,
    paired_bootstrap,
    rate_interval,
    stratified_mean,
    t_interval,
)

HARMFUL_STRATUM, BENIGN_STRATUM = "harmful", "benign"  # a balanced column's two sets of items
MISSING_FIELD = "default"  # how a method key the run does not have is shown
HARNESS_PARAM = "federation.rounds"  # in every run the harness logged (run and eval): its config is complete
# Params that say where a run is stored, what it derived or how it was started (eval.standalone: by `harness eval`,
# which eval.adapter already tells; plugins.hook_timeout_s: a time limit; a filter's shared_scores: where it found
# scores another run computed, harness.suite), not what it measured: never part of a row's setting.
IGNORED_PARAMS = ("federation.seed", "output_dir", "tracking.", "run.", "eval.standalone", "plugins.hook_timeout_s",
                  "plugins.filter_options.shared_scores")
EMPTY_MAPPING = "{}"  # a plugin's options when it has none: as if absent (set options are params of their own)
# Method tags and the config params they mirror (shown once, in the Method column, not again as a setting).
TAG_PARAMS = {"tags.harness.filter": "plugins.filter", "tags.harness.agg": "plugins.agg",
              "tags.harness.align": "plugins.align", "tags.harness.model": "model.name",
              "tags.harness.preset": "preset"}
# Tags that say which code ran; a row whose runs differ in them is flagged.
CODE_TAGS = ("harness.version", "harness.git_commit", "harness.git_dirty", "harness.python", "harness.torch",
             "harness.transformers", "harness.peft", "harness.trl")
PLUGIN_TAG = "harness.plugin."
SETTING_VALUE_WIDTH = 40

ItemLoader = Callable[[RunRecord, str], "Items | None"]


@dataclass(frozen=True)
class Cell:
    """A column's value for one row: mean and sample standard deviation (ddof=1) over n seeds, and a 95 % interval
    (None: too little data; see :mod:`harness.leaderboard.stats` for which interval)."""

    mean: float | None
    std: float | None  # None when fewer than two seeds have the value
    n: int
    interval: Interval | None = None


@dataclass
class MethodRow:
    """One leaderboard row: the runs of one setting (one per seed), its cells and its comparisons."""

    method: str
    key: tuple[str, ...]
    runs: list[RunRecord]  # one per seed, ordered by seed
    seeds: list[str]
    cells: dict[str, Cell]
    setting: dict[str, str] = field(default_factory=dict)  # the resolved config except the seed and paths
    superseded: int = 0  # older runs of a seed that the newest replaced
    shown_setting: str = ""  # the fields in which this row differs from the board's other rows
    items: dict[str, dict[str, Items]] = field(default_factory=dict)  # column -> seed -> per-item scores
    baseline_rows: dict[str, str | None] = field(default_factory=dict)  # baseline name -> its row's label
    paired: dict[str, dict[str, PairedTest]] = field(default_factory=dict)  # baseline name -> column -> test
    mixed_code: list[str] = field(default_factory=list)  # provenance tags whose values differ between its runs

    @property
    def label(self) -> str:
        """Method and, where rows share a method, the setting that tells them apart."""
        return f"{self.method} ({self.shown_setting})" if self.shown_setting else self.method


def seed_stats(values: list[float]) -> Cell:
    """Mean and sample standard deviation of per-seed values (NaNs dropped); std needs at least two."""
    finite = [v for v in values if not math.isnan(v)]
    if not finite:
        return Cell(None, None, 0)
    std = statistics.stdev(finite) if len(finite) > 1 else None
    return Cell(statistics.fmean(finite), std, len(finite))


def _binary(values) -> bool:
    return all(v in (0.0, 1.0) for v in values)


def _unit(values) -> bool:
    """Whether every score lies in [0, 1] (a rate's items: refusals, HHH's share of two orders right)."""
    return all(0.0 <= v <= 1.0 for v in values)


def strata(keys: Iterable[str]) -> list[str]:
    """The stratum of each item key of a balanced column (``harmful`` or ``benign``: the key's prefix)."""
    return [key.split(":", 1)[0] for key in keys]


def _balanced_interval(items: list[Items]) -> Interval:
    """A balanced column's interval: Newcombe's for one seed (as the run summary shows it) and for 0/1 items that
    are all equal within each set, pooled over seeds (a bootstrap would claim width 0); else a bootstrap over seeds
    and items within each set."""
    pooled: dict[str, list[float]] = {}
    for found in items:
        for key, value in found.items():
            pooled.setdefault(key.split(":", 1)[0], []).append(value)
    constant = all(len(set(v)) == 1 for v in pooled.values())
    if (len(items) == 1 or constant) and set(pooled) == {HARMFUL_STRATUM, BENIGN_STRATUM}:
        harmful, answered = pooled[HARMFUL_STRATUM], pooled[BENIGN_STRATUM]
        return balanced_newcombe(int(sum(harmful)), len(harmful), len(answered) - int(sum(answered)), len(answered))
    return bootstrap_mean([list(i.values()) for i in items], strata=[strata(i) for i in items])


def cell_stats(values: list[float], items: list[Items] | None = None, stratified: bool = False) -> Cell:
    """Mean over seeds with its 95 % interval: Wilson (:func:`rate_interval`, as the run summary shows it) for one
    seed of item scores in [0, 1] (and for such items that are all equal, pooled over seeds, where a bootstrap would
    claim width 0), a bootstrap over seeds and items for other per-item scores, else Student t over the per-seed
    values (None with one seed). ``stratified``: the items are a balanced column's (:func:`_balanced_interval`)."""
    cell = seed_stats(values)
    if cell.mean is None:
        return cell
    if items and len(items) == cell.n and stratified:
        return Cell(cell.mean, cell.std, cell.n, _balanced_interval(items))
    if items and len(items) == cell.n:
        pooled = [v for i in items for v in i.values()]
        if _unit(pooled) and (len(items) == 1 or len(set(pooled)) == 1):
            interval = rate_interval(statistics.fmean(pooled), len(pooled))  # a bootstrap of equal items: width 0
        else:
            interval = bootstrap_mean([list(i.values()) for i in items])
    else:
        interval = t_interval([v for v in values if not math.isnan(v)])
    return Cell(cell.mean, cell.std, cell.n, interval)


OVER_ROUNDS = {"last": lambda values: values[-1], "mean": statistics.fmean, "min": min, "max": max, "sum": math.fsum}
"""A column's ``reduce``: how a run's per-round values (in round order) become one value."""


def _reduce(run: RunRecord, metric: str, how: str) -> float | None:
    if how == "last":
        return run.latest.get(metric)
    if metric not in run.history:
        return None
    return OVER_ROUNDS[how]([v for _, v in sorted(run.history[metric])])


def _minus(run: RunRecord, column: Column) -> float | None:
    """Per round of the first metric, it less the others at that round (0 where one was not logged: no evals
    ran), reduced over those rounds. A subtrahend logged outside the first's rounds (evals of the pretrained
    model at step 0, before round 1) is not part of any round and is not subtracted."""
    first, *rest = column.metrics
    if first not in run.history:
        return None
    others = [dict(run.history.get(m, [])) for m in rest]
    per_round = [value - math.fsum(o.get(step, 0.0) for o in others) for step, value in sorted(run.history[first])]
    return OVER_ROUNDS[column.reduce](per_round)


def column_value(run: RunRecord, column: Column) -> float | None:
    """The run's value for a column, None if the run lacks any metric the column needs (for ``minus``: the first)."""
    if column.combine == "minus":
        return _minus(run, column)
    values = [_reduce(run, m, column.reduce) for m in column.metrics]
    if any(v is None for v in values):
        return None
    if column.combine == "hmean":
        return 0.0 if any(v <= 0 for v in values) else len(values) / math.fsum(1 / v for v in values)
    if column.combine == "sum":
        return math.fsum(values)
    if column.combine == "balanced":
        return balanced(*values)
    return values[0]


def item_backed(column: Column) -> bool:
    """Whether a column is one metric, or a balanced score, at its last round: the kinds per-item scores can stand
    behind."""
    return column.combine in ("metric", "balanced") and column.reduce == "last"



def column_items(run: RunRecord, column: Column, items: ItemLoader) -> Items | None:
    """The run's per-item scores behind an item-backed column. A balanced column's items are its two metrics'
    items, keyed ``harmful:KEY`` (1: refused) and ``benign:KEY`` (1: answered, not refused), so that the mean of
    the two sets' means is the column's value."""
    if column.combine == "metric":
        return items(run, column.metrics[0])
    harmful, benign = items(run, column.metrics[0]), items(run, column.metrics[1])
    if not harmful or not benign:
        return None
    return {**{f"{HARMFUL_STRATUM}:{k}": v for k, v in harmful.items()},
            **{f"{BENIGN_STRATUM}:{k}": 1.0 - v for k, v in benign.items()}}


def method_key(run: RunRecord, board: Board) -> tuple[str, ...]:
    return tuple(run.field(k) or MISSING_FIELD for k in board.method)


def setting_of(run: RunRecord, board: Board) -> dict[str, str]:
    """The run's resolved config (its params) without the seed, output and tracking paths, and derived counts; a
    harness run logged before a setting existed has the value it ran with (:func:`older_run_settings`), so runs of
    one setting from before and after a new setting are one row."""
    seed_param = board.seed.removeprefix("params.") if board.seed.startswith("params.") else None
    params = {**_older_run_params(), **run.params} if HARNESS_PARAM in run.params else run.params
    return {k: v for k, v in params.items()
            if not k.startswith(IGNORED_PARAMS) and k != seed_param and v != EMPTY_MAPPING}


@functools.cache
def _older_run_params() -> dict[str, str]:
    return {k: param_text(v) for k, v in older_run_settings().items()}


def _label(key: tuple[str, ...], runs: list[RunRecord]) -> str:
    """The method's known parts joined by ' / '; the run name when the run has none of them."""
    return " / ".join(part for part in key if part != MISSING_FIELD) or runs[0].name


def latest_per_seed(runs: list[RunRecord], board: Board) -> dict[str, RunRecord]:
    """Seed -> the most recently started run with that seed (a re-run replaces, never double-counts)."""
    chosen: dict[str, RunRecord] = {}
    for run in sorted(runs, key=lambda r: r.start_time):
        chosen[run.field(board.seed) or "?"] = run
    return chosen


def _seed_order(seed: str) -> tuple[int, int | str]:
    return (0, int(seed)) if seed.lstrip("-").isdigit() else (1, seed)


def check_pins(runs: list[RunRecord], board: Board) -> None:
    """Raise :class:`BoardError`, naming the field and two runs, if a run differs in a field the board pins."""
    for key, wanted in board.pins:
        shown = key.removeprefix("params.")
        first: RunRecord | None = None
        for run in runs:
            value = run.field(key)
            if wanted is not None and value != wanted:
                raise BoardError(f"board {board.name} pins {shown} = {wanted!r}, but run {run.name} ({run.run_id}) "
                                 f"has {shown} = {value!r}; leave it out with --where or change the pin")
            if first is None:
                first = run
            elif value != first.field(key):
                raise BoardError(f"board {board.name} pins {shown}: its runs must agree on it, but run {run.name} "
                                 f"({run.run_id}) has {shown} = {value!r} and run {first.name} ({first.run_id}) has "
                                 f"{first.field(key)!r}; leave one out with --where or change the pin")


def build_rows(runs: list[RunRecord], board: Board, items: ItemLoader | None = None) -> list[MethodRow]:
    """One row per setting (runs equal in everything but the seed), every column aggregated over seeds with its
    interval, rows sorted by the board's sort column, then the fields that tell rows apart, the code-version
    flags and the paired tests against the board's baselines."""
    check_pins(runs, board)
    groups: dict[tuple, list[RunRecord]] = {}
    for run in runs:
        key = (method_key(run, board), tuple(sorted(setting_of(run, board).items())))
        groups.setdefault(key, []).append(run)
    rows = []
    for (key, setting), members in groups.items():
        per_seed = latest_per_seed(members, board)
        seeds = sorted(per_seed, key=_seed_order)
        ordered = [per_seed[s] for s in seeds]
        row = MethodRow(_label(key, ordered), key, ordered, seeds, {}, dict(setting), len(members) - len(ordered))
        for col in board.columns:
            values = [column_value(r, col) for r in ordered]
            found: dict[str, Items] = {}
            if items is not None and item_backed(col):
                for seed, run, value in zip(seeds, ordered, values):
                    scores = column_items(run, col, items) if value is not None else None
                    if scores:
                        found[seed] = scores
            row.items[col.name] = found
            present = [v for v in values if v is not None]
            complete = len(found) == len(present)
            row.cells[col.name] = cell_stats(present, list(found.values()) if complete else None,
                                             col.combine == "balanced")
        row.mixed_code = mixed_code(ordered)
        rows.append(row)
    rows = sort_rows(rows, board)
    label_settings(rows, board)
    for baseline in board.baselines:
        compare(rows, baseline, board)
    return rows


def mixed_code(runs: list[RunRecord]) -> list[str]:
    """The provenance tags (versions, commit, plugin packages) whose values differ between ``runs``."""
    keys = set(CODE_TAGS) | {k for r in runs for k in r.tags if k.startswith(PLUGIN_TAG)}
    return sorted(k for k in keys if len({r.tags.get(k) for r in runs}) > 1)


def shown_fields(board: Board) -> set[str]:
    """Config params the Method column already shows."""
    fields = {k.removeprefix("params.") for k in board.method if k.startswith("params.")}
    return fields | {TAG_PARAMS[k] for k in board.method if k in TAG_PARAMS}


def varying_fields(rows: list[MethodRow], board: Board) -> list[str]:
    """Setting fields whose value is not the same in every row (a field a row lacks counts as a value)."""
    keys = sorted({k for r in rows for k in r.setting} - shown_fields(board))
    return [k for k in keys if len({r.setting.get(k) for r in rows}) > 1]


def _short(value: str) -> str:
    """``value`` cut to ``SETTING_VALUE_WIDTH``; a path keeps its end, where guards and files differ."""
    if len(value) <= SETTING_VALUE_WIDTH:
        return value
    if "/" in value:
        return "…" + value[len(value) - SETTING_VALUE_WIDTH + 1 :]
    return value[: SETTING_VALUE_WIDTH - 1] + "…"


def _unset_option(key: str, value: str) -> bool:
    """A plugin option a row does not set (it runs at the plugin's default): not shown."""
    return value == "-" and key.startswith("plugins.") and "_options." in key


def label_settings(rows: list[MethodRow], board: Board) -> None:
    """Each row's ``shown_setting``: 'key=value' for every field in which the board's rows differ (plugin options
    a row leaves at their defaults omitted; ``defaults`` when that leaves nothing)."""
    varying = varying_fields(rows, board)
    for row in rows:
        shown = [(k, row.setting.get(k, "-")) for k in varying]
        shown = [f"{k}={_short(v)}" for k, v in shown if not _unset_option(k, v)]
        row.shown_setting = ", ".join(shown) or ("defaults" if varying else "")


def _matches(row: MethodRow, fields: tuple[tuple[str, str | None], ...]) -> bool:
    return all(row.runs[0].field(k) == v for k, v in fields)


def baseline_for(row: MethodRow, rows: list[MethodRow], baseline: Baseline) -> MethodRow | None:
    """The baseline row to compare ``row`` with: it matches the baseline, agrees with ``row`` on ``same``, and of
    several such, differs from ``row`` in the fewest setting fields."""
    same = tuple((k, row.runs[0].field(k)) for k in baseline.same)
    candidates = [r for r in rows if _matches(r, baseline.match) and _matches(r, same)]
    if row in candidates:
        return row

    def distance(other: MethodRow) -> int:
        keys = set(row.setting) | set(other.setting)
        return sum(row.setting.get(k) != other.setting.get(k) for k in keys)

    return min(candidates, key=distance, default=None)


def _paired_runs(row: MethodRow, base: MethodRow) -> list[tuple[str, str]]:
    """(row seed, baseline seed) pairs: the same seed, or the baseline's only run (such as the pretrained model,
    evaluated once whatever its seed tag) for every seed."""
    if len(base.seeds) == 1:
        return [(s, base.seeds[0]) for s in row.seeds]
    return [(s, s) for s in row.seeds if s in base.seeds]


def _seed_pairs(row: MethodRow, base: MethodRow, column: Column) -> dict[str, dict[str, tuple[float, float]]]:
    """Row seed -> item -> (row score, baseline score) on the items both scored (:func:`_paired_runs`)."""
    mine, theirs = row.items.get(column.name, {}), base.items.get(column.name, {})
    out = {}
    for seed, base_seed in _paired_runs(row, base):
        keys = mine.get(seed, {}).keys() & theirs.get(base_seed, {}).keys()
        if keys:
            out[seed] = {k: (mine[seed][k], theirs[base_seed][k]) for k in keys}
    return out


def paired_test(row: MethodRow, base: MethodRow, column: Column) -> PairedTest | None:
    """Row minus baseline on the same items: McNemar for 0/1 items (pairs pooled over seeds), a paired bootstrap
    over items for scores (each item's difference averaged over seeds), the seed means' difference without a
    test where there are no per-item scores."""
    pairs: dict[str, list[tuple[float, float]]] = {}
    for items in _seed_pairs(row, base, column).values():
        for key, pair in items.items():
            pairs.setdefault(key, []).append(pair)
    if pairs:
        flat = [p for key in sorted(pairs) for p in pairs[key]]
        if _binary(v for p in flat for v in p) and column.combine != "balanced":
            return mcnemar_exact([a == 1.0 for a, _ in flat], [b == 1.0 for _, b in flat])
        per_item = [(statistics.fmean(a for a, _ in pairs[k]), statistics.fmean(b for _, b in pairs[k]))
                    for k in sorted(pairs)]
        layers = strata(sorted(pairs)) if column.combine == "balanced" else None
        test = paired_bootstrap([a for a, _ in per_item], [b for _, b in per_item], strata=layers)
        return PairedTest(test.diff, test.p, test.test, len(flat), test.low, test.high)
    a, b = row.cells[column.name].mean, base.cells[column.name].mean
    return None if a is None or b is None else PairedTest(a - b, None, "seeds", 0)


def seed_differences(row: MethodRow, base: MethodRow, column: Column) -> dict[str, float]:
    """Row seed -> the row's mean minus the baseline's on the items both scored in that seed (or its only run); a
    balanced column's mean is its two sets' means' mean."""
    return {seed: stratified_mean([a - b for a, b in items.values()],
                                  strata(items) if column.combine == "balanced" else None)
            for seed, items in _seed_pairs(row, base, column).items()}


def compare(rows: list[MethodRow], baseline: Baseline, board: Board) -> None:
    """Fill ``baseline_rows`` and ``paired`` of every row for one baseline."""
    for row in rows:
        base = baseline_for(row, rows, baseline)
        row.baseline_rows[baseline.name] = None if base is None else base.label
        if base is None or base is row:
            continue
        tests = {col.name: paired_test(row, base, col) for col in board.columns}
        row.paired[baseline.name] = {k: v for k, v in tests.items() if v is not None}


def sort_rows(rows: list[MethodRow], board: Board) -> list[MethodRow]:
    """By the sort column (missing values last), ties and unsorted boards by method name then setting."""
    rows = sorted(rows, key=lambda r: (r.method, sorted(r.setting.items())))
    if board.sort_column is None:
        return rows
    present = [r for r in rows if r.cells[board.sort_column].mean is not None]
    absent = [r for r in rows if r.cells[board.sort_column].mean is None]
    present.sort(key=lambda r: r.cells[board.sort_column].mean, reverse=board.sort_descending)
    return present + absent
