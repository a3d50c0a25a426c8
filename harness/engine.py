"""The single-process round engine: one resident base model, clients swap LoRA weights in place."""

from __future__ import annotations

import json
import logging
import math
import numbers
import secrets
import signal
import time
import traceback
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from harness import registry
from harness.adapters import AdapterStateError, check_compatible, load_into, read_only_copy, snapshot
from harness.checkpoint import LOCK_FILE, Checkpoint, CheckpointStore, RunDirLock, restore_rng
from harness.client import ClientResult, ClientTrainer
from harness.config import RunConfig, check_run_name, run_dir
from harness.data.overlap import check_overlap, client_set, declared_sets
from harness.evals.discrimination import derived_metrics
from harness.hook_checks import blame, check_model_unchanged, check_read_only, one_by_one, weights_digest
from harness.privacy import DPFedAvg
from harness.redaction import redact, redact_result
from harness.safe_base.load import base_prompt_set
from harness.training import cosine_lr
from harness.types import AdapterState, ClientUpdate, EvalResult, FitIns, RunInfo, RunSummary
from harness.update_hygiene import screen_updates
from harness.watchdog import install_watchdog
from harness.workspace import Workspace, trained_clients

log = logging.getLogger(__name__)

PRETRAINED_FILE = "pretrained_metrics.json"  # in the run directory: the step-0 evals, for the summary on --resume


def prefixed(prefix: str, metrics: dict[str, float]) -> dict[str, float]:
    """An aggregator's or aligner's metrics under ``prefix`` (``agg/``, ``align/``); a name that already starts
    with it keeps it once."""
    return {k if k.startswith(prefix) else prefix + k: v for k, v in metrics.items()}


@dataclass
class RunState:
    """Everything that changes from round to round (what a checkpoint must hold)."""

    next_round: int
    global_state: AdapterState
    sampler: np.random.Generator
    cursors: dict[int, int] = field(default_factory=dict)


