"""Suites: the paper's tables as lists of runs (rows × seeds), resumable, ending in a leaderboard.

A run is reused, not re-run, when the suite's experiment holds a FINISHED run with the same name
(suite, preset, row, seed), the same resolved config and, on a shipped safe base, the same adapter bytes. A run
that was stopped (left RUNNING, e.g. killed with the suite) continues from its newest checkpoint in the same MLflow
run; a failed or changed run is run again.
"""

from __future__ import annotations

import inspect
import json
import subprocess
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from harness import registry as plugin_registry
from harness import threat_suite as threat
from harness.cli.common import Choice, eval_option, fail, parse_options, split_names
from harness.config import PRESETS, ConfigError, RunConfig, load_config, older_run_settings
from harness.leaderboard import Leaderboard, load_board, write_leaderboard
from harness.leaderboard.aggregate import MethodRow
from harness.leaderboard.board import Board, BoardError
from harness.leaderboard.claims import claims_markdown
from harness.leaderboard.row_claims import row_claims_markdown
from harness.safe_base.load import adapter_digest
from harness.tracking import MODEL_DIGEST_TAG, _param_value, env_experiment, resolve_tracking_uri

if TYPE_CHECKING:  # mlflow loads when the suite runs, not for `harness suite --help`
    from mlflow.entities import Run
    from mlflow.tracking import MlflowClient

SHARED_SCORES = "shared_scores"  # the threshold filters' option: a directory of scores shared by the suite's runs
# where a run is stored, where its filter found scores another run had computed, or how long a hook may take
# (the default changed from none to 24 h in issue #35) does not change what it measures
TRAINING_PLUGIN_OPTIONS = ("plugins.filter_options", "plugins.agg_options", "plugins.align_options")
IGNORED_PARAMS = ("output_dir", "tracking.", f"plugins.filter_options.{SHARED_SCORES}", "plugins.hook_timeout_s")


class SuiteError(RuntimeError):
    """A suite cannot run as asked (missing plugins, unknown rows, a run that failed)."""

    def __init__(self, message: str, exit_code: int = 2):
        super().__init__(message)
        self.exit_code = exit_code


@dataclass(frozen=True)
class SuiteRow:
    """One row of a paper table: a plugin combination, or the pretrained model evaluated without training."""

    name: str
    filter: str = "none"
    agg: str = "fedavg"
    align: str = "none"
    filter_options: dict[str, Any] = field(default_factory=dict, hash=False)
    pretrained: bool = False  # evaluated once with `harness eval`, not trained, not per seed
    align_options: dict[str, Any] = field(default_factory=dict, hash=False)
    agg_options: dict[str, Any] = field(default_factory=dict, hash=False)
    settings: dict[str, Any] = field(default_factory=dict, hash=False)  # the row's own config (dotted keys)


@dataclass(frozen=True)
class Suite:
    name: str
    description: str
    board: str  # board name or file
    rows: tuple[SuiteRow, ...]
    evals: tuple[str, ...] = ()
    # (board, its rows, the run-name prefix of the suite's runs) -> claims.md
    claims: Callable[[Board, Sequence[MethodRow], str], str] | None = None
    settings: dict[str, Any] = field(default_factory=dict)  # config of every row, under --set and the rows' own


def paper_table1(filter_model: str | None = None) -> Suite:
    """Pretrained model, FL, FL + oracle filter (every red sample removed: the bound a filter can reach), FL+filter,
    FL+CAI, FL+CAI with its helpful mix, FL+filter+CAI, each FL row with FedAvg and with SCAFFOLD."""
    guard = {"model": filter_model} if filter_model else {}
    rows = [SuiteRow("pretrained", pretrained=True)]
    for agg in ("fedavg", "scaffold"):
        rows += [
            SuiteRow(f"fl-{agg}", "none", agg, "none"),
            SuiteRow(f"fl+oracle-{agg}", "oracle", agg, "none"),
            SuiteRow(f"fl+filter-{agg}", "lg3", agg, "none", guard),
            SuiteRow(f"fl+cai-{agg}", "none", agg, "cai50"),
            SuiteRow(f"fl+cai+helpful-{agg}", "none", agg, "cai50", align_options={"helpful": "demo"}),
            SuiteRow(f"fl+filter+cai-{agg}", "lg3", agg, "cai50", guard),
        ]
    # Safety in the claims is the refusal discrimination score; its two sides are then reported as costs/gains.
    costs = ("AdvBench", "Over-refusal", "HHH-438", "Held-out NLL", "Run time without evals (s)", "CAI time (s/round)")
    return Suite("paper-table1", paper_table1.__doc__, "paper-table1", tuple(rows), ("advbench", "hhh", "mtbench"),
                 lambda board, rows, _: claims_markdown(board, rows, "Refusal discrimination", costs))


