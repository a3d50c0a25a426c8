"""Running a job from the command line: signals stop it cleanly, and every way it can end is one message with
the exit code and, where there is a checkpoint, the command that resumes it (used by `harness run`)."""

from __future__ import annotations

import contextlib
import errno
import os
import shlex
import signal
import threading
from pathlib import Path

from harness import registry as plugin_registry
from harness.cli.common import fail


def input_errors() -> tuple[type[Exception], ...]:
    """Errors that mean bad input (:class:`harness.InputError`: data, eval data, a plugin's; model, checkpoint):
    exit 2 with their message."""
    from harness import InputError
    from harness.checkpoint import CheckpointError
    from harness.models import ModelLoadError

    return InputError, ModelLoadError, CheckpointError


class Interrupted(KeyboardInterrupt):
    """SIGINT or SIGTERM arrived while ``harness run`` ran: raised where the main thread was, so the engine's
    failure path runs (last checkpoint flushed, MLflow run marked KILLED)."""

    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)
UNWRITABLE = (errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOSPC, errno.EDQUOT)  # before the run: exit 2


@contextlib.contextmanager
def stop_on_signals(tracker):
    """While inside, SIGINT/SIGTERM raise :class:`Interrupted` (and set ``tracker.interrupted``); a second
    signal while the run is being stopped ends the process at once with the signal's default action."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    got: list[int] = []

    def handler(signum, frame):
        if got:
            signal.signal(signum, signal.SIG_DFL)
            os.kill(os.getpid(), signum)
            return
        got.append(signum)
        tracker.interrupted = signum
        raise Interrupted(signum)

    previous = {sig: signal.signal(sig, handler) for sig in STOP_SIGNALS}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def resume_command(tracker, key: str | None = None) -> str:
    """``harness run --resume NAME --output-dir DIR`` (plus ``--tracking-uri`` for a store elsewhere)."""
    from harness.tracking import default_tracking_uri

    output_dir = str(tracker.run_dir.parent.parent) if tracker.run_dir is not None else str(tracker.output_dir)
    words = ["harness", "run", "--resume", key or tracker.run_name or tracker.run_id, "--output-dir", output_dir]
    if tracker.uri != default_tracking_uri(output_dir):
        words += ["--tracking-uri", tracker.uri]
    return " ".join(shlex.quote(w) for w in words)


def execute(engine_run, tracker):
    """Run the job; a failure exits with the failing plugin and error named, and how to resume.

    Once the run started, the engine has marked its MLflow run FAILED with the traceback as ``error.txt`` and
    the newest checkpoint is intact. A plugin whose ``on_run_end`` fails after the run FINISHED exits 1 too, and
    the run stays FINISHED (its training and artifacts are complete; docs/reliability.md). SIGINT/SIGTERM stop
    the run cleanly (MLflow KILLED, exit 130/143); a failing MLflow store is reported in one message (exit 1).
    Other errors before the run started (not bad input) keep their traceback. Every message is redacted (no
    secrets on stderr).
    """
    from harness.redaction import redact

    try:
        with stop_on_signals(tracker):
            summary = engine_run()
    except KeyboardInterrupt as exc:
        report_interrupted(tracker, getattr(exc, "signum", signal.SIGINT))
    except Exception as exc:
        bad_input = isinstance(exc, input_errors())
        fault = getattr(exc, "plugin_fault", None)
        if tracker.failure is not None:
            report_tracking_failure(tracker, exc)
        if tracker.status == "FINISHED" and fault is not None:
            try:
                tracker.client.set_tag(tracker.run_id, "harness.run_end_fault", redact(str(fault))[:5000])
            except Exception:  # noqa: BLE001 - the fault itself is what gets reported
                pass
            fail(redact(f"{plugin_registry.describe_failure(exc)}\nMLflow run {tracker.run_id} is FINISHED: its "
                        f"training completed and the adapter and artifacts are saved in {tracker.run_dir}; only this "
                        f"plugin's {fault.hook} failed, so whatever it does at the end of a run is missing"), 1)
        if isinstance(exc, OSError) and exc.errno in UNWRITABLE and tracker.run_id is None:
            fail(f"cannot write {exc.filename or 'the run'}: {exc.strerror}; nothing was trained: pass a writable "
                 "--output-dir (with room to spare) and start the run again")
        if tracker.status != "FAILED" and not bad_input:
            raise
        message = str(exc) if bad_input and not hasattr(exc, "plugin_fault") else plugin_registry.describe_failure(exc)
        if tracker.status == "FAILED":
            next_step = (f"after fixing the cause continue it with: {resume_command(tracker, tracker.run_id)}"
                         if has_checkpoint(tracker.run_dir) else
                         "it failed before its first checkpoint, so nothing was trained: fix the cause and start it again")
            if getattr(exc, "resumable", True) is False:  # the fix is a new option, and --resume keeps the config
                next_step = "--resume cannot fix this (a resumed run keeps its config): start a new run with the fix"
            message += f"\nMLflow run {tracker.run_id} is marked FAILED (traceback in its error.txt); {next_step}"
        fail(redact(message), 2 if bad_input else 1)
    if tracker.failure is not None:  # the run finished; marking it FINISHED in MLflow failed
        report_tracking_failure(tracker, None)
    return summary


def report_interrupted(tracker, signum: int) -> None:
    """One line for a run stopped by SIGINT (exit 130) or SIGTERM (exit 143), with the resume command."""
    from harness.redaction import redact

    name = signal.Signals(signum).name
    if tracker.run_id is None or not has_checkpoint(tracker.run_dir):
        what = "before its first checkpoint; nothing was trained, start it again"
        if tracker.run_id is not None:
            what += f" (MLflow run {tracker.run_id} is marked {tracker.status or 'KILLED'})"
    else:
        marked = (f"MLflow run {tracker.run_id} is marked KILLED" if tracker.status == "KILLED" else
                  f"MLflow run {tracker.run_id} could not be marked KILLED ({tracker.failure})")
        what = f"its checkpoints in {tracker.run_dir} are intact and {marked}; continue it with: {resume_command(tracker)}"
    fail(redact(f"stopped by {name}: {what}"), 128 + signum)


def report_tracking_failure(tracker, exc: BaseException | None) -> None:
    """One message, no traceback, for an MLflow store that failed during or at the end of the run (exit 1)."""
    from harness.redaction import redact

    lines = [str(tracker.failure)]
    from harness.tracking import TrackingError

    if exc is not None and not isinstance(exc, TrackingError):  # the run failed first, then the tracker
        lines.insert(0, f"the run failed: {plugin_registry.describe_failure(exc)}; then")
    if tracker.status is None and tracker.run_id is not None:
        lines.append(f"MLflow run {tracker.run_id} could not be marked {'FINISHED' if exc is None else 'FAILED'} "
                     "and may still show RUNNING")
    if exc is None:
        lines.append(f"the training finished and its adapter is saved in {tracker.run_dir / 'final_adapter'}; after "
                     f"fixing the store, {resume_command(tracker)} records the end (no round is repeated)")
    elif has_checkpoint(tracker.run_dir):
        lines.append(f"the training stopped; its checkpoints in {tracker.run_dir} are intact: after fixing the "
                     f"tracking store continue it with: {resume_command(tracker)}")
    else:
        lines.append("the run stopped before its first checkpoint, so nothing was trained: fix the tracking store "
                     "and start it again")
    fail(redact("\n".join(lines)), 1)


def has_checkpoint(run_dir: Path | None) -> bool:
    """Whether the run left a checkpoint to resume from."""
    from harness.checkpoint import CheckpointStore

    return run_dir is not None and bool(CheckpointStore(run_dir).complete())