class RoundEngine:
    """Runs a federated fine-tuning job with the plugins registered in ``pm``."""

    engine = "local"  # recorded on the run (``--resume`` continues it on the same engine)

    def __init__(self, config: RunConfig, pm, progress: bool = True, resume: bool = False, reuse_run_dir: bool = False):
        """``resume``: continue the run in ``output_dir/runs/<tracking.run_name>`` from its newest checkpoint.
        A fresh run refuses an existing run directory unless ``reuse_run_dir`` (the suite redoing a row)."""
        self.cfg = config
        self.pm = pm
        self.hook = pm.hook
        self.progress = progress
        self.resume = resume
        fed = config.federation
        self.run_name = check_run_name(config.tracking.run_name or (  # a random suffix: runs started together differ
            f"{config.plugins.filter}-{config.plugins.agg}-{config.plugins.align}-s{fed.seed}-"
            f"{datetime.now(timezone.utc):%Y%m%d-%H%M%S}-{secrets.token_hex(3)}"
        ))
        self.run_dir = run_dir(config.output_dir, self.run_name)
        self.run_lock: RunDirLock | None = None  # held while run() runs
        self.reuse_run_dir = reuse_run_dir
        self.checkpoints = CheckpointStore(self.run_dir)
        self.privacy = DPFedAvg(config.privacy, fed)  # changes nothing unless privacy.clip_norm is set

    # -- setup --------------------------------------------------------------------------
    def setup(self) -> None:
        self.workspace = Workspace.build(self.cfg)
        self.samples, self.heldout = self.workspace.samples, self.workspace.heldout
        self.global_model = self.workspace.model
        self.model, self.params = self.global_model.model, self.global_model.params
        self.trainer = ClientTrainer(self.cfg, self.pm, self.global_model, self.workspace.client_samples, self.progress)
        self.state = RunState(next_round=1, global_state=snapshot(self.params),
                              sampler=np.random.default_rng(self.cfg.federation.seed))

    def run_info(self, resume_round: int | None = None) -> RunInfo:
        return self.workspace.run_info(self.cfg, self.run_name, self.run_dir, self.engine, resume_round)

    def check_data(self, info: RunInfo) -> dict[str, float]:
        """Overlap counts of client data, plugins' training prompts, the safe base's own training prompts and eval
        sets; refuses overlaps (docs/data.md) and warns of eval plugins that declare no prompts (left unchecked)."""
        base = base_prompt_set(self.cfg.model.name)
        declaring = {impl.plugin_name for impl in self.hook.declare_prompts.get_hookimpls()}
        unchecked = [name.removeprefix("eval:") for name, _ in self.pm.list_name_plugin()
                     if name.startswith("eval:") and name not in declaring]
        if unchecked:
            log.warning("eval plugin(s) %s do not implement declare_prompts: their items are not checked for overlap "
                        "with the client or training data (docs/plugins.md)", ", ".join(unchecked))
        sets = [client_set(self.samples, self.cfg.data.source)] + declared_sets(self.hook.declare_prompts(run=info))
        return check_overlap(sets + ([base] if base is not None else []), allow=self.cfg.data.allow_overlap)

    def evaluate_pretrained(self, data_metrics: dict[str, float]) -> None:
        """Round 0 of a fresh run: the overlap counts and (``plugins.eval_pretrained``) the evals before any
        training, where the fresh LoRA (B = 0) leaves the base model unchanged; logged with step 0."""
        plugins = self.cfg.plugins
        metrics, artifacts = dict(data_metrics), {}
        if plugins.eval_pretrained and plugins.evals:
            t = time.perf_counter()
            for result in self._evaluate(0):
                self.pretrained.update(result.metrics)
                artifacts.update(result.artifacts)
            load_into(self.params, self.state.global_state)
            (self.run_dir / PRETRAINED_FILE).write_text(json.dumps(self.pretrained, indent=1))
            metrics.update(self.pretrained)
            metrics["time/eval_seconds"] = time.perf_counter() - t
        if metrics:
            self._end_round(0, metrics, artifacts)
        else:
            self.save_checkpoint()

    # -- checkpoints --------------------------------------------------------------------
    def save_checkpoint(self, pending_log: dict | None = None) -> Path:
        """Atomically save the run state and every plugin's ``checkpoint_state``."""
        return self.checkpoints.save(
            self.state.next_round, self.state.global_state, self.state.sampler.bit_generator.state,
            self.state.cursors, lambda directory: self.hook.checkpoint_state(directory=directory), pending_log,
        )

    def restore_checkpoint(self) -> Checkpoint:
        """Load the newest verified checkpoint into the run state and the global RNGs."""
        checkpoint = self.checkpoints.load_latest()
        check_compatible(checkpoint.global_state, self.state.global_state, "checkpoint")
        self.state.next_round = checkpoint.next_round
        # in the live adapter's name order (safetensors reads names back sorted): plugins that lay states out
        # by position, like SCAFFOLD's flat vectors, then see a fresh and a resumed run alike
        self.state.global_state = {name: checkpoint.global_state[name] for name in self.state.global_state}
        self.state.sampler.bit_generator.state = checkpoint.sampler_state
        self.state.cursors = dict(checkpoint.cursors)
        load_into(self.params, self.state.global_state)
        restore_rng(checkpoint)
        return checkpoint

    def _end_round(self, server_round: int, metrics: dict[str, float], artifacts: dict[str, str]) -> None:
        """Checkpoint the round's end state first, then hand its metrics to the trackers."""
        self.state.next_round = server_round + 1
        pending = {"server_round": server_round, "metrics": metrics, "artifacts": artifacts}
        directory = self.save_checkpoint(pending)
        self.hook.on_round_end(**pending)
        self.checkpoints.mark_logged(directory)

    # -- read-only states and plugin faults --------------------------------------------
    def _check_read_only(self, view: AdapterState, *hooks: str) -> None:
        """Fail the run, naming the plugin, if a hook wrote into the read-only copy of ``global_state`` it got."""
        check_read_only(self.pm, view, self.state.global_state, *hooks)

    def _check_result(self, state: AdapterState, what: str, hook: str) -> None:
        """A hook's new global adapter must match the current one and be finite; otherwise the run fails before
        the round is checkpointed, naming the plugin(s) implementing ``hook``."""
        try:
            check_compatible(state, self.state.global_state, what)
        except AdapterStateError as exc:
            blame(exc, self.pm, getattr(self.hook, hook).get_hookimpls(), hook)
            raise

    def _evaluate(self, server_round: int, names: list[str] | None = None) -> list:
        """The ``evaluate`` hook's results (of the evals ``names``, default all), one eval plugin at a time: each
        must leave the live model's weights as they were (an eval that writes into them fails the run, named) and
        is checked by :meth:`_check_values`; then the scores derived from several evals' metrics
        (:mod:`harness.evals.discrimination`)."""
        results = []
        weights = weights_digest(self.model)
        for impl, evaluate in one_by_one(self.pm, "evaluate"):
            name = impl.plugin_name
            if names is not None and name.startswith("eval:") and name.removeprefix("eval:") not in names:
                continue  # an eval not due this round (plugins.eval_schedule); other plugins' evaluate always runs
            answered = evaluate(server_round=server_round, model=self.global_model, limit=self.cfg.plugins.eval_limit)
            check_model_unchanged(self.pm, impl, weights, weights_digest(self.model), "evaluate")
            for result in answered:
                self._check_values(result, "evaluate", [impl])
            results += answered
        derived = derived_metrics({k: v for result in results for k, v in result.metrics.items()})
        return results + ([EvalResult(derived)] if derived else [])

    def _check_values(self, result, hook: str, impls: list | None = None) -> None:
        """A hook result's ``metrics`` must map names to real numbers (bool/int/float, finite or NaN) and its
        ``artifacts`` (if it has them) names to text. Checked at the hook, before the round is checkpointed: a bad
        value in the checkpoint's pending log would be replayed, and fail again, by every ``--resume``. A numpy
        scalar becomes a float; anything else fails the round naming the plugin (``impls``, else all of ``hook``).
        A valid result then loses any secret in its metric names and artifacts (a judge may echo its key), before
        the checkpoint, MLflow or the summary see it."""
        problem = None
        metrics = getattr(result, "metrics", None)
        artifacts = getattr(result, "artifacts", {})
        if not isinstance(metrics, dict):
            problem = f"returned metrics of type {type(metrics).__name__}; expected a dict of name -> number"
        elif not isinstance(artifacts, dict):
            problem = f"returned artifacts of type {type(artifacts).__name__}; expected a dict of file name -> text"
        else:
            for key, value in metrics.items():
                if not isinstance(key, str):
                    problem = f"returned a metric name {key!r} of type {type(key).__name__}; names must be str"
                elif not isinstance(value, (bool, int, float)):
                    if isinstance(value, numbers.Real) and not isinstance(value, (str, bytes)):
                        metrics[key] = value = float(value)  # numpy scalars: JSON and MLflow take a float
                    else:
                        problem = (f"returned metric {key!r} = {value!r:.80} of type {type(value).__name__}; "
                                   "metrics must be numbers (bool, int or float)")
                if problem is None and isinstance(value, float) and math.isinf(value):
                    problem = f"returned metric {key!r} = {value!r}; metrics must be finite (or NaN)"
                if problem:
                    break
            for key, value in artifacts.items():
                if problem:
                    break
                if not isinstance(key, str) or not isinstance(value, str):
                    problem = (f"returned artifact {key!r} of type {type(value).__name__}; artifacts must map "
                               "file names (str) to text (str)")
        if problem is None:
            redact_result(result)
            return
        exc = HookResultError(f"{problem}; the round is not checkpointed, so fix the plugin and --resume the run")
        blame(exc, self.pm, impls or getattr(self.hook, hook).get_hookimpls(), hook)
        raise exc

    def _exit_as_fault(self, outcome, hook_name: str, hook_impls, kwargs) -> None:
        """Hook-call monitor: a plugin's ``SystemExit`` (``sys.exit(0)`` included), or a ``KeyboardInterrupt`` no
        signal caused, becomes a plugin fault, so the run fails (MLflow FAILED, exit 1) instead of exiting with the
        plugin's code or passing for Ctrl-C."""
        exc = outcome.exception
        if isinstance(exc, SystemExit):
            fault = PluginExitError(f"called sys.exit({exc.code!r}); a plugin may not end the process")
        elif isinstance(exc, KeyboardInterrupt) and not _from_signal(exc):
            fault = PluginExitError("raised KeyboardInterrupt, though no Ctrl-C or signal arrived; a plugin may not "
                                    "stop the run")
        else:
            return
        fault.__cause__ = exc
        impl = registry._raising_impl(exc, hook_impls)
        blame(fault, self.pm, [impl] if impl is not None else list(hook_impls), hook_name)
        outcome.force_exception(fault)

    # -- clients ------------------------------------------------------------------------
    def _configure_fit(self, server_round: int, cid: int) -> FitIns:
        """``configure_fit``'s instructions for client ``cid`` (given a read-only copy of the global adapter)."""
        view = read_only_copy(self.state.global_state)
        fit_ins = self.hook.configure_fit(server_round=server_round, client_id=cid, global_state=view)
        self._check_read_only(view, "configure_fit")
        return fit_ins or FitIns()

    def _train_clients(self, server_round: int, sampled: list[int], lr: float, metrics: dict[str, float]) -> list[ClientUpdate]:
        """Train the sampled clients one after another (the Flower engine dispatches them instead)."""
        self._client_log: list[dict] = []
        updates = []
        self.model.train()
        try:
            for cid in tqdm(sampled, desc=f"round {server_round} clients", leave=False, disable=not self.progress):
                result = self.trainer.fit(cid, server_round, lr, self.state.global_state,
                                          lambda: self._configure_fit(server_round, cid), self.state.cursors.get(cid, 0))
                self._add_client(cid, result, metrics)
                if result.update is not None:
                    updates.append(result.update)
        finally:
            self.model.eval()
        return updates

    def _add_client(self, cid: int, result: ClientResult, metrics: dict[str, float]) -> None:
        """Count client ``cid``'s round into the round's metrics and client log, and keep its data cursor."""
        self.state.cursors[cid] = result.cursor
        for key, value in result.metrics.items():
            metrics[key] = metrics.get(key, 0.0) + value
        self._client_log.append(result.filter_record)

    def _screen(self, server_round: int, updates: list[ClientUpdate], metrics: dict[str, float]) -> list[ClientUpdate]:
        """Drop non-finite client updates (like empty clients) and clip update norms if configured."""
        screened = screen_updates(updates, self.state.global_state, self.cfg.federation.clip_update_norm)
        metrics["clients/rejected_nonfinite"] = len(screened.rejected_nonfinite)
        metrics["clients/clipped"] = len(screened.clipped)
        for record in self._client_log:
            if record["client_id"] in screened.rejected_nonfinite:
                log.warning("round %d: client %d sent a non-finite update; left out of the round",
                            server_round, record["client_id"])
                record["rejected"] = "non-finite update"
            elif record["client_id"] in screened.clipped:
                record["clipped"] = True
        return screened.accepted

    # -- one round ----------------------------------------------------------------------
    def run_round(self, server_round: int) -> dict[str, float]:
        fed, plugins = self.cfg.federation, self.cfg.plugins
        start = time.perf_counter()
        sampled = [0] if fed.centralized else sorted(  # the centralized baseline's one client trains every round
            self.state.sampler.choice(fed.num_clients, fed.clients_per_round, replace=False).tolist())
        lr = cosine_lr(server_round, fed.rounds, fed.lr, fed.lr_min)
        metrics: dict[str, float] = {key: 0.0 for key in (
            "filter/kept", "filter/dropped", "filter/true_pos", "filter/false_pos", "filter/false_neg",
            "clients/skipped_empty", "comm/bytes_up", "comm/bytes_down", "time/train_step_seconds",
            "train/tokens", "train/padding_fraction", "train/sample_visits",
        )}
        if self.cfg.data.malicious_skip_filter:
            metrics["filter/skipped_by_malicious"] = 0.0
        trained = self._train_clients(server_round, sampled, lr, metrics)
        metrics["train/padding_fraction"] /= max(len(trained), 1)  # over the clients that trained
        updates = self._screen(server_round, trained, metrics)
        _filter_quality(metrics)
        metrics["train/lr"] = lr
        metrics["clients/trained"] = len(updates)
        before = self.state.global_state
        if updates:
            n = sum(u.num_examples for u in updates)
            metrics["train/loss"] = sum(u.metrics["loss"] * u.num_examples for u in updates) / n
            t = time.perf_counter()
            view = read_only_copy(self.state.global_state)
            result = self.hook.aggregate(
                server_round=server_round, global_state=view,
                updates=self.privacy.prepare(updates, before, metrics), num_clients_total=trained_clients(self.cfg),
            )
            self._check_read_only(view, "aggregate")
            if result is None:
                raise RuntimeError("no aggregator answered the aggregate hook")
            self._check_result(result.state, f"aggregator {plugins.agg!r}", "aggregate")
            self._check_values(result, "aggregate")
            self.state.global_state = result.state
            metrics.update(prefixed("agg/", result.metrics))
            metrics["time/aggregate_seconds"] = time.perf_counter() - t
        self.state.global_state = self.privacy.release(server_round, self.state.global_state, before, len(updates),
                                                      metrics)
        load_into(self.params, self.state.global_state)

        t = time.perf_counter()
        aligned = self.hook.post_aggregate(server_round=server_round, model=self.global_model)
        if aligned is not None:
            self._check_values(aligned, "post_aggregate")
            if aligned.state is not None:
                self._check_result(aligned.state, f"aligner {plugins.align!r}", "post_aggregate")
                self.state.global_state = aligned.state
            metrics.update(prefixed("align/", aligned.metrics))
        load_into(self.params, self.state.global_state)
        metrics["time/align_seconds"] = time.perf_counter() - t
        check_compatible(self.state.global_state, self.state.global_state, f"round {server_round}'s global adapter")

        artifacts: dict[str, str] = {}
        due = [name for name in plugins.evals if eval_due(plugins, name, server_round, fed.rounds)]
        if due:
            t = time.perf_counter()
            for result in self._evaluate(server_round, due):
                metrics.update(result.metrics)
                artifacts.update(result.artifacts)
            load_into(self.params, self.state.global_state)
            metrics["time/eval_seconds"] = time.perf_counter() - t
        round_seconds = time.perf_counter() - start
        metrics["time/round_seconds"] = round_seconds
        metrics["time/align_share"] = metrics["time/align_seconds"] / round_seconds
        artifacts["clients.json"] = json.dumps(self._client_log, indent=1)
        train_round = round_seconds - metrics.get("time/eval_seconds", 0.0) - metrics["time/align_seconds"]
        if metrics["time/train_step_seconds"] > 0:  # a round in which no client trained has no overhead ratio
            metrics["time/engine_overhead"] = train_round / metrics["time/train_step_seconds"]
        self._end_round(server_round, metrics, artifacts)
        return metrics

    # -- whole run ----------------------------------------------------------------------
    def save_final_adapter(self) -> Path:
        load_into(self.params, self.state.global_state)
        out = self.run_dir / "final_adapter"
        self.model.save_pretrained(str(out), safe_serialization=True)
        return out

    def run(self) -> RunSummary:
        """:meth:`_run` with the run directory locked (created first for a fresh run) and released after."""
        try:
            return self._run()
        finally:
            if self.run_lock is not None:
                self.run_lock.release()
                self.run_lock = None

    def _run(self) -> RunSummary:
        """Set up, run every round, and report; hooks see the run start and end even on failure."""
        started = time.perf_counter()
        self.setup()
        self.run_lock = self._lock_run_dir()  # after setup, so bad data creates nothing
        if not self.resume and (earlier := self.checkpoints.set_aside()) is not None:
            log.warning("run directory %s held an earlier attempt's checkpoints; moved them to %s", self.run_dir, earlier)
        checkpoint = self.restore_checkpoint() if self.resume else None
        if checkpoint is None:
            (self.run_dir / "config.yaml").write_text(self.cfg.to_yaml())
            (self.run_dir / PRETRAINED_FILE).unlink(missing_ok=True)  # an earlier attempt's
        info = self.run_info(checkpoint.next_round if checkpoint else None)
        self.pretrained: dict[str, float] = {}
        stop_monitor = self.pm.add_hookcall_monitoring(lambda *args: None, self._exit_as_fault)
        stop_watchdog = install_watchdog(self.pm, self.cfg.plugins.hook_timeout_s)
        try:
            return self._run_rounds(started, checkpoint, info)
        finally:
            stop_watchdog()
            stop_monitor()

    def _lock_run_dir(self) -> RunDirLock:
        """Lock the run directory. A fresh run refuses an existing one, except the suite redoing a row and a
        directory left by a run stopped before its first checkpoint (:meth:`_left_unstarted`), which it takes over."""
        takeover = not self.resume and not self.reuse_run_dir and self._left_unstarted()
        lock = RunDirLock(self.run_dir, fresh=not self.resume, reuse=self.reuse_run_dir or takeover)
        if takeover:
            log.warning("run directory %s was left by a run stopped before its first checkpoint (nothing was "
                        "trained); starting the run again in it", self.run_dir)
        return lock

    def _left_unstarted(self) -> bool:
        """Whether the run directory holds the lock file and nothing but what a run writes before its first
        checkpoint: a run stopped there (a signal, a tracker failing in ``on_run_start``) trained nothing and logged
        no round. A run holding the lock is still refused, by the lock."""
        if not self.run_dir.is_dir() or self.checkpoints.complete():
            return False
        names = {p.name for p in self.run_dir.iterdir()}
        return LOCK_FILE in names and names <= {LOCK_FILE, "config.yaml", PRETRAINED_FILE, "checkpoints"}

    def _run_rounds(self, started: float, checkpoint: Checkpoint | None, info: RunInfo) -> RunSummary:
        fed = self.cfg.federation
        final: dict[str, float] = {}
        try:
            self.hook.on_run_start(run=info)
            data_metrics = self.check_data(info)
            if checkpoint is None:
                self.evaluate_pretrained(data_metrics)
            else:
                if (self.run_dir / PRETRAINED_FILE).is_file():
                    self.pretrained = json.loads((self.run_dir / PRETRAINED_FILE).read_text())
                self.hook.restore_state(directory=checkpoint.plugin_dir)
                if checkpoint.pending_log and not checkpoint.logged:  # killed between checkpoint and logging
                    self.hook.on_round_end(**checkpoint.pending_log)
                    self.checkpoints.mark_logged(checkpoint.directory)
            rounds = range(self.state.next_round, fed.rounds + 1)
            for server_round in tqdm(rounds, desc="rounds", disable=not self.progress, unit="round"):
                final = self.run_round(server_round)
            adapter = self.save_final_adapter()
            self.checkpoints.flush()
        except BaseException as exc:
            self._flush_after_failure()
            summary = RunSummary(
                "FAILED", self.state.next_round - 1, final, None, time.perf_counter() - started,
                error=redact("".join(traceback.format_exception(exc))),
            )
            self.hook.on_run_end(run=info, summary=summary)
            raise
        summary = RunSummary("FINISHED", fed.rounds, final, adapter, time.perf_counter() - started,
                             pretrained_metrics=self.pretrained)
        self.hook.on_run_end(run=info, summary=summary)
        return summary

    def _flush_after_failure(self) -> None:
        """Put the last checkpoint on disk for ``--resume``; the run's own error is the one reported."""
        try:
            self.checkpoints.flush()
        except Exception as exc:  # noqa: BLE001 - the original failure propagates
            log.error("the last checkpoint could not be synced to disk: %s", exc)


