"""Soak test (`make soak`): a long tiny-random run with faults injected on a seeded schedule, resumed after each.

The driver starts the run in a worker process (which runs it as ``harness run`` does, through
:func:`harness.cli.job.execute`). About every ``fault_every`` rounds one fault fires: the worker SIGKILLs itself
mid-round (``kill``), SIGTERMs itself mid-round (``sigterm``: a clean stop, MLflow KILLED, exit 143), a plugin
raises in a hook (``exception``), the MLflow store fails with "No space left on device" while the round is
logged (``tracker``: exit 1 with one message), an eval writes NaN into the live model (``model_write``: exit 1,
naming the plugin), a client's update turns NaN (``nan``; rejected by the engine, no restart), or a judge echoes
its API key in a successful answer (``judge``; no restart). After every fault but ``nan`` and ``judge`` the driver
checks the worker's exit status and message, that the newest checkpoint is at least as new as the rounds MLflow
logged, and resumes the run. At the end it checks that the MLflow run FINISHED, that every round was logged
exactly once, that the checkpoints verify, that the judge's answers were stored without the key and the key is in
no file of the output folder, and that the final adapter equals the one of an uninterrupted run with the same NaN
faults.
"""

from __future__ import annotations

import dataclasses
import errno
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import click

from harness.hookspecs import hookimpl

RUN = "soak"
KINDS = ("kill", "exception", "nan", "sigterm", "tracker", "model_write", "judge")
NO_RESTART = ("nan", "judge")  # the run goes on
EXIT = {"kill": -signal.SIGKILL, "sigterm": 128 + signal.SIGTERM, "exception": 1, "tracker": 1,
        "model_write": 1}  # worker exit status
MESSAGE = {"sigterm": "stopped by SIGTERM", "tracker": "MLflow tracking failed while logging round",
           "exception": "SoakFault: injected fault", "model_write": "raised in hook evaluate: ReadOnlyStateError: "
           "changed the weights of the model it was given"}  # in the worker's one-message stderr
JUDGE_KEY_ENV, JUDGE_KEY = "SOAK_JUDGE_API_KEY", "sk-soak-judge-5f3c9a0e71d24b68"  # set in the workers only
JUDGMENTS = "soak_judgments.jsonl"
CLIENT_HOOKS = ("pre_local_train", "configure_fit", "local_grad_correction", "client_fit_end")
SERVER_HOOKS = ("post_aggregate", "checkpoint_state", "on_round_end")
HOOKS = CLIENT_HOOKS + SERVER_HOOKS
ALWAYS_LOGGED = ("time/round_seconds", "train/lr", "clients/trained", "clients/rejected_nonfinite", "comm/bytes_down")


class SoakFault(RuntimeError):
    """Raised by the fault-injection plugin."""


class SoakFailed(AssertionError):
    """A soak check failed; the message says which."""


@dataclass(frozen=True)
class Fault:
    index: int
    round: int
    kind: str  # one of KINDS
    client: int  # the client whose training is killed, raises or turns NaN (client hooks)
    hook: str = ""  # for "exception": the hook that raises


@dataclass(frozen=True)
class SoakSettings:
    out: str
    rounds: int = 200
    clients: int = 20
    fault_every: int = 10
    seed: int = 0


def fault_schedule(settings: SoakSettings) -> list[Fault]:
    """One fault in each window of ``fault_every`` rounds, at a seeded random round and client; the kinds
    take turns in shuffled order, and the exceptions go through every hook in shuffled order."""
    rng = random.Random(settings.seed)
    windows = range(1, settings.rounds + 1, settings.fault_every)
    kinds = [kind for _ in windows for kind in rng.sample(KINDS, len(KINDS))]
    hooks = iter([hook for _ in windows for hook in rng.sample(HOOKS, len(HOOKS))])
    faults = []
    for index, (start, kind) in enumerate(zip(windows, kinds)):
        at = min(start + rng.randrange(settings.fault_every), settings.rounds)
        faults.append(Fault(index, at, kind, rng.randrange(settings.clients), next(hooks) if kind == "exception" else ""))
    return faults


def soak_overrides(settings: SoakSettings, out: Path) -> dict:
    """The smoke preset cut to the least work per client: one SGD step on one short sample; one held-out sample
    scored every round (so the eval hooks run)."""
    return {
        "output_dir": str(out), "tracking.run_name": RUN, "plugins.evals": ["heldout-nll"], "plugins.eval_every": 1,
        "plugins.eval_limit": 1, "plugins.agg": "fedavg",
        "federation.rounds": settings.rounds, "federation.num_clients": settings.clients,
        "federation.clients_per_round": settings.clients, "federation.local_steps": 1, "federation.batch_size": 1,
        "federation.local_optimizer": "sgd", "data.num_samples": 2 * settings.clients, "model.max_length": 32,
    }