def paper_table2(filter_model: str | None) -> Suite:
    """FL with the lg3 filter on its bare base backbone (forced) vs on the fine-tuned guard (``filter_model``)."""
    if not filter_model:
        raise SuiteError("paper-table2 compares the base filter with a fine-tuned one: pass --filter-model DIR "
                         "(a guard fine-tuned with `harness filter train`)")
    from harness.guard.card import GUARD_CARD  # loads torch: only when this suite is chosen

    card = Path(filter_model).expanduser() / GUARD_CARD
    base = json.loads(card.read_text()).get("base") if card.is_file() else None
    if not base:
        raise SuiteError(f"paper-table2 needs the guard's base model: {card} is missing or names no 'base'")
    rows = (  # the bare backbone's recall is near zero, so the run must force it (that is the comparison)
        SuiteRow("filter-base", "lg3", filter_options={"model": base, "force": True}),
        SuiteRow("filter-finetuned", "lg3", filter_options={"model": filter_model}),
    )
    return Suite("paper-table2", paper_table2.__doc__, "paper-table2", rows, ("advbench",))


def threats(filter_model: str | None = None) -> Suite:
    """Malicious clients (0, 2, 1 of 10; concentrated, skipping the filter) × defenses (none, filter, median,
    trimmed mean, Multi-Krum, norm bounding, DP-FedAvg weak and strong, CAI, filter + CAI), and the centralized
    baseline with and without the filter and CAI; 5 of 10 clients per round (harness.threat_suite)."""
    guard = {"model": filter_model} if filter_model else {}
    rows = [_row(f"{stem}-m{k}", spec, threat.attack(k))
            for k in threat.MALICIOUS for stem, spec in threat.defenses(guard).items()]
    for name in threat.CENTRALIZED:
        spec = threat.defenses(guard)[name.removeprefix("centralized+")] if "+" in name else {}
        rows.append(_row(name, spec, {"federation.centralized": True}))
    settings = {"federation.clients_per_round": threat.CLIENTS_PER_ROUND,
                "plugins.eval_schedule": {"heldout-nll": 1}}  # convergence curves: held-out NLL every round
    return Suite("threats", threats.__doc__, "threats", tuple(rows), settings=settings, claims=lambda board, rows, prefix:
                 row_claims_markdown(board, rows, prefix, threat.claims(), threat.SAFETY, threat.COSTS,
                                     threat.cost_bases()))


def _row(name: str, spec: dict[str, Any], settings: dict[str, Any]) -> SuiteRow:
    """A threats row: ``spec``'s SuiteRow fields, its own settings over ``settings``."""
    fields = {k: v for k, v in spec.items() if k != "settings"}
    return SuiteRow(name, **fields, settings={**settings, **spec.get("settings", {})})


@dataclass(frozen=True)
class SuiteRun:
    row: str
    seed: int
    run_id: str
    reused: bool


@dataclass
class SuiteReport:
    runs: list[SuiteRun]
    board: Leaderboard

    @property
    def new_runs(self) -> int:
        return sum(not r.reused for r in self.runs)


@dataclass(frozen=True)
class SuiteSettings:
    """How a suite runs: preset, seeds, overrides and where runs and the board go."""

    preset: str = "demo"
    seeds: int = 3
    overrides: dict[str, Any] = field(default_factory=dict)
    evals: tuple[str, ...] | None = None  # None: the suite's own evals
    rows: tuple[str, ...] = ()  # only these rows (default: all)
    output_dir: str = "harness-runs"
    tracking_uri: str | None = None
    experiment: str | None = None  # default: the suite's name
    board_dir: str | None = None
    progress: bool = False


