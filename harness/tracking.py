"""MLflow tracking as a core plugin of the lifecycle hooks (sqlite store by default, any URI for teams)."""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import json
import logging
import os
import platform
import subprocess
import urllib.error
import urllib.request
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

from harness.config import param_text
from harness.hookspecs import hookimpl
from harness.redaction import redact
from harness.safe_base.load import adapter_digest
from harness.types import RunInfo, RunSummary

if TYPE_CHECKING:  # mlflow loads when a store is opened: the CLI resolves URIs and validates input without it
    import mlflow
    from mlflow.tracking import MlflowClient

PARAM_LIMIT = 6000  # MLflow's maximum param value length
PROBE_TIMEOUT = 5.0  # seconds an http(s) tracking server has to answer before a run starts

log = logging.getLogger(__name__)

URI_ENV = "MLFLOW_TRACKING_URI"
EXPERIMENT_ENV = "MLFLOW_EXPERIMENT_NAME"
LIBRARIES = ("torch", "transformers", "peft", "trl")


class TrackingUnreachableError(RuntimeError):
    """An http(s) MLflow tracking server did not answer; the message names its URI."""


class TrackingError(RuntimeError):
    """An MLflow call failed (store deleted, corrupt, unwritable, disk full, server down); the message says what
    the tracker was doing and names the store."""


def sqlite_path(uri: str) -> Path | None:
    """The database file of a ``sqlite:///`` URI, else None."""
    return Path(uri[len("sqlite:///"):]) if uri.startswith("sqlite:///") else None


def open_client(uri: str) -> MlflowClient:
    """An :class:`MlflowClient` for ``uri`` with its store created (MLflow runs its migrations here).

    For a sqlite store the creation holds an exclusive lock on ``<db>.lock`` next to it, so two processes
    creating a fresh store at once do not race in MLflow's migrations ("table ... already exists"); one retry
    covers a store created by something that does not take the lock. Any failure raises
    :class:`TrackingError` with one line naming the store (e.g. an output directory that is not writable).
    """
    from mlflow.tracking import MlflowClient

    db = sqlite_path(uri)
    try:
        with _store_lock(db):
            try:
                return MlflowClient(uri)
            except Exception as exc:  # noqa: BLE001 - a concurrent creator: the store is complete by now
                if "already exists" not in str(exc):
                    raise
                return MlflowClient(uri)
    except TrackingError:
        raise
    except Exception as exc:  # noqa: BLE001 - reported as one line
        where = f" (is {db.parent} writable?)" if db is not None else ""
        raise TrackingError(f"cannot open the MLflow store {uri}{where}: {_short(exc)}") from exc


@contextlib.contextmanager
def _store_lock(db: Path | None):
    if db is None:
        yield
        return
    try:
        db.parent.mkdir(parents=True, exist_ok=True)
        handle = open(db.with_name(db.name + ".lock"), "a")
    except OSError as exc:
        if db.is_file():  # an existing store in a read-only directory: nothing to create, so nothing to race
            yield
            return
        raise TrackingError(f"cannot create the MLflow store {db}: {exc.strerror or exc}: {db.parent} "
                            "is not writable; pass a writable --output-dir or --tracking-uri") from exc
    with handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _short(exc: BaseException) -> str:
    """``Type: first line of the message`` of the innermost useful error: the database's own error under
    SQLAlchemy's and MLflow's wrappers (which add the statement, its parameters and a link)."""
    for _ in range(5):
        inner = getattr(exc, "orig", None) or (exc.__cause__ if type(exc).__name__ == "MlflowException" else None)
        if not isinstance(inner, BaseException) or not str(inner).strip():
            break
        exc = inner
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {text[:500]}"