class FaultInjector:
    """Fires the given faults; a kill or an exception is recorded in ``fired_dir`` first so it fires only once."""

    def __init__(self, faults: list[Fault], fired_dir: Path, tracker=None):
        self.faults, self.fired_dir, self.tracker = faults, fired_dir, tracker
        self.round = 0
        injector = self

        class BreakTracker:  # before the MLflow tracker logs the round
            @hookimpl(tryfirst=True)
            def on_round_end(self, server_round, metrics, artifacts):
                injector._fire("tracker", server_round)

        self.tracker_breaker = BreakTracker()

    def _fire(self, hook: str, server_round: int, client_id: int | None = None, params=None) -> None:
        for fault in self.faults:
            if fault.round != server_round or (client_id is not None and fault.client != client_id):
                continue
            if fault.kind == "nan" and hook == "local_grad_correction":
                for p in params.values():
                    p.grad.fill_(float("nan"))
            elif (fault.kind, hook) in (("kill", "local_grad_correction"), ("sigterm", "local_grad_correction"),
                                        ("exception", fault.hook), ("tracker", "tracker"), ("model_write", "evaluate")):
                marker = self.fired_dir / f"{fault.index}.json"
                if marker.exists():
                    continue
                marker.write_text(json.dumps(dataclasses.asdict(fault)))
                if fault.kind == "kill":
                    os.kill(os.getpid(), signal.SIGKILL)
                if fault.kind == "sigterm":
                    os.kill(os.getpid(), signal.SIGTERM)  # `harness run`'s handler raises here
                    return
                if fault.kind == "tracker":
                    self._break_tracker()
                    return
                if fault.kind == "model_write":  # the engine's check after the hook fails the run
                    import torch

                    with torch.no_grad():
                        for p in params.values():
                            p.fill_(float("nan"))
                    return
                raise SoakFault(f"injected fault {fault.index} in {hook}, round {server_round}")

    def _break_tracker(self) -> None:
        """The tracker's next MLflow write fails as on a full disk (once: the client is replaced on resume)."""
        def disk_full(*args, **kwargs):
            raise OSError(errno.ENOSPC, "No space left on device")

        self.tracker.client.log_batch = disk_full

    @hookimpl
    def pre_local_train(self, client_id, samples, server_round):
        self.round = server_round
        self._fire("pre_local_train", server_round, client_id)

    @hookimpl
    def configure_fit(self, server_round, client_id, global_state):
        self._fire("configure_fit", server_round, client_id)

    @hookimpl
    def local_grad_correction(self, client_id, server_round, params, global_state, fit_ins):
        self._fire("local_grad_correction", server_round, client_id, params)

    @hookimpl
    def client_fit_end(self, client_id, server_round, local_state, global_state, fit_ins, train_info):
        self._fire("client_fit_end", server_round, client_id)

    @hookimpl
    def post_aggregate(self, server_round, model):
        self._fire("post_aggregate", server_round)

    @hookimpl
    def checkpoint_state(self, directory):
        self._fire("checkpoint_state", self.round)

    @hookimpl(trylast=True)  # after the MLflow tracker logged the round: its replay must not log it twice
    def on_round_end(self, server_round, metrics, artifacts):
        self._fire("on_round_end", server_round)

    @hookimpl
    def evaluate(self, server_round, model, limit):
        self._fire("evaluate", server_round, params=dict(model.model.named_parameters()))
        if any(f.kind == "judge" and f.round == server_round for f in self.faults):
            return judge_echoing_its_key()


def judge_echoing_its_key():
    """What an eval returns from a judge that answered 200 with the API key in its text (as a judge client, it
    registers the key's variable for redaction)."""
    from harness.redaction import register_secret_env
    from harness.types import EvalResult

    register_secret_env(JUDGE_KEY_ENV)
    text = f"Rating: [[6]] (request signed with {os.environ[JUDGE_KEY_ENV]})"
    return EvalResult({"soak/judge_rating": 6.0}, {JUDGMENTS: json.dumps({"judgment": text}) + "\n"})


def run_worker(spec: dict) -> None:
    """One attempt, in this process: start the run, or resume it from its newest checkpoint."""
    import torch

    from harness.cli.job import execute
    from harness.config import load_config
    from harness.runner import EngineOptions, prepare
    from harness.tracking import default_tracking_uri, find_run

    torch.set_num_threads(1)
    out = Path(spec["out"])
    cfg = load_config("smoke", overrides=soak_overrides(SoakSettings(**spec["settings"]), out))
    uri = default_tracking_uri(out)
    run_id = find_run(uri, RUN).info.run_id if spec["resume"] else None
    injector = FaultInjector([Fault(**f) for f in spec["faults"]], Path(spec["fired_dir"]))
    job = prepare(cfg, uri, EngineOptions(progress=False, resume=spec["resume"]), run_id,
                  extra=(injector, injector.tracker_breaker))
    injector.tracker = job.tracker
    execute(job.start, job.tracker)