def experiment_name(suite: Suite, settings: SuiteSettings) -> str:
    """--experiment, else $MLFLOW_EXPERIMENT_NAME, else the suite's name."""
    return settings.experiment or env_experiment() or suite.name


def run_name(suite: Suite, settings: SuiteSettings, row: SuiteRow, seed: int) -> str:
    return f"{suite.name}-{settings.preset}-{row.name}" + ("" if row.pretrained else f"-s{seed}")


def selected_rows(suite: Suite, wanted: tuple[str, ...]) -> list[SuiteRow]:
    names = [r.name for r in suite.rows]
    unknown = [w for w in wanted if w not in names]
    if unknown:
        raise SuiteError(f"suite {suite.name} has no row {', '.join(unknown)}; rows: {', '.join(names)}")
    return [r for r in suite.rows if not wanted or r.name in wanted]


def check_installed(rows: list[SuiteRow], evals: tuple[str, ...], suite: Suite) -> None:
    """One error naming every plugin (and the eval command) the selected rows need but this install lacks."""
    needed = {(kind, name) for r in rows if not r.pretrained for kind, name in
              (("filter", r.filter), ("agg", r.agg), ("align", r.align))}
    needed |= {("eval", e) for e in evals}
    problems = []
    for kind, name in sorted(needed):
        try:
            plugin_registry.check_selectable(kind, name)
        except plugin_registry.UnknownPluginError as exc:
            problems.append(str(exc))
    if any(r.pretrained for r in rows) and not eval_command_installed():
        problems.append("the pretrained row needs the `harness eval` command, which this installation lacks")
    if problems:
        raise SuiteError(f"suite {suite.name} cannot run: " + "; ".join(problems)
                         + ". Install the missing plugins or pick rows with --row.")


def eval_command_installed() -> bool:
    from harness.cli import main

    return "eval" in main.list_commands(None)


def row_config(suite: Suite, settings: SuiteSettings, row: SuiteRow, seed: int, uri: str, evals) -> RunConfig:
    overrides = {**suite.settings, **settings.overrides, **row.settings}
    if "plugins.eval_schedule" in suite.settings:  # the suite's schedule covers the evals this suite run has
        overrides["plugins.eval_schedule"] = {k: v for k, v in overrides["plugins.eval_schedule"].items() if k in evals}
    try:  # the options given for every row (--set plugins.KIND_options...), before the row's plugins are chosen
        given = load_config(settings.preset, overrides=overrides).plugins
    except ConfigError as exc:
        raise SuiteError(f"suite {suite.name}, row {row.name}: {exc}") from exc
    filter_options = row_options("filter", row.filter, given.filter_options, row.filter_options)
    if row.filter != "none" and plugin_registry.names_option("filter", row.filter, SHARED_SCORES):
        # per seed: a seed's rows score the same samples in the same batches, so a reused score is the one the run
        # would compute; a score from another seed's batches can differ in its last bits and move the threshold
        filter_options.setdefault(SHARED_SCORES, str(Path(settings.output_dir) / "filter-scores" / f"seed-{seed}"))
    overrides.update({
        "plugins.filter": row.filter, "plugins.agg": row.agg, "plugins.align": row.align,
        "plugins.filter_options": filter_options, "plugins.evals": list(evals),
        "plugins.align_options": row_options("align", row.align, given.align_options, row.align_options),
        "plugins.agg_options": row_options("agg", row.agg, given.agg_options, row.agg_options),
        "federation.seed": seed, "output_dir": settings.output_dir, "tracking.uri": uri,
        "tracking.experiment": experiment_name(suite, settings),
        "tracking.run_name": run_name(suite, settings, row, seed),
    })
    try:
        return load_config(settings.preset, overrides=overrides)
    except ConfigError as exc:
        raise SuiteError(f"suite {suite.name}, row {row.name}: {exc}") from exc