class _NoTraceback(logging.Filter):
    """MLflow's sqlite store logs every database error with its traceback before raising it; the tracker
    reports the raised error in one line (TrackingError), so the logged copy is dropped."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.exc_info is None


logging.getLogger("mlflow.store.db.utils").addFilter(_NoTraceback())


def default_tracking_uri(output_dir: str | Path) -> str:
    return f"sqlite:///{Path(output_dir).resolve() / 'mlflow.db'}"


def probe_tracking_server(uri: str, timeout: float = PROBE_TIMEOUT) -> None:
    """Raise :class:`TrackingUnreachableError` unless the server at ``uri`` answers within ``timeout`` s."""
    try:
        urllib.request.urlopen(f"{uri.rstrip('/')}/health", timeout=timeout).close()
    except urllib.error.HTTPError:
        return  # it answered (an error status still means the server is up)
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise TrackingUnreachableError(
            f"MLflow tracking server {uri} is unreachable ({reason}); start it, fix --tracking-uri, "
            "or pass --tracking-fallback-local (tracking.fallback_local: true) to log to the local sqlite store"
        ) from exc


def env_tracking_uri() -> str | None:
    """``$MLFLOW_TRACKING_URI`` when set and not empty."""
    return os.environ.get(URI_ENV) or None


def env_experiment() -> str | None:
    """``$MLFLOW_EXPERIMENT_NAME`` when set and not empty."""
    return os.environ.get(EXPERIMENT_ENV) or None


def experiment_from_env(overrides: dict[str, Any], config_file: str | Path | None = None) -> str | None:
    """``$MLFLOW_EXPERIMENT_NAME`` unless the command line (a flag, ``--set``) or the config file names the
    experiment: flag > config file > environment > the default ``fedllm-harness``."""
    if overrides.get("tracking.experiment") is not None:
        return None
    if config_file:
        from harness.config import ConfigError, read_yaml

        try:
            tracking = read_yaml(config_file).get("tracking") or {}
        except ConfigError:
            tracking = {}  # load_config reports the file's problem
        if isinstance(tracking, dict) and tracking.get("experiment"):
            return None
    return env_experiment()


def resolve_tracking_uri(uri: str | None, output_dir: str | Path, fallback_local: bool = False) -> str:
    """``uri`` (a flag or the config), else ``$MLFLOW_TRACKING_URI``, else the sqlite store in ``output_dir``.
    An http(s) URI is probed first; if it does not answer, this raises :class:`TrackingUnreachableError`, or with
    ``fallback_local`` warns and returns the local store."""
    uri = uri or env_tracking_uri()
    if uri is None:
        return default_tracking_uri(output_dir)
    if uri.startswith(("http://", "https://")):
        try:
            probe_tracking_server(uri)
        except TrackingUnreachableError as exc:
            if not fallback_local:
                raise
            local = default_tracking_uri(output_dir)
            log.warning("MLflow tracking server %s is unreachable (%s); logging to %s instead", uri, exc.__cause__, local)
            return local
    return uri


def ensure_experiment(client: MlflowClient, name: str, output_dir: str | Path, uri: str) -> str:
    """The experiment's id, creating it (artifacts next to a local sqlite store) if needed."""
    found = client.get_experiment_by_name(name)
    if found is not None:
        return found.experiment_id
    location = None
    if uri.startswith("sqlite:"):
        location = (Path(output_dir).resolve() / "mlartifacts").as_uri()
    return client.create_experiment(name, artifact_location=location)


def _param_value(value: Any) -> str:
    return redact(param_text(value))[:PARAM_LIMIT]


def _git(args: list[str], cwd: Path) -> str | None:
    try:
        done = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip() if done.returncode == 0 else None


def git_state(path: Path | None = None) -> tuple[str, str]:
    """(commit, dirty) of the checkout holding the harness: ('unknown', 'unknown') outside a git work tree."""
    import harness

    root = path or Path(harness.__file__).resolve().parents[1]
    commit = _git(["rev-parse", "HEAD"], root)
    if not commit:
        return "unknown", "unknown"
    status = _git(["status", "--porcelain", "--untracked-files=no"], root)
    return commit, "unknown" if status is None else str(bool(status)).lower()


def _version(dist: str) -> str:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "not installed"


MODEL_DIGEST_TAG = "harness.model_digest"
"""Tag naming a shipped safe base's adapter by its bytes (:func:`harness.safe_base.load.adapter_digest`)."""
HEADLINE_TAG = "harness.headline"  # the evals' Headline declarations as JSON, for the default board's columns


def headline_tag(evals: list[str]) -> str:
    """The :class:`harness.types.Headline` declarations of ``evals`` as a JSON list of their fields."""
    from harness import registry

    return json.dumps([dataclasses.asdict(h) for h in registry.headlines(evals)], separators=(",", ":"))