def start_worker(spec: dict) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false", JUDGE_KEY_ENV: JUDGE_KEY}
    return subprocess.run([sys.executable, "-m", "tests.soak", "--worker-spec", json.dumps(spec)],
                          env=env, capture_output=True, text=True)


def logged_rounds(out: Path) -> list[int]:
    from mlflow.tracking import MlflowClient

    from harness.tracking import default_tracking_uri, find_run

    client = MlflowClient(default_tracking_uri(out))
    return [m.step for m in client.get_metric_history(find_run(default_tracking_uri(out), RUN).info.run_id,
                                                        "time/round_seconds")]


def check_checkpoint_kept(out: Path) -> int:
    """The newest checkpoint's round, after checking it verifies and is no older than the logged rounds."""
    from harness.checkpoint import CheckpointStore

    store = CheckpointStore(out / "runs" / RUN)
    checkpoint = store.load(store.complete()[0])  # raises CheckpointError if it does not verify
    done, logged = checkpoint.next_round - 1, max(logged_rounds(out), default=0)
    if not (logged == done or (logged == done - 1 and not checkpoint.logged)):
        raise SoakFailed(f"newest checkpoint is round {done} but MLflow logged rounds up to {logged}")
    return done


def drive(settings: SoakSettings, faults: list[Fault], out: Path) -> dict:
    """Run to the end, resuming after every kill or exception; returns what happened."""
    fired_dir = out / "fired"
    fired_dir.mkdir(parents=True)
    always = [dataclasses.asdict(f) for f in faults if f.kind in NO_RESTART]
    attempts, resumes = [], []
    while True:
        fired = {p.stem for p in fired_dir.glob("*.json")}
        pending = [dataclasses.asdict(f) for f in faults if f.kind not in NO_RESTART and str(f.index) not in fired]
        spec = {"settings": dataclasses.asdict(settings), "out": str(out), "fired_dir": str(fired_dir),
                "faults": pending + always, "resume": bool(attempts)}
        start = time.perf_counter()
        worker = start_worker(spec)
        attempts.append({"seconds": round(time.perf_counter() - start, 1), "returncode": worker.returncode})
        if worker.returncode == 0:
            return {"attempts": attempts, "resumed_at": resumes}
        new = {p.stem for p in fired_dir.glob("*.json")} - fired
        if len(new) != 1:
            raise SoakFailed(f"worker exited {worker.returncode} without one injected fault:\n{worker.stderr[-3000:]}")
        kind = faults[int(new.pop())].kind
        if worker.returncode != EXIT[kind]:
            raise SoakFailed(f"worker exited {worker.returncode} after {kind}, expected {EXIT[kind]}:\n"
                             f"{worker.stderr[-3000:]}")
        check_message(kind, worker.stderr)
        resumes.append(check_checkpoint_kept(out) + 1)
        if kind == "sigterm" and (status := run_status(out)) != "KILLED":
            raise SoakFailed(f"after SIGTERM the MLflow run is {status}, expected KILLED")


def check_message(kind: str, stderr: str) -> None:
    """A stopped worker (not SIGKILLed) says what happened and how to resume, in one message, no traceback."""
    if kind == "kill":
        return
    errors = [line for line in stderr.splitlines() if line.startswith("Error:")]
    if "Traceback" in stderr or len(errors) != 1 or MESSAGE[kind] not in stderr or "--resume" not in stderr:
        raise SoakFailed(f"after {kind} the worker did not print one message with the resume command:\n"
                         f"{stderr[-3000:]}")


def run_status(out: Path) -> str:
    from harness.tracking import default_tracking_uri, find_run

    return find_run(default_tracking_uri(out), RUN).info.status