def row_options(kind: str, name: str, given: dict[str, Any], own: dict[str, Any]) -> dict[str, Any]:
    """A row's options for its ``kind`` plugin ``name``: the options given for every row (``--set
    plugins.KIND_options.KEY=V``) that this plugin takes, under the row's own. A row whose plugin takes an option
    gets it (``force=true`` reaches every lg3 row, ``data=DIR`` every CAI row); a row without one (``none``, or
    ``oracle``, which takes no options) does not, instead of failing on it or dropping it for every row."""
    if name == "none":
        return dict(own)
    params = inspect.signature(plugin_registry.load_factory(kind, name)).parameters
    any_key = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
    return {**{k: v for k, v in given.items() if any_key or k in params}, **own}


def _comparable(params: dict[str, Any]) -> dict[str, str]:
    return {k: _param_value(v) for k, v in params.items() if not k.startswith(IGNORED_PARAMS)}


def matching_run(client: MlflowClient, cfg: RunConfig, status: str) -> Run | None:
    """The newest run of ``status`` in the config's experiment with its run name and the same config."""
    exp = client.get_experiment_by_name(cfg.tracking.experiment)
    if exp is None:
        return None
    query = f"attributes.status = '{status}' and attributes.run_name = '{cfg.tracking.run_name}'"
    wanted = _comparable(cfg.flat_params())
    # A setting added to the config after a run was logged is absent from that run's params: the run
    # behaved as harness.config.older_run_settings says, so it matches a config with that value.
    defaults = _comparable(older_run_settings())
    digest = adapter_digest(cfg.model.name)  # a re-tuned safe base keeps its name: its runs are not these
    for run in client.search_runs([exp.experiment_id], filter_string=query, order_by=["attributes.start_time DESC"]):
        if run.data.tags.get(MODEL_DIGEST_TAG) != digest:
            continue
        if all(run.data.params.get(k, defaults.get(k)) == v for k, v in wanted.items()):
            return run
    return None


def finished_run(client: MlflowClient, cfg: RunConfig) -> str | None:
    """The id of a FINISHED run in the config's experiment with its run name and the same config."""
    run = matching_run(client, cfg, "FINISHED")
    return run.info.run_id if run else None


def stopped_run(client: MlflowClient, cfg: RunConfig) -> str | None:
    """The id of the newest run like :func:`finished_run`'s left RUNNING on the local engine (its process was
    stopped) with a checkpoint to continue from; a run still running elsewhere is refused by its run lock."""
    from harness.cli.job import has_checkpoint

    run = matching_run(client, cfg, "RUNNING")
    if run is None or run.data.tags.get("harness.engine", "local") != "local":
        return None
    directory = run.data.tags.get("harness.run_dir")
    return run.info.run_id if directory and has_checkpoint(Path(directory)) else None


def train_row(cfg: RunConfig, progress: bool, resume_id: str | None = None) -> str:
    """Run one federated job in this process, exactly as `harness run` does (or continue the stopped MLflow run
    ``resume_id`` from its newest checkpoint, as `harness run --resume` does); returns its MLflow run id."""
    from harness.runner import EngineOptions, prepare

    # a redone row keeps its name and directory
    options = EngineOptions(progress=progress, resume=resume_id is not None, reuse_run_dir=True)
    job = prepare(cfg, cfg.tracking.uri, options, run_id=resume_id)
    job.start()
    return job.tracker.run_id


def evaluate_pretrained(cfg: RunConfig, overrides: dict[str, Any]) -> None:
    """Row 1 of the paper: the pretrained model, evaluated by `harness eval` in a subprocess."""
    args = [sys.executable, "-m", "harness", "eval", "--model", cfg.model.name, "--preset", cfg.preset,
            "--tracking-uri", cfg.tracking.uri, "--experiment", cfg.tracking.experiment,
            "--run-name", cfg.tracking.run_name, "--output-dir", cfg.output_dir]
    for name in cfg.plugins.evals:
        args += ["--eval", name]
    if cfg.plugins.eval_limit is not None:
        args += ["--eval-limit", str(cfg.plugins.eval_limit)]
    for key, value in overrides.items():
        if not key.startswith(TRAINING_PLUGIN_OPTIONS):  # it runs no filter, aggregator or aligner
            args += ["--set", f"{key}={json.dumps(value)}"]
    done = subprocess.run(args, capture_output=True, text=True)
    if done.returncode != 0:
        raise SuiteError(f"`{' '.join(args[2:])}` failed (exit {done.returncode}):\n{done.stderr[-3000:]}")