def provenance_tags(cfg, selected: list[tuple[str, str]] | None = None) -> dict[str, str]:
    """What ran: harness version and git commit (dirty flag), python and library versions, device and dtype, a
    shipped safe base's adapter digest, and per selected plugin ``harness.plugin.KIND.NAME`` = 'distribution
    version'."""
    import harness

    commit, dirty = git_state()
    tags = {"harness.version": harness.__version__, "harness.git_commit": commit, "harness.git_dirty": dirty,
            "harness.python": platform.python_version()}
    tags.update({f"harness.{lib}": _version(lib) for lib in LIBRARIES})
    try:
        from harness.models import resolve_device, resolve_dtype

        device = resolve_device(cfg.model.device)
        dtype = str(resolve_dtype(cfg.model.dtype, device, cfg.model.name)).removeprefix("torch.")
    except Exception:  # noqa: BLE001 - a bad device fails the run later, with its own message
        device, dtype = cfg.model.device, cfg.model.dtype
    tags["harness.device"] = str(device)
    tags["harness.dtype"] = dtype  # what `auto` resolved to on this machine
    import torch

    tags["harness.torch_threads"] = str(torch.get_num_threads())  # float summation order depends on it
    digest = adapter_digest(cfg.model.name)
    if digest is not None:
        tags[MODEL_DIGEST_TAG] = digest
    from harness import registry

    if selected is None:
        selected = [(kind, name) for kind, name, _ in registry.selection(cfg)]
    for kind, name in selected:
        try:
            dist, version = registry.distribution(kind, name)
        except registry.PluginError:
            dist, version = "?", "?"
        tags[f"harness.plugin.{kind}.{name}"] = f"{dist} {version}"
    return tags


class RunNotFoundError(LookupError):
    """``harness run --resume`` named no known MLflow run id or run name."""


def find_run(tracking_uri: str, key: str) -> mlflow.entities.Run:
    """The MLflow run whose id, or else whose run name, is ``key`` (the newest of that name)."""
    db = sqlite_path(tracking_uri)
    if db is not None and not db.is_file():  # no store: no run (and none is created by looking)
        raise RunNotFoundError(f"no MLflow run with id or name {key!r}: there is no MLflow store {tracking_uri}")
    from mlflow.exceptions import MlflowException

    client = open_client(tracking_uri)
    try:
        return client.get_run(key)
    except MlflowException:
        pass
    experiments = [e.experiment_id for e in client.search_experiments()]
    # MLflow's filter strings have no escape for a quote inside a quoted value: quote with the kind the name
    # lacks; a name with both kinds (or a backslash) is matched here, newest first, over all runs.
    quote = None if "\\" in key else "'" if "'" not in key else '"' if '"' not in key else None
    order = ["attributes.start_time DESC"]
    if not experiments:
        found = []
    elif quote:
        found = client.search_runs(experiments, f"attributes.run_name = {quote}{key}{quote}", max_results=1,
                                   order_by=order)
    else:
        found = _runs_named(client, experiments, key, order)
    if not found:
        raise RunNotFoundError(f"no MLflow run with id or name {key!r} in {tracking_uri}")
    return found[0]


def _runs_named(client: MlflowClient, experiments: list[str], name: str, order: list[str]) -> list:
    """The newest run named ``name``, scanning every run page by page (for names no filter string can quote)."""
    token = None
    while True:
        page = client.search_runs(experiments, "", max_results=1000, order_by=order, page_token=token)
        hits = [r for r in page if r.info.run_name == name]
        if hits:
            return hits[:1]
        token = page.token
        if not token:
            return []