class PluginExitError(RuntimeError):
    """A plugin raised ``SystemExit``, or ``KeyboardInterrupt`` without a signal, inside a hook."""


def eval_due(plugins, name: str, server_round: int, rounds: int) -> bool:
    """Whether eval ``name`` runs after ``server_round``: always after the last round, else every
    ``plugins.eval_schedule[name]`` rounds (default ``plugins.eval_every``; 0: never before the last)."""
    every = plugins.eval_schedule.get(name, plugins.eval_every)
    return server_round == rounds or bool(every and server_round % every == 0)


def _from_signal(exc: KeyboardInterrupt) -> bool:
    """Whether ``exc`` may come from a signal: ``harness run``'s handler raises it with the ``signum``; under
    Python's default SIGINT handler a Ctrl-C cannot be told from a plugin's ``raise KeyboardInterrupt``."""
    return getattr(exc, "signum", None) is not None or signal.getsignal(signal.SIGINT) is signal.default_int_handler


class HookResultError(TypeError):
    """A hook returned a metric that is not a real number, or an artifact that is not text."""


def _filter_quality(metrics: dict[str, float]) -> None:
    """Precision/recall of 'dropped' as unsafe detection, where labels exist and are defined."""
    tp, fp, fn = (metrics.pop(f"filter/{k}") for k in ("true_pos", "false_pos", "false_neg"))
    if tp + fp:
        metrics["filter/precision"] = tp / (tp + fp)
    if tp + fn:
        metrics["filter/recall"] = tp / (tp + fn)