def launch(row: SuiteRow, cfg: RunConfig, settings: SuiteSettings, client: MlflowClient) -> str:
    """Run one job (train a row, or evaluate the pretrained model) and return its MLflow run id."""
    if not row.pretrained:
        return train_row(cfg, settings.progress)
    evaluate_pretrained(cfg, settings.overrides)
    run_id = finished_run(client, cfg)
    if run_id is None:
        raise SuiteError("`harness eval` finished, but no FINISHED run with this name and config was logged")
    return run_id


def continue_stopped(row: SuiteRow, cfg: RunConfig, settings: SuiteSettings, client: MlflowClient, where: str,
                     echo: Callable[[str], None]) -> str | None:
    """Continue the row's stopped run from its newest checkpoint; None when there is none or it cannot go on
    (then the row is run again, and the stopped run's checkpoints are set aside)."""
    from harness.checkpoint import CheckpointError, RunDirError

    stopped = None if row.pretrained else stopped_run(client, cfg)
    if stopped is None:
        return None
    echo(f"{where}: continuing stopped run {stopped} from its newest checkpoint")
    try:
        return train_row(cfg, settings.progress, resume_id=stopped)
    except RunDirError as exc:  # in use by another process: running it again here would fail the same way
        raise SuiteError(str(exc)) from exc
    except CheckpointError as exc:
        echo(f"{where}: cannot continue run {stopped} ({exc}); running it again")
        return None


def preset_evals(preset: str) -> tuple[str, ...]:
    """The evals a preset names (its own sizes and options go with them); empty when it names none."""
    try:
        return tuple(load_config(preset).plugins.evals)
    except ConfigError as exc:
        raise SuiteError(str(exc)) from exc


def run_suite(suite: Suite, settings: SuiteSettings, echo: Callable[[str], None] = lambda _: None) -> SuiteReport:
    """Run (or reuse) every selected row for every seed, then write the suite's leaderboard."""
    if settings.seeds < 1:
        raise SuiteError("--seeds must be >= 1")
    rows = selected_rows(suite, settings.rows)
    evals = settings.evals or preset_evals(settings.preset) or suite.evals
    check_installed(rows, evals, suite)
    try:
        board = load_board(suite.board)
    except BoardError as exc:
        raise SuiteError(str(exc)) from exc
    from mlflow.tracking import MlflowClient

    uri = resolve_tracking_uri(settings.tracking_uri, settings.output_dir)
    # Seed-major, so that a suite stopped early already has every row for its first seeds.
    jobs = [(row, seed) for seed in range(settings.seeds) for row in rows if seed == 0 or not row.pretrained]
    configs = [row_config(suite, settings, row, seed, uri, evals) for row, seed in jobs]  # a bad row fails first
    client = MlflowClient(uri)
    done: list[SuiteRun] = []
    for i, ((row, seed), cfg) in enumerate(zip(jobs, configs), 1):
        where = f"[{i}/{len(jobs)}] {cfg.tracking.run_name}"
        run_id = finished_run(client, cfg)
        if run_id is not None:
            echo(f"{where}: reusing finished run {run_id}")
            done.append(SuiteRun(row.name, seed, run_id, True))
            continue
        try:
            run_id = continue_stopped(row, cfg, settings, client, where, echo)
            if run_id is None:
                echo(f"{where}: running")
                run_id = launch(row, cfg, settings, client)
        except Exception as exc:
            from harness.cli.job import input_errors

            # reported as `harness run` reports them, with no traceback: bad input (data, a model, a checkpoint;
            # exit 2) and a plugin that raised in a hook of the run, which the engine marked FAILED (exit 1)
            if isinstance(exc, (plugin_registry.PluginError, SuiteError, *input_errors())):
                raise SuiteError(f"{where}: {exc}", getattr(exc, "exit_code", 2)) from exc
            if getattr(exc, "plugin_fault", None) is not None:
                raise SuiteError(f"{where}: {plugin_registry.describe_failure(exc)}", exit_code=1) from exc
            raise
        done.append(SuiteRun(row.name, seed, run_id, False))
    experiment = experiment_name(suite, settings)
    prefix = f"{suite.name}-{settings.preset}-"
    board = board.narrowed((experiment,), f"attributes.run_name LIKE '{prefix}%'")
    out = settings.board_dir or str(Path(settings.output_dir) / f"{suite.name}-{settings.preset}-board")
    written = write_leaderboard(board, uri, out)
    if suite.claims:
        (Path(out) / "claims.md").write_text(suite.claims(board, written.rows, prefix))
    return SuiteReport(done, written)