def final_checks(settings: SoakSettings, faults: list[Fault], out: Path, reference: Path) -> dict:
    """Raise :class:`SoakFailed` unless the run finished with every round logged once and nothing lost."""
    from mlflow.tracking import MlflowClient

    from harness.checkpoint import CheckpointStore
    from harness.tracking import default_tracking_uri

    client = MlflowClient(default_tracking_uri(out))
    runs = client.search_runs([client.get_experiment_by_name("fedllm-harness").experiment_id])
    if len(runs) != 1 or runs[0].info.status != "FINISHED":
        raise SoakFailed(f"expected one FINISHED MLflow run, got {[(r.info.run_name, r.info.status) for r in runs]}")
    run_id, rounds = runs[0].info.run_id, list(range(1, settings.rounds + 1))
    for key in (k for k in runs[0].data.metrics if not k.startswith("run/")):  # run/*: once per process
        steps = [m.step for m in client.get_metric_history(run_id, key)]
        if len(steps) != len(set(steps)) or (key in ALWAYS_LOGGED and sorted(steps) != rounds):
            raise SoakFailed(f"metric {key} is not logged exactly once per round: steps {sorted(steps)}")
    rejected = sum(m.value for m in client.get_metric_history(run_id, "clients/rejected_nonfinite"))
    if rejected != sum(f.kind == "nan" for f in faults):
        raise SoakFailed(f"{rejected:.0f} non-finite updates rejected, {sum(f.kind == 'nan' for f in faults)} injected")
    store = CheckpointStore(out / "runs" / RUN)
    names = sorted(p.name for p in store.root.iterdir())
    if names != [f"round_{settings.rounds - 1:04d}", f"round_{settings.rounds:04d}"]:
        raise SoakFailed(f"checkpoints left: {names}")
    for directory in store.complete():
        store.verify(directory)
    adapter = Path("final_adapter") / "adapter_model.safetensors"
    if (out / "runs" / RUN / adapter).read_bytes() != (reference / "runs" / RUN / adapter).read_bytes():
        raise SoakFailed("the final adapter differs from the uninterrupted run's")
    return {"rounds_logged": len(client.get_metric_history(run_id, "time/round_seconds")),
            "nonfinite_rejected": int(rejected), "checkpoints": names, "judge_answers": check_no_key(faults, out)}


def check_no_key(faults: list[Fault], out: Path) -> int:
    """The judge's answers of every ``judge`` round are stored, redacted, and the key is in no file under the
    output folder (the soak run, the reference run, their MLflow stores); returns how many answers were stored."""
    stored = sorted(out.parent.rglob(JUDGMENTS))
    rounds = {f.round for f in faults if f.kind == "judge"}
    redacted = [p for p in stored if "mlartifacts" in p.parts and "with [REDACTED])" in p.read_text()]
    if len(redacted) != len(rounds):
        raise SoakFailed(f"{len(redacted)} redacted judge answers stored in MLflow, {len(rounds)} judge rounds")
    leaked = [str(p) for p in out.parent.rglob("*") if p.is_file() and JUDGE_KEY.encode() in p.read_bytes()]
    if leaked:
        raise SoakFailed(f"the judge's key is in {leaked[:5]}")
    return len(redacted)


@click.command()
@click.option("--out", default="harness-runs/soak", show_default=True, type=click.Path(file_okay=False),
              help="Emptied first; holds the soak run, the uninterrupted reference run and report.json.")
@click.option("--rounds", default=200, show_default=True)
@click.option("--clients", default=20, show_default=True)
@click.option("--fault-every", default=10, show_default=True)
@click.option("--seed", default=0, show_default=True)
@click.option("--worker-spec", hidden=True)
def main(out, rounds, clients, fault_every, seed, worker_spec) -> None:
    """Soak the engine: ROUNDS x CLIENTS on tiny-random with a fault about every FAULT_EVERY rounds."""
    if worker_spec:
        run_worker(json.loads(worker_spec))
        return
    root = Path(out).resolve()
    shutil.rmtree(root, ignore_errors=True)
    settings = SoakSettings(str(root), rounds, clients, fault_every, seed)
    faults = fault_schedule(settings)
    start = time.perf_counter()
    outcome = drive(settings, faults, root / "soak")
    soak_seconds = time.perf_counter() - start
    nan = [dataclasses.asdict(f) for f in faults if f.kind == "nan"]
    reference = {"settings": dataclasses.asdict(settings), "out": str(root / "reference"), "resume": False,
                 "fired_dir": str(root / "reference"), "faults": nan}
    start = time.perf_counter()
    if (worker := start_worker(reference)).returncode != 0:
        raise SoakFailed(f"the uninterrupted reference run failed:\n{worker.stderr[-3000:]}")
    report = {
        "settings": dataclasses.asdict(settings),
        "faults": dict(Counter(f.kind for f in faults)),
        "exception_hooks": dict(Counter(f.hook for f in faults if f.kind == "exception")),
        "soak_seconds": round(soak_seconds, 1),
        "reference_seconds": round(time.perf_counter() - start, 1),
        "resumes": len(outcome["resumed_at"]),
        **outcome,
        **final_checks(settings, faults, root / "soak", root / "reference"),
    }
    (root / "report.json").write_text(json.dumps(report, indent=1))
    click.echo(json.dumps(report, indent=1))
    click.echo("soak passed")


if __name__ == "__main__":
    main()