class MlflowTracker:
    """Logs every run as an MLflow run: params, per-round metrics (step = round), config and adapter.

    Given ``run_id`` (a resumed run) it reopens that run and logs the remaining rounds into it; the first
    round it is handed may replay one the interrupted process already logged, whose metrics are then not
    logged twice. Its ``on_run_start``/``on_run_end`` run first, so a failing plugin cannot keep the run
    from being created or from being marked FAILED (with the traceback as ``error.txt``).

    A failing MLflow call (store deleted, corrupt or unwritable, disk full) raises :class:`TrackingError` from
    ``on_run_start``/``on_round_end``, which stops the run (the engine keeps its checkpoints); ``on_run_end``
    never raises: it records the failure in ``failure`` for ``harness run`` to report. A run stopped by
    SIGINT/SIGTERM (``interrupted`` set by ``harness run``) is marked KILLED instead of FAILED.
    """

    def __init__(self, tracking_uri: str, experiment: str, output_dir: str | Path, run_id: str | None = None):
        self.uri = tracking_uri
        self.experiment = experiment
        self.output_dir = output_dir
        logging.getLogger("mlflow").setLevel(logging.WARNING)
        self.client = open_client(tracking_uri)
        self.run_id = run_id
        self._may_replay = run_id is not None
        self.status: str | None = None  # the status on_run_end gave the run
        self.run_dir: Path | None = None  # the run's directory (checkpoints), once it started
        self.run_name: str | None = None
        self.interrupted: int | None = None  # the signal that stopped the run (set by `harness run`)
        self.failure: TrackingError | None = None  # the first MLflow call that failed
        logging.getLogger("mlflow").setLevel(logging.WARNING)

    @contextlib.contextmanager
    def _calling(self, what: str):
        """Turn any error of the MLflow calls inside into a :class:`TrackingError` saying ``what`` failed."""
        try:
            yield
        except TrackingError:
            raise
        except Exception as exc:  # noqa: BLE001 - sqlite, SQLAlchemy, OSError, MlflowException, requests...
            error = TrackingError(f"MLflow tracking failed while {what} (store {self.uri}): {_short(exc)}")
            error.__cause__ = exc
            self.failure = self.failure or error
            raise error from exc

    @hookimpl(tryfirst=True)
    def on_run_start(self, run: RunInfo) -> None:
        self.run_dir = run.run_dir
        self.run_name = run.run_name
        with self._calling("starting the MLflow run"):
            self._start(run)

    def _start(self, run: RunInfo) -> None:
        from mlflow.entities import Param

        if self.run_id is not None:
            self.client.update_run(self.run_id, status="RUNNING")
            self.client.set_tag(self.run_id, "harness.resumed_at_round", str(run.resume_round))
            self.client.set_tag(self.run_id, HEADLINE_TAG, headline_tag(run.config.plugins.evals))  # may add evals
            return
        exp_id = ensure_experiment(self.client, self.experiment, self.output_dir, self.uri)
        cfg = run.config
        tags = {
            "harness.filter": cfg.plugins.filter,
            "harness.agg": cfg.plugins.agg,
            "harness.align": cfg.plugins.align,
            "harness.attack": cfg.plugins.attack,
            "harness.preset": cfg.preset,
            "harness.model": cfg.model.name,
            "harness.seed": str(cfg.federation.seed),
            "harness.run_dir": str(run.run_dir),
            "harness.engine": run.engine,
            HEADLINE_TAG: headline_tag(cfg.plugins.evals),
        }
        standalone = run.params.get("eval.standalone")  # `harness eval`: only its evals are plugins of the run
        tags.update(provenance_tags(cfg, [("eval", e) for e in cfg.plugins.evals] if standalone else None))
        self.run_id = self.client.create_run(exp_id, run_name=run.run_name, tags=tags).info.run_id
        params = [Param(k, _param_value(v)) for k, v in run.params.items()]
        for start in range(0, len(params), 100):
            self.client.log_batch(self.run_id, params=params[start : start + 100])
        self.client.log_text(self.run_id, redact(cfg.to_yaml()), "config.yaml")

    @hookimpl
    def on_round_end(self, server_round: int, metrics: dict[str, float], artifacts: dict[str, str]) -> None:
        with self._calling(f"logging round {server_round}"):
            self._log_round(server_round, metrics, artifacts)

    def _log_round(self, server_round: int, metrics: dict[str, float], artifacts: dict[str, str]) -> None:
        from mlflow.entities import Metric
        from mlflow.utils.time import get_current_time_millis

        ms = [Metric(k, float(v), get_current_time_millis(), server_round)
              for k, v in metrics.items()]
        if self._may_replay:
            self._may_replay = False
            if ms and any(m.step == server_round for m in self.client.get_metric_history(self.run_id, ms[0].key)):
                ms = []  # logged (in one batch) before the previous process stopped
        for start in range(0, len(ms), 500):
            self.client.log_batch(self.run_id, metrics=ms[start : start + 500])
        for name, text in artifacts.items():
            self.client.log_text(self.run_id, text, f"round_{server_round:03d}/{name}")

    @hookimpl(tryfirst=True)
    def on_run_end(self, run: RunInfo, summary: RunSummary) -> None:
        if self.run_id is None:
            return
        status = "KILLED" if self.interrupted is not None and summary.status == "FAILED" else summary.status
        try:
            with self._calling(f"marking the MLflow run {status}"):
                if summary.adapter_path is not None:
                    self.client.log_artifacts(self.run_id, str(summary.adapter_path), "final_adapter")
                if summary.error:
                    self.client.log_text(self.run_id, redact(summary.error), "error.txt")  # no secret in it
                self.client.log_metric(self.run_id, "run/wall_seconds", summary.wall_seconds)
                self.client.set_terminated(self.run_id, status=status)
        except TrackingError:
            return  # in self.failure; `harness run` reports it (the run's own error, if any, propagates)
        self.status = status