# -- command line ---------------------------------------------------------------------------


def suite_options(func):
    options = [
        click.option("--preset", type=Choice(PRESETS), default="demo", show_default=True),
        click.option("--seeds", type=int, default=3, show_default=True, help="Seeds 0..N-1 per row."),
        click.option("--set", "sets", multiple=True, metavar="KEY=VALUE", help="Config override for every run."),
        eval_option(help="Eval plugins (default: the preset's, else the suite's)"),
        click.option("--row", "rows", multiple=True, help="Run only this row; repeat for several."),
        click.option("--output-dir", default="harness-runs", show_default=True, type=click.Path(file_okay=False)),
        click.option("--tracking-uri", help="MLflow tracking URI (default: $MLFLOW_TRACKING_URI, else sqlite store "
                     "in the output dir)."),
        click.option("--experiment", help="MLflow experiment (default: $MLFLOW_EXPERIMENT_NAME, else the suite's name)."),
        click.option("--out", "board_dir", type=click.Path(file_okay=False), help="Board directory."),
        click.option("--progress/--no-progress", default=False, help="Progress bars."),
    ]
    for option in reversed(options):
        func = option(func)
    return func


def _settings(preset, seeds, sets, evals, rows, output_dir, tracking_uri, experiment, board_dir, progress):
    return SuiteSettings(preset, seeds, parse_options(sets, "--set"), tuple(split_names(evals)) or None, tuple(rows),
                         output_dir, tracking_uri, experiment, board_dir, progress)


def _launch(suite_factory: Callable[[], Suite], settings: SuiteSettings) -> None:
    try:
        report = run_suite(suite_factory(), settings, echo=click.echo)
    except SuiteError as exc:
        fail(str(exc), exc.exit_code)
    click.echo(f"{len(report.runs)} runs ({report.new_runs} new), {len(report.board.rows)} board rows")
    click.echo("board: " + "\n       ".join(str(p) for p in (report.board.markdown, report.board.csv, report.board.html,
                                                              *report.board.plots)))


@click.group("suite")
def command() -> None:
    """Run the paper's tables (resumable: finished runs are reused) and build their leaderboard."""


@command.command("paper-table1")
@click.option("--filter-model", help="Guard of the FL+filter rows (default: the guard lg3 picks for the run's model).")
@suite_options
def table1_command(filter_model, **options) -> None:
    """Pretrained, FL, FL+oracle, FL+filter, FL+CAI, FL+filter+CAI for FedAvg and SCAFFOLD."""
    _launch(lambda: paper_table1(filter_model), _settings(**options))


@command.command("paper-table2")
@click.option("--filter-model", help="Fine-tuned guard directory (from `harness filter train`).")
@suite_options
def table2_command(filter_model, **options) -> None:
    """The lg3 filter on its bare base backbone (forced) vs fine-tuned."""
    _launch(lambda: paper_table2(filter_model), _settings(**options))


@command.command("threats")
@click.option("--filter-model", help="Guard of the filter rows (default: the guard lg3 picks for the run's model).")
@suite_options
def threats_command(filter_model, **options) -> None:
    """Malicious clients × defenses (filter, robust aggregation, DP-FedAvg, CAI) and the centralized baseline."""
    _launch(lambda: threats(filter_model), _settings(**options))
